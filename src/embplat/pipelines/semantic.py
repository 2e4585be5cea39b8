"""Use cases of the visual-semantic space: label vectors, text → images, image → labels, zero-shot.

A DeViSE model maps images into its word-vector space, so its collection holds two kinds of
points: images (``kind=image``) and labels (``kind=label``; payload: class, role, vector
source). Labels need no images: a class added with ``platform classes add NAME --zero-shot``
becomes a candidate for classification at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embplat.catalog import repo
from embplat.errors import DataError, IndexEmptyError, NotFoundError
from embplat.evaluation.hubness import check_hubness
from embplat.models.wordvectors import (
    LabelSpace,
    VectorSource,
    open_vectors,
)
from embplat.pipelines.context import Context, Space
from embplat.pipelines.query import Neighbour
from embplat.pipelines.query_images import (
    QueryFailure,
    embed_answerable,
    require_files,
    require_some_file,
)
from embplat.pipelines.semantic_scores import (
    LabelPrediction,
    LabelScore,
    choose_gamma,
    image_points,
    label_points,
    label_scores,
    seen_mask,
    text_scores,
    top_labels,
)
from embplat.retrieval import Filter, Hit, point_id
from embplat.retrieval.base import l2_normalize

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CLASSIFY_HUBNESS",
    "DEFAULT_SEARCH_HUBNESS",
    "LABELS",
    "SEMANTIC_KINDS",
    "LabelPrediction",
    "LabelScore",
    "label_images",
    "label_space",
    "publish_label_vectors",
    "search_by_text",
    "semantic_model",
]

SEMANTIC_KINDS = ("devise",)
LABELS: dict[str, Any] = {"kind": "label"}
#: Hubness correction of text → image search by default. Measured on Fashion-MNIST pairs
#: (benchmarks/zeroshot_pairs.py): the inverted softmax raised precision@10 for unseen labels
#: from 0.10 to 0.40 (GloVe) and 0.08 to 0.65 (MiniLM); CSLS barely moved it. It needs only
#: each image's scores over the label set, not the rest of the collection.
DEFAULT_SEARCH_HUBNESS = "isoftmax"
#: ... and of classification: none, the stored gamma applies. The inverted softmax without a
#: gamma was better on some pairs and worse on others (H 0.37 vs 0.33 GloVe, 0.40 vs 0.37
#: MiniLM, mean of 2 pairs), and it depends on which images the catalog holds; CSLS hurt.
DEFAULT_CLASSIFY_HUBNESS = "none"


def semantic_model(ctx: Context, model: str | None = None) -> str:
    """``model`` checked to be a visual-semantic model, or the newest one.

    Raises:
        NotFoundError: no such model, or none trained yet (the message says how to train one).
    """
    with ctx.sessions() as session:
        if model is not None:
            record = repo.get_model(session=session, name=model)
            if record.kind not in SEMANTIC_KINDS:
                raise NotFoundError(
                    f"model {model!r} is a {record.kind}, not a visual-semantic model; "
                    "train one with `platform train devise`"
                )
            return model
        found = repo.list_models(session=session, kinds=SEMANTIC_KINDS)
    if not found:
        raise NotFoundError("no visual-semantic model yet: train one with `platform train devise`")
    return found[-1].name


def label_space(ctx: Context, model: str) -> LabelSpace:
    """The label space ``model`` was trained in: its word vectors and their centre."""
    with ctx.sessions() as session:
        config = repo.get_model(session=session, name=model).config or {}
    center = config.get("label_center")
    return LabelSpace(
        open_vectors(VectorSource.from_dict(config.get("vectors"))),
        None if center is None else np.asarray(center, dtype=np.float32),
    )


def publish_label_vectors(
    ctx: Context, model: str, names: Sequence[str] | None = None
) -> list[str]:
    """Write label points for catalog classes (all, or ``names``) into ``model``'s collection.

    Classes whose words have no vector are skipped with a warning.

    Returns:
        The class names written.
    """
    space, labels = ctx.spaces.space(model), label_space(ctx, model)
    with ctx.sessions() as session:
        roles = repo.class_roles(session=session)
    wanted = list(names) if names is not None else sorted(roles)
    ids, rows, payloads = [], [], []
    for name in wanted:
        try:
            rows.append(labels.vector(name))
        except DataError as exc:
            log.warning("%s", exc)
            continue
        ids.append(point_id(name, model, kind="label"))
        payloads.append(
            {
                "kind": "label",
                "class": name,
                "role": roles.get(name, "unseen"),
                "source": labels.vectors.source.label,
                "model": model,
            }
        )
    if ids:
        space.index.upsert(ids, np.stack(rows), payloads)
        space.index.flush()
    return [p["class"] for p in payloads]


def _label_space(ctx: Context, model: str | None) -> tuple[str, Space]:
    name = semantic_model(ctx, model)
    space = ctx.spaces.space(name)
    if space.index.count(LABELS) == 0:
        publish_label_vectors(ctx, name)
    return name, space


def search_by_text(
    ctx: Context,
    text: str,
    *,
    model: str | None = None,
    k: int = 10,
    flt: Filter | None = None,
    hubness: str = DEFAULT_SEARCH_HUBNESS,
    expand: int = 0,
) -> tuple[list[Neighbour], str]:
    """Images nearest to the label vector of ``text`` (its words' mean, or its prompts').

    Args:
        hubness: ``isoftmax`` (default) or ``csls``: rescore every image against the
            model's label set first, so an image near every label (a hub) stops topping
            every label's list (scans the model's images); ``none``: the index's cosine
            search.
        expand: query expansion (average query expansion, Chum et al. 2007): search
            again with the mean of the first search's ``expand`` best images in place of
            the label vector (scored the same way), so the images most like the best hits
            rise; 0 = off.

    Returns:
        The hits, best first, and the model searched.

    Raises:
        DataError: no word of ``text`` has a vector; k < 1; expand < 0.
        ConfigError: an unknown hubness correction.
        IndexEmptyError: the model's collection holds no images.
    """
    if k < 1 or expand < 0:
        raise DataError(f"--k must be at least 1 and --expand 0 or more, got {k} and {expand}")
    check_hubness(hubness)
    name = semantic_model(ctx, model)
    space = ctx.spaces.space(name)
    query = label_space(ctx, name).vector(text)
    flt = {"kind": "image", **(flt or {})}
    if space.index.count(flt) == 0:
        raise IndexEmptyError(
            f"{space.index.name} holds no images to search: run `platform models embed {name}`"
        )
    if hubness == "none":
        hits = space.index.search(query[None, :], max(k, expand), flt)[0]
        if expand:
            vectors, _ = space.index.get([h.id for h in hits[:expand]])
            hits = space.index.search(_mean_unit(vectors), k, flt)[0]
        return [Neighbour.from_hit(h) for h in hits[:k]], name
    images = image_points(ctx, space, flt)
    labels = label_points(space, LABELS).vectors
    scores = text_scores(query, images.vectors, labels, hubness)
    if expand:
        top = np.argsort(-scores, kind="stable")[:expand]
        expanded = _mean_unit(images.vectors[top])[0]
        scores = text_scores(expanded, images.vectors, labels, hubness, stands_for=query)
    best = np.argsort(-scores, kind="stable")[:k]
    return [Neighbour.from_hit(Hit("", float(scores[i]), images.payloads[i])) for i in best], name


def _mean_unit(vectors: np.ndarray) -> np.ndarray:
    """(1, D): the unit mean of (N, D) unit vectors (a query standing for all of them)."""
    return l2_normalize(np.asarray(vectors, np.float32).mean(axis=0, keepdims=True))


def label_images(
    ctx: Context,
    paths: Sequence[Path],
    *,
    model: str | None = None,
    k: int = 5,
    roles: Sequence[str] | None = None,
    failures: list[QueryFailure] | None = None,
    gamma: float | None = None,
    hubness: str = DEFAULT_CLASSIFY_HUBNESS,
) -> list[LabelPrediction]:
    """Zero-shot classification: each image's best labels, seen and unseen alike (GZSL).

    Calibrated stacking is applied by default: the gamma chosen when the model was trained
    (from its seen classes only) is subtracted from the scores of its training classes'
    labels, so unseen labels can win.

    Args:
        roles: only labels of these roles (e.g. ``["unseen"]`` for the ZSL setting).
        failures: collects the images that cannot be read, so the others are still
            answered; None raises for the first one.
        gamma: None = the stored gamma (0 with a note for a model without one, or with a
            hubness correction); a number overrides it (0 turns calibration off).
        hubness: ``none``, ``csls`` or ``isoftmax`` (see ``evaluation.hubness``): labels
            near every image of the space are demoted.

    Raises:
        DataError: a path is missing or not an image (without ``failures``); k < 1.
        ConfigError: an unknown hubness correction.
        IndexEmptyError: no label vectors (no classes in the catalog).
    """
    (require_files if failures is None else require_some_file)(paths)
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    check_hubness(hubness)
    name, space = _label_space(ctx, model)
    flt = {**LABELS, **({"role": list(roles)} if roles else {})}
    labels = label_points(space, flt)
    if not len(labels):
        raise IndexEmptyError(
            f"model {name} has no label vectors{' of role ' + '/'.join(roles) if roles else ''}: "
            "add classes with `platform ingest` or `platform classes add NAME --zero-shot`"
        )
    kept, queries = embed_answerable(ctx, space, paths, failures)
    if not kept:
        return []
    config = _config(ctx, name)
    applied, notes = choose_gamma(name, config, gamma, hubness)
    seen = seen_mask(labels.payloads, set(config.get("data", {}).get("classes", [])))
    reference = None if hubness == "none" else image_points(ctx, space).vectors
    scores = label_scores(
        queries, labels.vectors, seen, gamma=applied, hubness=hubness, reference=reference
    )
    return [
        top_labels(str(path), row, labels.payloads, k, name, applied, hubness, notes)
        for path, row in zip(kept, scores, strict=True)
    ]


def _config(ctx: Context, model: str) -> dict[str, Any]:
    with ctx.sessions() as session:
        return dict(repo.get_model(session=session, name=model).config or {})
