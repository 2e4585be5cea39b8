"""Use cases of the visual-semantic space: label vectors, text → images, image → labels, zero-shot.

A DeViSE model maps images into its word-vector space, so its collection holds two kinds of
points: images (``kind=image``) and labels (``kind=label``; payload: class, role, vector
source). Labels need no images: a class added with ``platform classes add NAME --zero-shot``
becomes a candidate for classification at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import DataError, IndexEmptyError, NotFoundError
from embplat.models.wordvectors import (
    LabelSpace,
    VectorSource,
    active_source,
    label_vector,
    open_vectors,
)
from embplat.pipelines.context import Context, Space
from embplat.pipelines.query import (
    Neighbour,
    QueryFailure,
    embed_answerable,
    require_files,
    require_some_file,
)
from embplat.retrieval import Filter, point_id

log = logging.getLogger(__name__)

SEMANTIC_KINDS = ("devise",)
LABELS: dict[str, Any] = {"kind": "label"}


@dataclass(frozen=True)
class LabelScore:
    """One label and its cosine similarity to a query."""

    label: str
    score: float
    role: str


@dataclass
class LabelPrediction:
    """Zero-shot prediction for one image: the nearest label and the top candidates."""

    path: str
    label: str
    score: float
    role: str
    model: str
    candidates: list[LabelScore] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


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
        roles = {c.name: c.role for c, _ in repo.class_counts(session=session)}
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
    ctx: Context, text: str, *, model: str | None = None, k: int = 10, flt: Filter | None = None
) -> tuple[list[Neighbour], str]:
    """Images nearest to the word vector of ``text`` (mean over its words).

    Returns:
        The hits, best first, and the model searched.

    Raises:
        DataError: no word of ``text`` has a vector; k < 1.
        IndexEmptyError: the model's collection holds no images.
    """
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    name = semantic_model(ctx, model)
    space = ctx.spaces.space(name)
    query = label_space(ctx, name).vector(text)[None, :]
    flt = {"kind": "image", **(flt or {})}
    if space.index.count(flt) == 0:
        raise IndexEmptyError(
            f"{space.index.name} holds no images to search: run `platform models embed {name}`"
        )
    hits = space.index.search(query, k, flt)[0]
    return [Neighbour.from_hit(h) for h in hits], name


def label_images(
    ctx: Context,
    paths: Sequence[Path],
    *,
    model: str | None = None,
    k: int = 5,
    roles: Sequence[str] | None = None,
    failures: list[QueryFailure] | None = None,
) -> list[LabelPrediction]:
    """Zero-shot classification: each image's nearest label vectors, seen and unseen alike.

    Args:
        roles: only labels of these roles (e.g. ``["unseen"]`` for the ZSL setting).
        failures: collects the images that cannot be read, so the others are still
            answered; None raises for the first one.

    Raises:
        DataError: a path is missing or not an image (without ``failures``); k < 1.
        IndexEmptyError: no label vectors (no classes in the catalog).
    """
    (require_files if failures is None else require_some_file)(paths)
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    name, space = _label_space(ctx, model)
    flt = {**LABELS, **({"role": list(roles)} if roles else {})}
    if space.index.count(flt) == 0:
        raise IndexEmptyError(
            f"model {name} has no label vectors{' of role ' + '/'.join(roles) if roles else ''}: "
            "add classes with `platform ingest` or `platform classes add NAME --zero-shot`"
        )
    kept, queries = embed_answerable(ctx, space, paths, failures)
    if not kept:
        return []
    out = []
    for path, hits in zip(kept, space.index.search(queries, k, flt), strict=True):
        cands = [
            LabelScore(str(h.payload["class"]), round(h.score, 6), str(h.payload.get("role")))
            for h in hits
        ]
        top = cands[0]
        out.append(LabelPrediction(str(path), top.label, top.score, top.role, name, cands))
    return out


def add_zero_shot_class(ctx: Context, name: str) -> dict[str, Any]:
    """Register class ``name`` without images (role ``unseen``) and publish its label vector.

    The vector is checked first (against the active vectors, or each model's own vectors),
    so a name with no known word is refused before anything is written.

    Raises:
        DataError: no word of ``name`` has a vector (the message names the label).
    """
    with ctx.sessions() as session:
        models = [m.name for m in repo.list_models(session=session, kinds=SEMANTIC_KINDS)]
    for model in models:
        label_space(ctx, model).vector(name)
    if not models:
        label_vector(open_vectors(active_source(ctx.home)), name)
    with transaction(ctx.sessions) as session:
        repo.ensure_classes(
            session=session, names=[name], roles={name: "unseen"}, source="zero-shot"
        )
        role = repo.get_class(session=session, name=name).role  # type: ignore[union-attr]
    published = [m for m in models if publish_label_vectors(ctx, m, [name])]
    return {"class": name, "role": role, "models": published}
