"""Query images: files or their encoded bytes, checked, decoded and encoded in batches;
the ones that cannot be read become failures the answers carry instead of errors.

A query image is a file or its encoded bytes (:data:`QueryImage`): an upload or an in-memory
image is decoded from memory with the same checks as a file (``ingest.images.load_rgb``),
never written to disk first. Answers and failures name a file by its path and bytes by
their position, ``<image N>`` (:func:`query_label`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from embplat.errors import DataError
from embplat.pipelines.context import Context, Space

if TYPE_CHECKING:
    from embplat.models.registry import ImageEncoder

#: A query image: a file, or the encoded contents of one (JPEG, PNG...).
QueryImage = Path | str | bytes
#: How ``load_rgb`` names encoded bytes in its errors.
_BYTES_LABEL = "<image bytes>"


def query_label(image: QueryImage, n: int) -> str:
    """How answers name query ``n``: a file by its path, encoded bytes as ``<image n>``."""
    return f"<image {n}>" if isinstance(image, bytes) else str(image)


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
