"""Catalog access: plain functions, keyword-only arguments, an explicit session, one module
per aggregate (classes, images, captions, spaces — models, collections and embeddings —
jobs, their batches, metrics).

Writes that may race (two workers, a re-run) are ``INSERT .. ON CONFLICT`` on the natural keys
(``_common.insert_ignore`` and ``_common.upsert``, the one place that knows the SQL dialect),
so they never duplicate rows and never deadlock on each other's inserts.
Callers use ``from embplat.catalog import repo`` and ``repo.<function>``.
"""

from embplat.catalog.repo.batches import (
    add_batches,
    batch_failures,
    count_batches,
    fail_batch,
    finish_batch,
    get_batch,
    job_batches,
    requeue_batches,
    start_batch,
    unfinished_batches,
)
from embplat.catalog.repo.captions import (
    CaptionWrite,
    add_captions,
    count_captions,
    find_images,
    get_captions,
    image_splits,
    split_captions,
)
from embplat.catalog.repo.classes import (
    class_counts,
    ensure_classes,
    get_class,
)
from embplat.catalog.repo.images import (
    KnownFile,
    PathRow,
    add_images,
    class_image_ids,
    count_images,
    delete_class,
    delete_images,
    get_images,
    image_points,
    image_points_by_image,
    images_by_hash,
    images_with_prefix,
    known_files,
    relocate_images,
    set_image_mtimes,
    trained_collections,
)
from embplat.catalog.repo.jobs import (
    create_job,
    embedded_images,
    get_job,
    list_jobs,
    update_job,
)
from embplat.catalog.repo.metrics import (
    model_metrics,
    record_metrics,
)
from embplat.catalog.repo.spaces import (
    add_embeddings,
    count_embeddings,
    embedded_trained_models,
    ensure_collection,
    ensure_model,
    get_model,
    labelled_images,
    list_models,
    pending_image_ids,
)

__all__ = [
    "CaptionWrite",
    "KnownFile",
    "PathRow",
    "add_batches",
    "add_captions",
    "add_embeddings",
    "add_images",
    "batch_failures",
    "class_counts",
    "class_image_ids",
    "count_batches",
    "count_captions",
    "count_embeddings",
    "count_images",
    "create_job",
    "delete_class",
    "delete_images",
    "embedded_images",
    "embedded_trained_models",
    "ensure_classes",
    "ensure_collection",
    "ensure_model",
    "fail_batch",
    "find_images",
    "finish_batch",
    "get_batch",
    "get_captions",
    "get_class",
    "get_images",
    "get_job",
    "get_model",
    "image_points",
    "image_points_by_image",
    "image_splits",
    "images_by_hash",
    "images_with_prefix",
    "job_batches",
    "known_files",
    "labelled_images",
    "list_jobs",
    "list_models",
    "model_metrics",
    "pending_image_ids",
    "record_metrics",
    "relocate_images",
    "requeue_batches",
    "set_image_mtimes",
    "split_captions",
    "start_batch",
    "trained_collections",
    "unfinished_batches",
    "update_job",
]
