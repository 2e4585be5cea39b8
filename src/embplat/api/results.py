"""What the Python API, the HTTP service and the CLI's ``--json`` answer: small dataclasses
with ``to_dict()``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def _to_dict(obj: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` for these flat results, without its deep copies (it is called
    once per served answer): nested results by their ``to_dict``, lists and dicts copied."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, list):
            value = [v.to_dict() if hasattr(v, "to_dict") else v for v in value]
        elif isinstance(value, dict):
            value = dict(value)
        out[f.name] = value
    return out


@dataclass(frozen=True)
class Match:
    """One neighbour of a query: a cataloged image, a label (in a DeViSE space) or a caption
    (of a matching model).

    Attributes:
        label: its class (the label itself for a label point).
        score: cosine similarity to the query (higher is more similar).
        image_id: its catalog id (None for a label point); the service serves it as
            ``/images/{image_id}``.
        path: the image file as cataloged.
        role: a label point's role (``seen``/``unseen``).
        text: a caption point's sentence.
    """

    label: str
    score: float
    image_id: int | None = None
    path: str | None = None
    role: str | None = None
    text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return _to_dict(self)


@dataclass
class Classification:
    """The kNN vote for one query image, or a trained classifier's softmax answer.

    Attributes:
        source: what the query was (a path, an upload's file name, ``<image 0>``).
        label: the winner, or ``unknown`` when rejected (``best_label`` then holds the winner).
        confidence: the winner's share of the votes (softmax: its probability);
            runner_up/runner_up_share likewise.
        k: neighbours that voted (0 for softmax); tallies: votes per class.
        neighbours: the voters, nearest first.
        notes: remarks on the query (e.g. k capped at the enrolled images).
        method: ``knn`` (a vote) or ``softmax`` (a trained classifier's head).
        probabilities: softmax: the most probable classes, most probable first.
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
    method: str = "knn"
    probabilities: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return _to_dict(self)


@dataclass
class ZeroShot:
    """The nearest label vectors of one query image in a DeViSE model's space: labels never
    seen in training (``unseen``) compete with the others.

    Attributes:
        source: what the query was (as :class:`Classification`).
        label, score, role: the nearest label, its cosine and role.
        model: the DeViSE model (or the ConSE space).
        candidates: the nearest labels, best first (``Match`` with ``role``).
        gamma: the calibration subtracted from the seen labels' scores (None: ConSE).
        notes: what the answer should be read with (e.g. no stored calibration).
    """

    source: str
    label: str
    score: float
    role: str
    model: str
    candidates: list[Match] = field(default_factory=list)
    gamma: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return _to_dict(self)


@dataclass(frozen=True)
class CaptionText:
    """One generated caption: its text, summed token log-probability, ranking score."""

    text: str
    logprob: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return _to_dict(self)


@dataclass
class Captions:
    """Captions generated for one image by a captioning model, best first.

    Attributes:
        source: what the query was (as :class:`Classification`).
        model: the captioning model; beam: the beam width decoded with.
    """

    source: str
    model: str
    beam: int
    captions: list[CaptionText] = field(default_factory=list)

    @property
    def best(self) -> str:
        """The best caption's text ("" when none was generated)."""
        return self.captions[0].text if self.captions else ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return _to_dict(self)


@dataclass(frozen=True)
class Failure:
    """A query image that could not be answered, and why."""

    source: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return _to_dict(self)


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
        return _to_dict(self)


@dataclass(frozen=True)
class ClassInfo:
    """One class of the catalog: its role (seen/unseen) and image count per split."""

    name: str
    role: str
    images: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return _to_dict(self)


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
        return _to_dict(self)


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
        return _to_dict(self)


@dataclass(frozen=True)
class ImageInfo:
    """A cataloged image: what the service may serve, by id only."""

    id: int
    path: str
    label: str
    split: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return _to_dict(self)
