"""A projection head fitted in closed form: ridge regression from frozen features to targets.

A visual-semantic projection trained by SGD onto the label vectors of a few seen classes
learns, in effect, to tell those classes apart; the least-squares map from the same frozen
features (ESZSL, Romera-Paredes & Torr 2015, and the linear baselines of Xian et al. 2018 are
of this kind) keeps more of what the features say about each label dimension, which is what
an unseen label is scored on. ``train devise --projection ridge`` uses it (measured on
Fashion-MNIST pairs in README).

The penalty ``alpha`` applies to centred features rescaled to unit mean squared norm, so one
grid serves any backbone. Left unset it is chosen by cross-validation over class splits (the
seen classes only): some seen classes are held out as pseudo-unseen, the map is fitted on the
rest, and the held-out images are classified among the held-out labels; the alpha with the
best mean per-class top-1 over the splits wins (ties: the larger alpha).

Pure numpy; no unseen image or class takes part.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

from embplat.errors import DataError

#: Penalties tried by the class-split cross-validation (on unit-scale centred features).
ALPHA_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
#: Class splits tried at most.
FOLDS = 20


@dataclass(frozen=True)
class RidgeFit:
    """A fitted map ``(features - mean) / scale @ weights`` and how its alpha was chosen.

    Attributes:
        weights: (F, D); mean: (F,); scale: the rms norm of the centred training features.
        alpha: the penalty used; chosen: ``cv`` (class splits) or ``given``.
        cv_scores: mean pseudo-unseen top-1 per grid alpha (empty when given).
    """

    weights: np.ndarray
    mean: np.ndarray
    scale: float
    alpha: float
    chosen: str
    cv_scores: dict[str, float]

    def linear(self) -> tuple[np.ndarray, np.ndarray]:
        """(D, F) weight and (D,) bias of the equivalent ``nn.Linear``."""
        w = self.weights / self.scale
        return w.T.astype(np.float32), (-self.mean @ w).astype(np.float32)

    def summary(self) -> dict[str, object]:
        """JSON-ready record (without the arrays)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("weights", "mean")}
        return {"method": "ridge", **out}


def pseudo_unseen_folds(
    n_classes: int, *, holdout: int, folds: int, seed: int = 0
) -> list[np.ndarray]:
    """Class splits: (n_classes,) bool masks, True for the fold's seen classes.

    Every split when there are at most ``folds`` of them, else ``folds`` distinct seeded ones.

    Raises:
        DataError: fewer than 3 classes, or ``holdout`` leaves fewer than 2 seen per fold.
    """
    if n_classes < 3 or not 1 <= holdout <= n_classes - 2:
        raise DataError(
            f"class-split calibration needs 3+ seen classes and 1..{n_classes - 2} held out "
            f"per fold; got {n_classes} classes, {holdout} held out"
        )
    combos = list(itertools.combinations(range(n_classes), holdout))
    if len(combos) > folds:
        rng = np.random.default_rng(seed)
        combos = [combos[int(i)] for i in rng.choice(len(combos), folds, replace=False)]
    masks = []
    for held in combos:
        mask = np.ones(n_classes, dtype=bool)
        mask[list(held)] = False
        masks.append(mask)
    return masks


def ridge_projection(features: np.ndarray, targets: np.ndarray, lam: float) -> np.ndarray:
    """Least-squares map from (centred) features to targets, with an L2 penalty.

    Args:
        features: (N, F) inputs; targets: (N, D).

    Returns:
        (F, D) weights. Solved in the dual (an N × N system) when N < F.
    """
    x = np.asarray(features, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if len(x) < x.shape[1]:
        return x.T @ np.linalg.solve(x @ x.T + lam * np.eye(len(x)), t)
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ t)


def fit_ridge_head(
    features: np.ndarray,
    labels: np.ndarray,
    label_vectors: np.ndarray,
    *,
    alpha: float | None = None,
    grid: tuple[float, ...] = ALPHA_GRID,
    seed: int = 0,
) -> RidgeFit:
    """The ridge map from ``features`` onto each image's label vector.

    Args:
        features: (N, F) frozen backbone features; labels: (N,) class indices.
        label_vectors: (C, D) the classes' unit label vectors, as the model is trained on.
        alpha: the penalty; None chooses it from ``grid`` by class-split cross-validation
            (needs 4+ classes; with fewer the middle of the grid is used).

    Raises:
        DataError: no features, or a negative alpha.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(x) == 0:
        raise DataError("no training features to fit the ridge projection on")
    if alpha is not None and alpha < 0:
        raise DataError(f"ridge alpha must be 0 or more, got {alpha}")
    mean = x.mean(axis=0)
    scale = float(np.sqrt(np.mean(np.sum((x - mean) ** 2, axis=1)))) or 1.0
    z = (x - mean) / scale
    targets = np.asarray(label_vectors, dtype=np.float64)
    scores: dict[str, float] = {}
    chosen = "given"
    if alpha is None:
        scores = _cv_scores(z, y, targets, grid, seed)
        if scores:
            best = max(scores.values())
            alpha, chosen = max(a for a in grid if scores[f"{a:g}"] >= best - 1e-12), "cv"
        else:
            alpha, chosen = grid[len(grid) // 2], "default"
    weights = ridge_projection(z, targets[y], alpha)
    return RidgeFit(weights, mean, scale, float(alpha), chosen, scores)


def _cv_scores(
    z: np.ndarray, y: np.ndarray, targets: np.ndarray, grid: tuple[float, ...], seed: int
) -> dict[str, float]:
    """Mean over class splits of the held-out classes' per-class top-1 among their own
    labels, per alpha of ``grid``; {} with fewer than 4 classes present."""
    present = np.unique(y)
    if len(present) < 4:
        return {}
    holdout = max(2, round(len(present) / 4))
    folds = pseudo_unseen_folds(len(present), holdout=holdout, folds=FOLDS, seed=seed)
    per_alpha: dict[str, list[float]] = {f"{a:g}": [] for a in grid}
    for mask in folds:
        fit_classes, held = present[mask], present[~mask]
        train, test = np.isin(y, fit_classes), np.isin(y, held)
        for a in grid:
            out = z[test] @ ridge_projection(z[train], targets[y[train]], a)
            guess = held[np.argmax(_unit(out) @ targets[held].T, axis=1)]
            accs = [np.mean(guess[y[test] == c] == c) for c in held]
            per_alpha[f"{a:g}"].append(float(np.mean(accs)))
    return {k: round(float(np.mean(v)), 4) for k, v in per_alpha.items()}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
