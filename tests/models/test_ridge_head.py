"""The closed-form ridge projection: the map it fits, how alpha is chosen, the linear layer."""

import numpy as np
import pytest

from embplat.errors import DataError
from embplat.models.ridge_head import fit_ridge_head, pseudo_unseen_folds


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _attribute_world(rng, n_classes=8, per_class=30, dim=12, feat=40, noise=0.05):
    """Classes with random attribute rows; features a fixed linear image of them plus noise."""
    attrs = _unit(rng.normal(size=(n_classes, dim)))
    mix = rng.normal(size=(dim, feat))
    y = np.repeat(np.arange(n_classes), per_class)
    x = attrs[y] @ mix + noise * rng.normal(size=(len(y), feat)) + 3.0  # offset: centring matters
    return x, y, attrs


def test_the_linear_layer_reproduces_the_fitted_map_on_raw_features():
    rng = np.random.default_rng(0)
    x, y, attrs = _attribute_world(rng)
    fit = fit_ridge_head(x, y, attrs, alpha=0.1)
    weight, bias = fit.linear()
    assert weight.shape == (attrs.shape[1], x.shape[1]) and bias.shape == (attrs.shape[1],)
    expected = (x - fit.mean) / fit.scale @ fit.weights
    np.testing.assert_allclose(x @ weight.T + bias, expected, rtol=1e-4, atol=1e-4)
    # the centred, rescaled features have unit mean squared norm: alpha's grid is scale-free
    z = (x - fit.mean) / fit.scale
    assert np.mean(np.sum(z**2, axis=1)) == pytest.approx(1.0)
    assert fit.chosen == "given" and fit.cv_scores == {}


def test_unseen_classes_land_nearest_their_own_label():
    """Fitted on 6 classes, the map sends images of 2 others nearest their own rows."""
    rng = np.random.default_rng(1)
    x, y, attrs = _attribute_world(rng, noise=0.02)
    seen = y < 6
    fit = fit_ridge_head(x[seen], y[seen], attrs, alpha=0.01)
    weight, bias = fit.linear()
    out = _unit(x[~seen] @ weight.T + bias)
    guess = 6 + np.argmax(out @ attrs[6:].T, axis=1)
    assert np.mean(guess == y[~seen]) > 0.9


def test_alpha_is_chosen_by_class_splits_of_the_seen_classes():
    rng = np.random.default_rng(2)
    clean = fit_ridge_head(*_attribute_world(rng, noise=0.01))
    noisy = fit_ridge_head(*_attribute_world(np.random.default_rng(2), noise=3.0))
    for fit in (clean, noisy):
        assert fit.chosen == "cv" and len(fit.cv_scores) == 7
        assert fit.cv_scores[f"{fit.alpha:g}"] == max(fit.cv_scores.values())
    # pseudo-unseen classes (2 of 8 held out per split) are found on clean data, far above
    # chance (0.5); noise drowns them
    assert max(clean.cv_scores.values()) > 0.85
    assert max(noisy.cv_scores.values()) < max(clean.cv_scores.values()) - 0.1
    summary = noisy.summary()
    assert summary["method"] == "ridge" and "weights" not in summary


def test_too_few_classes_for_splits_fall_back_to_the_middle_of_the_grid():
    rng = np.random.default_rng(3)
    x, y, attrs = _attribute_world(rng, n_classes=3)
    fit = fit_ridge_head(x, y, attrs)
    assert fit.chosen == "default" and fit.alpha == 1.0


def test_bad_input_is_refused_with_the_value():
    with pytest.raises(DataError, match="no training features"):
        fit_ridge_head(np.empty((0, 4)), np.empty(0, int), np.eye(2))
    with pytest.raises(DataError, match="-1"):
        fit_ridge_head(np.ones((4, 4)), np.array([0, 0, 1, 1]), np.eye(2), alpha=-1)
    with pytest.raises(DataError, match="3\\+ seen classes"):
        pseudo_unseen_folds(2, holdout=1, folds=4)
