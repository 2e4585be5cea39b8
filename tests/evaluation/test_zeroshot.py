"""ZSL / GZSL metrics and calibrated stacking on hand-made score matrices."""

import numpy as np
import pytest

from embplat.evaluation.zeroshot import (
    calibrate_gamma,
    confusion,
    gzsl_accuracy,
    harmonic_mean,
    per_class_accuracy,
)


def test_per_class_accuracy_averages_classes_not_images():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.2, 0.8]])
    y = np.array([0, 0, 0, 0, 1])  # class 0: 4/4 right, class 1: 1/1 right
    mean, per = per_class_accuracy(scores, y)
    assert mean == 1.0 and per == {0: 1.0, 1: 1.0}
    y = np.array([0, 0, 0, 1, 0])  # class 0: 3/4, class 1: 0/1
    mean, _ = per_class_accuracy(scores, y)
    assert mean == pytest.approx((0.75 + 0.0) / 2)
    top2, _ = per_class_accuracy(scores, y, k=2)
    assert top2 == 1.0


def test_gzsl_and_calibrated_stacking_trade_seen_for_unseen():
    # labels 0,1 seen; 2 unseen. Seen scores are inflated by 0.2, as a trained model does.
    seen_labels = np.array([True, True, False])
    scores = np.array(
        [
            [0.9, 0.3, 0.2],  # seen image of 0
            [0.3, 0.8, 0.2],  # seen image of 1
            [0.6, 0.3, 0.5],  # unseen image of 2, beaten by seen label 0 by 0.1
            [0.3, 0.55, 0.5],  # unseen image of 2, beaten by 0.05
        ]
    )
    y = np.array([0, 1, 2, 2])
    raw = gzsl_accuracy(scores, y, seen_labels)
    assert raw == {"seen": 1.0, "unseen": 0.0, "H": 0.0}
    gamma = calibrate_gamma(scores, y, seen_labels)
    assert 0.1 < gamma < 0.3  # enough to flip both unseen images, not the seen ones
    cal = gzsl_accuracy(scores, y, seen_labels, gamma=gamma)
    assert cal == {"seen": 1.0, "unseen": 1.0, "H": 1.0}
    assert harmonic_mean(0.5, 1.0) == pytest.approx(2 / 3) and harmonic_mean(0, 0) == 0


def test_confusion_counts_rows_true_columns_predicted():
    m = confusion(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert m.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
