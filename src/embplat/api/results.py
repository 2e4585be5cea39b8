"""What the Python API and the HTTP service answer: small dataclasses with ``to_dict()``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Match:
    """One neighbour of a query: a cataloged image (or, in a DeViSE space, a label).

    Attributes:
        label: its class.
        score: cosine similarity to the query (higher is more similar).
        image_id: its catalog id (None for a label point); the service serves it as
            ``/images/{image_id}``.
        path: the image file as cataloged.
    """

    label: str
    score: float
    image_id: int | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class Classification:
    """The kNN vote for one query image.

    Attributes:
        source: what the query was (a path, an upload's file name, ``<image 0>``).
        label: the winner, or ``unknown`` when rejected (``best_label`` then holds the winner).
        confidence: the winner's share of the votes; runner_up/runner_up_share likewise.
        k: neighbours that voted; tallies: votes per class.
        neighbours: the voters, nearest first.
        notes: remarks on the query (e.g. k capped at the enrolled images).
    """

    source: str
    label: str
    confidence: float
    k: int
    runner_up: str | None = None
    runner_up_share: float = 0.0
    tallies: dict[str, float] = field(default_factory=dict)
    neighbours: list[Match] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    best_label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class Failure:
    """A query image that could not be answered, and why."""

    source: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class SearchResult:
    """The neighbours of one query (image, text, vector or point id).

    Attributes:
        query: what was searched for, in words (``text 'red'``, ``image img.jpg``...).
        model: the model searched (None: the active encoder).
        matches: best first.
        notes: remarks (e.g. k capped).
    """

    query: str
    model: str | None
    matches: list[Match] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class ClassInfo:
    """One class of the catalog: its role (seen/unseen) and image count per split."""

    name: str
    role: str
    images: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class JobInfo:
    """One recorded job and its progress."""

    id: int
    kind: str
    state: str
    total: int
    done: int
    failed: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class ModelInfo:
    """One registered model: a pretrained encoder or a trained model."""

    name: str
    kind: str
    encoder: str
    dim: int
    image_size: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class ImageInfo:
    """A cataloged image: what the service may serve, by id only."""

    id: int
    path: str
    label: str
    split: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)
