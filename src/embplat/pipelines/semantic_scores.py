"""Scoring shared by the visual-semantic use cases: a collection's label and image points as
arrays, hubness correction, and calibrated stacking with the model's stored gamma.

``label_images`` scores every candidate label of an image here (not through the index's
top-k), since calibrated stacking and hubness correction change the ranking; label sets are
small. A hubness-corrected ``search_by_text`` scans the model's images the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from embplat.catalog import repo
from embplat.evaluation.hubness import check_hubness, correct_hubness
from embplat.pipelines.context import Context, Space
from embplat.retrieval import Filter
from embplat.retrieval.base import matches


@dataclass(frozen=True)
class LabelScore:
    """One label and its score for a query: cosine similarity, hubness-corrected when asked,
    minus gamma for a seen label when calibrated."""

    label: str
    score: float
    role: str


@dataclass
class LabelPrediction:
    """Zero-shot prediction for one image: the best label and the top candidates.

    ``gamma``: the calibrated-stacking constant subtracted from the seen labels' scores;
    ``hubness``: the correction applied; ``notes``: why a default was not applied.
    """

    path: str
    label: str
    score: float
    role: str
    model: str
    candidates: list[LabelScore] = field(default_factory=list)
    gamma: float = 0.0
    hubness: str = "none"
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


#: Cosine above which a label vector is the query text's own (dropped from its label set).
_TEXT_LABEL_MATCH = 0.9999
#: Points fetched from an index per ``get`` call.
_CHUNK = 4096
#: Splits a collection's images may be in.
_SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Points:
    """Vectors (N, D) of some points of a collection and their payloads."""

    vectors: np.ndarray
    payloads: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.payloads)


def label_points(space: Space, flt: Filter) -> Points:
    """Every label point matching ``flt`` (a search for all of them, then their vectors),
    ordered by class name so ties break the same way on every backend."""
    n = space.index.count(flt)
    if n == 0:
        return Points(np.empty((0, space.index.dim), np.float32), [])
    probe = np.ones((1, space.index.dim), np.float32)  # any direction: every label comes back
    hits = sorted(space.index.search(probe, n, flt)[0], key=lambda h: str(h.payload["class"]))
    vectors, payloads = space.index.get([h.id for h in hits])
    return Points(np.asarray(vectors, np.float32), payloads)


def image_points(ctx: Context, space: Space, flt: Filter | None = None) -> Points:
    """The collection's cataloged image points (those matching ``flt``)."""
    with ctx.sessions() as session:
        rows = repo.embedded_images(
            session=session, collection_id=space.collection_id, splits=list(_SPLITS)
        )
    ids = [r[3] for r in rows]
    parts, payloads = [], []
    for start in range(0, len(ids), _CHUNK):
        vectors, found = space.index.get(ids[start : start + _CHUNK])
        keep = [i for i, p in enumerate(found) if matches(p, flt)]
        parts.append(np.asarray(vectors, np.float32)[keep])
        payloads += [found[i] for i in keep]
    if not parts:
        return Points(np.empty((0, space.index.dim), np.float32), [])
    return Points(np.concatenate(parts), payloads)


def stored_gamma(model: str, config: Mapping[str, Any]) -> tuple[float, list[str]]:
    """The gamma stored at training time (``gzsl_calibration``), or 0 with a note."""
    found = config.get("gzsl_calibration")
    if found and found.get("gamma") is not None:
        return float(found["gamma"]), []
    return 0.0, [
        f"model {model} has no stored GZSL calibration (trained before it existed, or the "
        "calibration failed): gamma 0, so seen labels usually win; retrain it or pass a gamma"
    ]


def choose_gamma(
    model: str, config: Mapping[str, Any], gamma: float | None, hubness: str
) -> tuple[float, list[str]]:
    """The gamma to apply: an explicit one, else the stored one (cosine scores only)."""
    if gamma is not None:
        return float(gamma), []
    if check_hubness(hubness) != "none":
        return 0.0, [
            f"the stored gamma is calibrated on cosine scores; not applied with hubness "
            f"{hubness} (pass a gamma to apply one)"
        ]
    return stored_gamma(model, config)


def label_scores(
    queries: np.ndarray,
    labels: np.ndarray,
    seen: np.ndarray,
    *,
    gamma: float = 0.0,
    hubness: str = "none",
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Scores of each query image for each label: cosine (or hubness-corrected), minus
    ``gamma`` on the seen labels (calibrated stacking).

    Args:
        queries: (Q, D) unit image vectors; labels: (L, D) unit label vectors.
        seen: (L,) bool, True for labels of the model's training classes.
        reference: (N, D) other images of the space, the population the hubness
            correction measures each label against (the queries are added to it).

    Returns:
        (Q, L) float32.
    """
    if hubness == "none" or len(labels) == 0:
        sims = queries @ labels.T
    else:
        pool = queries if reference is None else np.concatenate([reference, queries])
        sims = correct_hubness(pool @ labels.T, hubness, rank_axis=1)[len(pool) - len(queries) :]
    return (sims - gamma * seen.astype(np.float32)[None, :]).astype(np.float32)


def text_scores(
    query: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    hubness: str,
    *,
    stands_for: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) scores of ``images`` (N, D) for the (D,) text vector ``query``, hubness-corrected
    against the label set ``labels`` (L, D): an image near every label is demoted. Labels
    equal to the text's own label vector ``stands_for`` (default: the query itself; an
    expanded query stands for the label it grew from) are dropped from the set, and the
    query is added once."""
    own = query if stands_for is None else stands_for
    others = labels[labels @ own < _TEXT_LABEL_MATCH] if len(labels) else labels
    sims = images @ np.concatenate([others, query[None, :]]).T
    return correct_hubness(sims, hubness, rank_axis=0)[:, -1]


def seen_mask(payloads: list[dict[str, Any]], classes: Collection[str]) -> np.ndarray:
    """(L,) bool: which label points are of the model's training classes."""
    return np.array([p.get("class") in classes for p in payloads], dtype=bool)


def top_labels(
    path: str,
    scores: np.ndarray,
    payloads: list[dict[str, Any]],
    k: int,
    model: str,
    gamma: float,
    hubness: str,
    notes: list[str],
) -> LabelPrediction:
    """The top ``k`` labels of one image's (L,) ``scores`` over the label points
    ``payloads``; ties go to the earlier label."""
    cands = [
        LabelScore(
            str(payloads[i]["class"]), round(float(scores[i]), 6), str(payloads[i].get("role"))
        )
        for i in np.argsort(-scores, kind="stable")[:k]
    ]
    top = cands[0]
    return LabelPrediction(
        path, top.label, top.score, top.role, model, cands, gamma, hubness, list(notes)
    )
