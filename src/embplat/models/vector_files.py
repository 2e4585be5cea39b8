"""Users' word-vector files: ``.bin`` (fastText) used in place, ``.vec`` / GloVe ``.txt``
converted once into an ``array`` source (``words.txt`` + ``vectors.npy``) in the data home.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from embplat.errors import DataError
from embplat.models.wordvectors import VectorSource


def convert_text_file(path: Path, out: Path, *, max_words: int | None = None) -> VectorSource:
    """Read a ``.vec`` (first line ``N D``) or GloVe ``.txt`` file into ``out`` as an array.

    Raises:
        DataError: the file is missing, empty, has rows of differing lengths, or a value that
            is not a finite number (the message names the file and line).
    """
    if not path.is_file():
        raise DataError(f"word-vector file {path} does not exist")
    words: list[str] = []
    rows: list[np.ndarray] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh):
            parts = line.rstrip().split(" ")
            if n == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # fastText .vec header: "<count> <dim>"
            if len(parts) < 2:
                continue
            if rows and len(parts) - 1 != rows[0].shape[0]:
                raise DataError(
                    f"{path} line {n + 1}: {len(parts) - 1} numbers, expected {rows[0].shape[0]}"
                )
            words.append(parts[0])
            rows.append(_parse_row(path, n + 1, parts[1:]))
            if max_words and len(words) >= max_words:
                break
    if not rows:
        raise DataError(f"{path} holds no word vectors (expected lines 'word v1 v2 ...')")
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "vectors.npy", np.stack(rows))
    (out / "words.txt").write_text("\n".join(words), encoding="utf-8")
    return VectorSource(kind="array", path=str(out.resolve()), origin=path.name)


def _parse_row(path: Path, line: int, values: list[str]) -> np.ndarray:
    """(dim,) float32 of one line's numbers; NaN and infinity are refused like text, since one
    such vector would turn every label mean and cosine it enters into NaN."""
    with np.errstate(over="ignore"):  # 1e40 overflows float32 to inf, refused below
        try:
            row = np.asarray(values, dtype=np.float32)
        except ValueError:
            row = None
        if row is not None and np.all(np.isfinite(row)):
            return row
        bad = next(v for v in values if not _finite(v))
        raise DataError(
            f"{path} line {line}: {bad[:40]!r} is not a finite number; fix or delete that line "
            "(expected 'word v1 v2 ...' with decimal numbers)"
        )


def _finite(value: str) -> bool:
    try:
        return bool(np.isfinite(np.float32(value)))
    except ValueError:
        return False


def source_for_file(path: Path, home: Path, *, max_words: int | None = None) -> VectorSource:
    """The source for a user's file: ``.bin`` as fastText, text files converted into ``home``.

    Raises:
        DataError: the file does not exist or cannot be parsed.
    """
    if not path.is_file():
        raise DataError(f"word-vector file {path} does not exist")
    if path.suffix == ".bin":
        return VectorSource(kind="fasttext", path=str(path.resolve()), origin=path.name)
    slug = re.sub(r"[^a-z0-9]+", "_", path.name.lower()).strip("_")
    return convert_text_file(path, home / "vectors" / slug, max_words=max_words)
