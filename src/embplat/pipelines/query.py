"""Use cases: classify images by kNN vote, and search images by image.

A query image is a file or its encoded bytes (:data:`QueryImage`): an upload or an in-memory
image is decoded from memory with the same checks as a file (``ingest.images.load_rgb``),
never written to disk first. Answers and failures name a file by its path and bytes by
their position, ``<image N>`` (:func:`query_label`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from embplat.errors import DataError, IndexEmptyError
from embplat.evaluation.open_set import open_set_decision
from embplat.pipelines.context import Context, Space
from embplat.retrieval import Filter, Hit
from embplat.retrieval.knn import knn_vote

if TYPE_CHECKING:
    from embplat.models.registry import ImageEncoder

log = logging.getLogger(__name__)

#: Classification votes among enrolled images: the train split (enrolled classes included).
ENROLLED: dict[str, Any] = {"kind": "image", "split": "train"}
#: The label of a prediction rejected by ``classify(reject_below=...)``.
UNKNOWN = "unknown"
#: The splits images are cataloged in (``ingest.register.split_for``).
SPLITS = ("train", "valid", "test")
#: A query image: a file, or the encoded contents of one (JPEG, PNG...).
QueryImage = Path | str | bytes
#: How ``load_rgb`` names encoded bytes in its errors.
_BYTES_LABEL = "<image bytes>"


def query_label(image: QueryImage, n: int) -> str:
    """How answers name query ``n``: a file by its path, encoded bytes as ``<image n>``."""
    return f"<image {n}>" if isinstance(image, bytes) else str(image)


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
    method: str = "knn"  # or "softmax": a trained classifier's head answered (k is 0)
    probabilities: dict[str, float] = field(default_factory=dict)  # softmax: top classes

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class QueryFailure:
    """A query image that could not be answered, and why (the reason omits the path)."""

    path: str
    error: str

    def __str__(self) -> str:
        return f"{self.path}: {self.error}"

    def as_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"path": self.path, "error": self.error}

    @classmethod
    def from_error(cls, path: Path | str, exc: DataError) -> QueryFailure:
        """Build from the DataError a query raised (its message starts with the path, or
        with ``<image bytes>`` for encoded bytes)."""
        message = str(exc).removeprefix(f"{path}: ").removeprefix(f"{_BYTES_LABEL}: ")
        return cls(str(path), message)


def check_split(split: str | None, flag: str = "--split") -> None:
    """Refuse a split name the catalog never uses. Raises DataError naming ``flag`` and
    listing the valid ones."""
    if split is not None and split not in SPLITS:
        raise DataError(f"{flag} must be one of {', '.join(SPLITS)}, got {split!r}")


def embed_query_images(
    space: Space,
    paths: Sequence[QueryImage],
    *,
    max_pixels: int,
    batch_size: int = 32,
    num_workers: int = 0,
) -> np.ndarray:
    """Encode query images (files or encoded bytes) → (N, dim). Raises DataError naming a
    missing or unreadable one."""
    require_files(paths)
    _, vectors, failures = embed_each(
        space, paths, max_pixels=max_pixels, batch_size=batch_size, num_workers=num_workers
    )
    if failures:
        raise DataError(str(failures[0]))
    return vectors


class Encodes(Protocol):
    """What encoding query images needs: a :class:`Space`, or anything with an encoder."""

    @property
    def encoder(self) -> ImageEncoder:
        """The encoder the images go through."""


def embed_answerable(
    ctx: Context, space: Encodes, paths: Sequence[QueryImage], failures: list[QueryFailure] | None
) -> tuple[list[str], np.ndarray]:
    """:func:`embed_each` with the context's batching; bad files go to ``failures`` (the
    caller answers the rest), or, when it is None, the first one raises.

    Raises:
        DataError: a file cannot be read and ``failures`` is None.
    """
    kept, queries, failed = embed_each(
        space,
        paths,
        max_pixels=ctx.ingest.max_pixels,
        batch_size=ctx.embed.batch_size,
        num_workers=ctx.embed.num_workers,
    )
    if failed and failures is None:
        raise DataError(str(failed[0]))
    if failures is not None:
        failures.extend(failed)
    return kept, queries


def embed_each(
    space: Encodes,
    paths: Sequence[QueryImage],
    *,
    max_pixels: int,
    batch_size: int = 32,
    num_workers: int = 0,
) -> tuple[list[str], np.ndarray, list[QueryFailure]]:
    """Encode the readable query images; the others become failures instead of errors.

    Images go through the encoder ``batch_size`` at a time (decoded by ``num_workers``
    threads ahead of the forward pass, as ingest does), so memory stays bounded however
    many are given. They are checked against the encoder's resize (``resize_side``)
    before decoding, so an extreme aspect ratio is refused instead of being scaled up to
    gigapixels. Encoded bytes are decoded from memory by Pillow (nvJPEG reads files).

    Returns:
        The encoded images' labels (:func:`query_label`, in the given order), their
        (len(kept), dim) vectors, and one failure per other image (in the given order).
    """
    from embplat.ingest.decode import BatchDecoder, prefetched

    labels = [query_label(image, n) for n, image in enumerate(paths)]
    failed: list[tuple[int, QueryFailure]] = []
    rows: list[tuple[int, Any]] = []  # (position, path str or bytes): load_rgb reads both
    for n, image in enumerate(paths):
        if isinstance(image, bytes) or Path(image).is_file():
            rows.append((n, image if isinstance(image, bytes) else labels[n]))
        else:
            failed.append((n, QueryFailure(labels[n], "does not exist")))
    decoder = BatchDecoder(space.encoder, max_pixels, check_resize=True)
    if any(isinstance(image, bytes) for image in paths):
        decoder.gpu_jpeg = False  # its nvJPEG path reads files; Pillow decodes bytes too
    chunks = [rows[s : s + max(1, batch_size)] for s in range(0, len(rows), max(1, batch_size))]
    order: list[int] = []
    parts: list[np.ndarray] = []
    for ids, batch, bad in prefetched(decoder, chunks, num_workers):
        failed.extend((n, QueryFailure.from_error(labels[n], DataError(m))) for n, m in bad)
        if batch is not None:
            order.extend(ids)
            parts.append(decoder.encode(batch))
    failures = [f for _, f in sorted(failed, key=lambda item: item[0])]
    if not parts:
        return [], np.empty((0, space.encoder.dim), np.float32), failures
    rank = np.argsort(np.asarray(order), kind="stable")
    kept = [labels[order[i]] for i in rank]
    return kept, np.concatenate(parts)[rank], failures


def require_files(paths: Sequence[QueryImage]) -> None:
    """Fail before any work when a query file is missing. Raises DataError naming it."""
    if not paths:
        raise DataError("no query image given")
    missing = _missing(paths)
    if missing:
        raise DataError(f"image {missing[0]} does not exist")


def require_some_file(paths: Sequence[QueryImage]) -> None:
    """Fail before any work when no query file exists (nothing could be answered).

    Raises:
        DataError: no path given, or none exists; the message names every missing one.
    """
    if not paths:
        raise DataError("no query image given")
    missing = _missing(paths)
    if len(missing) == len(paths):
        raise DataError("; ".join(f"image {path} does not exist" for path in missing))


def _missing(images: Sequence[QueryImage]) -> list[str]:
    """The query paths that are no file (encoded bytes are always there)."""
    return [str(i) for i in images if not isinstance(i, bytes) and not Path(i).is_file()]


def _checked_k(
    space: Space, k: int, flt: Filter, user_filter: Filter | None = None
) -> tuple[int, list[str]]:
    """``k`` capped at the images matching ``flt``, with a note when it was capped.

    The one count of a query call: the index's ``search`` does not count again (the Qdrant
    backend counts only when a search comes back empty), so classifying a batch of images
    costs one count, however many images it holds.

    Raises:
        DataError: ``k`` < 1, or ``user_filter`` matches no image of a non-empty index.
        IndexEmptyError: no image matches ``flt`` (nothing enrolled yet).
    """
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    available = space.index.count(flt)
    if available == 0 and user_filter and space.index.count({"kind": "image"}):
        wanted = ", ".join(f"{key}={value!r}" for key, value in user_filter.items())
        raise DataError(
            f"no image in index {space.index.name} matches {wanted}; check the names with "
            "`platform classes list` or drop the filter"
        )
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
    paths: Sequence[QueryImage],
    *,
    k: int = 10,
    weighted: bool = False,
    flt: Filter | None = None,
    model: str | None = None,
    reject_below: float | None = None,
    reject_on: str = "share",
    failures: list[QueryFailure] | None = None,
    knn: bool = False,
) -> list[Prediction]:
    """Predict the class of each image (a file or encoded bytes) by majority vote of its
    ``k`` nearest enrolled images; each answer's ``path`` is its :func:`query_label`.

    ``model``: a trained model's space (``platform models list``) instead of the encoder's.
    A model with a softmax head (``platform train classifier``) answers with the head
    instead (``pipelines.softmax_classify``: ``k`` most probable classes listed) unless
    ``knn``.
    ``reject_below``: answer ``unknown`` (open set) when the winner's vote share
    (``reject_on="share"``) or the nearest neighbour's cosine (``"score"``) is below it.
    ``failures``: collects the images that cannot be read (missing, corrupt, too large) so
    the others are still answered; None raises for the first one.

    Raises:
        DataError: a path does not exist or is not an image (without ``failures``); ``k`` < 1.
        ConfigError: ``reject_on`` is neither ``share`` nor ``score``.
        IndexEmptyError: nothing is enrolled yet.
    """
    open_set_decision(1.0, 1.0, None, on=reject_on)  # validates reject_on before any work
    (require_files if failures is None else require_some_file)(paths)
    head = ctx.spaces.softmax(model) if model is not None and not knn else None
    if head is not None:
        from embplat.pipelines.softmax_classify import classify_softmax

        return classify_softmax(
            ctx, head, head.classes, paths, top=k, reject_below=reject_below,
            reject_on=reject_on, failures=failures,
        )  # fmt: skip
    space = ctx.spaces.space(model)
    flt = {**ENROLLED, **(flt or {})}
    k_used, notes = _checked_k(space, k, flt)
    kept, queries = embed_answerable(ctx, space, paths, failures)
    if not kept:
        return []
    out = []
    for label, hits in zip(kept, space.index.search(queries, k_used, flt), strict=True):
        vote = knn_vote(
            [str(h.payload.get("class")) for h in hits], [h.score for h in hits], weighted=weighted
        )
        accept = open_set_decision(vote.confidence, hits[0].score, reject_below, on=reject_on)
        out.append(
            Prediction(
                path=label,
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
    ctx: Context,
    path: QueryImage,
    *,
    k: int = 5,
    flt: Filter | None = None,
    model: str | None = None,
) -> tuple[list[Neighbour], list[str]]:
    """The ``k`` images nearest to ``path`` (a file or encoded bytes; any split unless
    filtered), with notes.

    ``model``: search a trained model's space (e.g. a DeViSE model's semantic space).
    """
    require_files([path])
    space = ctx.spaces.space(model)
    user_filter = dict(flt or {})
    flt = {"kind": "image", **user_filter}
    k_used, notes = _checked_k(space, k, flt, user_filter)
    query = embed_query_images(space, [path], max_pixels=ctx.ingest.max_pixels)
    hits = space.index.search(query, k_used, flt)[0]
    return [Neighbour.from_hit(h) for h in hits], notes
