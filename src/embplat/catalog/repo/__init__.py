"""Catalog access: plain functions, keyword-only arguments, an explicit session, one module
per aggregate (classes, images, spaces — models, collections and embeddings — jobs, metrics).

Writes that may race (two workers, a re-run) are ``INSERT .. ON CONFLICT DO NOTHING`` on the
natural keys, so they never duplicate rows and never deadlock on each other's inserts.
Callers use ``from embplat.catalog import repo`` and ``repo.<function>``.
"""

from embplat.catalog.repo._common import (
    insert_ignore,
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
    "KnownFile",
    "PathRow",
    "add_embeddings",
    "add_images",
    "class_counts",
    "class_image_ids",
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
    "get_class",
    "get_images",
    "get_job",
    "get_model",
    "image_points",
    "image_points_by_image",
    "images_by_hash",
    "images_with_prefix",
    "insert_ignore",
    "known_files",
    "labelled_images",
    "list_jobs",
    "list_models",
    "model_metrics",
    "pending_image_ids",
    "record_metrics",
    "relocate_images",
    "set_image_mtimes",
    "trained_collections",
    "update_job",
]
