"""Use cases: classify images by kNN vote, and search images by image."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embplat.errors import DataError, IndexEmptyError
from embplat.evaluation.open_set import open_set_decision
from embplat.ingest.images import load_rgb
from embplat.pipelines.context import Context, Space
from embplat.retrieval import Filter, Hit
from embplat.retrieval.knn import knn_vote

log = logging.getLogger(__name__)

#: Classification votes among enrolled images: the train split (enrolled classes included).
ENROLLED: dict[str, Any] = {"kind": "image", "split": "train"}
#: The label of a prediction rejected by ``classify(reject_below=...)``.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Neighbour:
    """One retrieved image."""

    path: str
    label: str
    score: float
    image_id: int | None = None

    @classmethod
    def from_hit(cls, hit: Hit) -> Neighbour:
        """Build from an index hit's payload."""
        p = hit.payload
        return cls(
            path=str(p.get("path")),
            label=str(p.get("class")),
            score=round(hit.score, 6),
            image_id=p.get("image_id"),
        )


@dataclass
class Prediction:
    """kNN vote for one query image."""

    path: str
    label: str
    confidence: float
    runner_up: str | None
    runner_up_share: float
    k: int
    tallies: dict[str, float] = field(default_factory=dict)
    neighbours: list[Neighbour] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    best_label: str | None = None  # the vote's winner when ``label`` is "unknown" (rejected)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def embed_query_images(space: Space, paths: Sequence[Path], *, max_pixels: int) -> np.ndarray:
    """Encode query files → (N, dim). Raises DataError naming a missing or unreadable file."""
    require_files(paths)
    tensors = []
    for path in paths:
        tensors.append(space.encoder.transform(load_rgb(path, max_pixels=max_pixels)))
    return space.encoder.encode_images(torch.stack(tensors))


def require_files(paths: Sequence[Path]) -> None:
    """Fail before any work when a query file is missing. Raises DataError naming it."""
    if not paths:
        raise DataError("no query image given")
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"image {path} does not exist")


def _checked_k(space: Space, k: int, flt: Filter) -> tuple[int, list[str]]:
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    available = space.index.count(flt)
    if available == 0:
        raise IndexEmptyError(
            f"index {space.index.name} holds no enrolled images yet: "
            "run `platform ingest DIR` (or `platform classes add NAME DIR`) first"
        )
    if k > available:
        return available, [
            f"k={k} is larger than the {available} enrolled images; used k={available}"
        ]
    return k, []


def classify(
    ctx: Context,
    paths: Sequence[Path],
    *,
    k: int = 10,
    weighted: bool = False,
    flt: Filter | None = None,
    model: str | None = None,
    reject_below: float | None = None,
    reject_on: str = "share",
) -> list[Prediction]:
    """Predict the class of each image by majority vote of its ``k`` nearest enrolled images.

    ``model``: a trained model's space (``platform models list``) instead of the encoder's.
    ``reject_below``: answer ``unknown`` (open set) when the winner's vote share
    (``reject_on="share"``) or the nearest neighbour's cosine (``"score"``) is below it.

    Raises:
        DataError: a path does not exist or is not an image; ``k`` < 1.
        ConfigError: ``reject_on`` is neither ``share`` nor ``score``.
        IndexEmptyError: nothing is enrolled yet.
    """
    open_set_decision(1.0, 1.0, None, on=reject_on)  # validates reject_on before any work
    require_files(paths)
    space = ctx.space(model)
    flt = {**ENROLLED, **(flt or {})}
    k_used, notes = _checked_k(space, k, flt)
    queries = embed_query_images(space, paths, max_pixels=ctx.ingest.max_pixels)
    out = []
    for path, hits in zip(paths, space.index.search(queries, k_used, flt), strict=True):
        vote = knn_vote(
            [str(h.payload.get("class")) for h in hits], [h.score for h in hits], weighted=weighted
        )
        accept = open_set_decision(vote.confidence, hits[0].score, reject_below, on=reject_on)
        out.append(
            Prediction(
                path=str(path),
                label=vote.label if accept else UNKNOWN,
                confidence=round(vote.confidence, 4),
                runner_up=vote.runner_up,
                runner_up_share=round(vote.runner_up_share, 4),
                k=k_used,
                tallies=vote.tallies,
                neighbours=[Neighbour.from_hit(h) for h in hits],
                notes=notes,
                best_label=None if accept else vote.label,
            )
        )
    return out


def search_by_image(
    ctx: Context, path: Path, *, k: int = 5, flt: Filter | None = None, model: str | None = None
) -> tuple[list[Neighbour], list[str]]:
    """The ``k`` images nearest to ``path`` (any split unless filtered), with notes.

    ``model``: search a trained model's space (e.g. a DeViSE model's semantic space).
    """
    require_files([path])
    space = ctx.space(model)
    flt = {"kind": "image", **(flt or {})}
    k_used, notes = _checked_k(space, k, flt)
    query = embed_query_images(space, [path], max_pixels=ctx.ingest.max_pixels)
    hits = space.index.search(query, k_used, flt)[0]
    return [Neighbour.from_hit(h) for h in hits], notes
