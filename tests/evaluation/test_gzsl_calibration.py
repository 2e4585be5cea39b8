"""Calibrated stacking's gamma chosen from seen classes only (cross-validation over class
splits), on synthetic features where a linear map to the label vectors exists."""

import itertools

import numpy as np
import pytest

from embplat.errors import DataError
from embplat.evaluation.gzsl_calibration import (
    calibrate_by_class_splits,
    h_curve,
    pseudo_unseen_folds,
    ridge_projection,
)
from embplat.evaluation.zeroshot import gzsl_accuracy, gzsl_predictions

SEEN, UNSEEN, DIM, FEATURES = 6, 2, 8, 32


@pytest.fixture(scope="module")
def world():
    """Label vectors of 6 seen + 2 unseen classes; images are a fixed linear image of their
    label vector plus noise, so a projection learnt on seen classes transfers (imperfectly)."""
    rng = np.random.default_rng(0)
    labels = rng.normal(size=(SEEN + UNSEEN, DIM))
    labels /= np.linalg.norm(labels, axis=1, keepdims=True)
    mix = rng.normal(size=(FEATURES, DIM))

    def images(classes, n):
        x = np.concatenate(
            [(mix @ labels[c])[None, :] + 0.6 * rng.normal(size=(n, FEATURES)) for c in classes]
        )
        return x, np.repeat(np.asarray(classes), n)

    return labels, images(range(SEEN), 30), images(range(SEEN), 10), images(range(SEEN, 8), 10)


def test_gamma_from_seen_classes_alone_lets_unseen_images_get_their_label(world):
    labels, (tx, ty), (vx, vy), (ux, uy) = world
    # the calibration sees seen classes' images and label vectors only
    cal = calibrate_by_class_splits(tx, ty, vx, vy, labels[:SEEN], lam=10.0)
    assert cal.holdout == 2 and len(cal.fold_gammas) == 15  # C(6, 2) splits, all informative
    assert min(cal.fold_gammas) <= cal.gamma <= max(cal.fold_gammas) and cal.gamma > 0.05
    assert len(cal.fold_h) == 15 and np.mean(cal.fold_h) > 0.5  # the folds' H at that gamma

    # the "trained model": a projection fit on every seen class, scoring all 8 labels
    mean, scale = tx.mean(axis=0), tx.std(axis=0) + 1e-6
    weights = ridge_projection((tx - mean) / scale, labels[ty], 10.0)
    out = ((np.concatenate([vx, ux]) - mean) / scale) @ weights
    scores = (out / np.linalg.norm(out, axis=1, keepdims=True)) @ labels.T
    y, seen = np.concatenate([vy, uy]), np.arange(SEEN + UNSEEN) < SEEN
    raw, calibrated = (
        gzsl_accuracy(scores, y, seen),
        gzsl_accuracy(scores, y, seen, gamma=cal.gamma),
    )
    assert calibrated["H"] > raw["H"] + 0.05 and calibrated["seen"] >= raw["seen"] - 0.1
    unseen_rows = ~seen[y]
    before = gzsl_predictions(scores, seen)[unseen_rows] == y[unseen_rows]
    after = gzsl_predictions(scores, seen, cal.gamma)[unseen_rows] == y[unseen_rows]
    assert (after & ~before).sum() >= 2  # unseen images labelled right only with calibration
    assert not (before & ~after).any()


def test_folds_are_distinct_class_splits_every_one_when_few():
    every = pseudo_unseen_folds(4, holdout=1, folds=10)
    assert [np.flatnonzero(~m).tolist() for m in every] == [[0], [1], [2], [3]]
    some = pseudo_unseen_folds(10, holdout=3, folds=7, seed=1)
    held = {tuple(np.flatnonzero(~m)) for m in some}
    assert len(held) == 7 and all(len(h) == 3 for h in held)
    assert held <= set(itertools.combinations(range(10), 3))
    assert held == {
        tuple(np.flatnonzero(~m)) for m in pseudo_unseen_folds(10, holdout=3, folds=7, seed=1)
    }
    with pytest.raises(DataError, match="3\\+ seen classes"):
        pseudo_unseen_folds(2, holdout=1, folds=5)
    with pytest.raises(DataError, match="held out"):
        pseudo_unseen_folds(5, holdout=4, folds=5)


def test_ridge_dual_and_primal_solutions_agree():
    rng = np.random.default_rng(1)
    targets = rng.normal(size=(40, 3))
    wide = rng.normal(size=(10, 40))  # fewer rows than features: solved in the dual
    tall = rng.normal(size=(40, 10))
    for x, t in ((wide, targets[:10]), (tall, targets)):
        primal = np.linalg.solve(x.T @ x + 5.0 * np.eye(x.shape[1]), x.T @ t)
        np.testing.assert_allclose(ridge_projection(x, t, 5.0), primal, atol=1e-8)


def test_without_valid_images_on_both_sides_there_is_no_gamma(world):
    labels, (tx, ty), (vx, vy), _ = world
    with pytest.raises(DataError, match="valid images"):
        calibrate_by_class_splits(tx, ty, vx[:0], vy[:0], labels[:SEEN])
    only_one = vy == 0  # valid images of one class: each split lacks one side
    with pytest.raises(DataError, match="both sides"):
        calibrate_by_class_splits(tx, ty, vx[only_one], vy[only_one], labels[:SEEN])


def test_h_curve_scores_every_gamma_of_the_grid():
    seen = np.array([True, True, False])
    # seen images stay right while gamma < 0.28; the unseen image needs gamma > 0.12
    scores = np.array([[0.9, 0.2, 0.62], [0.1, 0.9, 0.62], [0.6, 0.2, 0.48]])
    y = np.array([0, 1, 2])
    grid = np.round(np.arange(-0.5, 0.5001, 0.05), 4)
    curve = h_curve(scores, y, seen, grid)
    assert grid[curve == 1.0].tolist() == [0.15, 0.2, 0.25]
    assert curve[grid.tolist().index(0.0)] == 0.0 and curve[-1] == 0.0  # unseen / seen lost
