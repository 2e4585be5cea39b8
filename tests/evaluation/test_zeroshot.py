"""ZSL / GZSL metrics and calibrated stacking on hand-made score matrices."""

import numpy as np
import pytest

from embplat.evaluation.zeroshot import (
    calibrate_gamma,
    calibrated_summary,
    gzsl_accuracy,
    gzsl_predictions,
    harmonic_mean,
    image_counts,
    per_class_accuracy,
    rounded,
    zsl_summary,
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


def test_zsl_summary_scores_unseen_images_among_unseen_labels_only():
    seen = np.array([True, False, False])
    names = ["cat", "okapi", "zebra"]
    scores = np.array(
        [
            [0.9, 0.1, 0.0],  # a seen image: not scored
            [0.9, 0.5, 0.4],  # okapi: right among the unseen labels, though "cat" scores higher
            [0.9, 0.6, 0.3],  # zebra: wrong at top-1, right at top-2
        ]
    )
    y = np.array([0, 1, 2])
    z = zsl_summary(scores, y, seen, names)
    assert (z["images"], z["labels"], z["top5_k"]) == (2, 2, 2)
    assert z["top1"] == 0.5 and z["top5"] == 1.0
    assert z["per_class_top1"] == {"okapi": 1.0, "zebra": 0.0}
    assert zsl_summary(scores[:1], y[:1], seen, names) is None  # no unseen image
    # gamma 0.45 lowers "cat" below okapi for both unseen images; the seen one keeps "cat"
    assert gzsl_predictions(scores, seen, gamma=0.45).tolist() == [0, 1, 1]
    assert image_counts(y, seen) == {"seen_images": 1, "unseen_images": 2}


def test_calibrated_summary_chooses_gamma_on_one_half_only():
    seen = np.array([True, False])
    scores = np.array([[0.9, 0.2], [0.6, 0.5], [0.9, 0.2], [0.6, 0.5]])
    y = np.array([0, 1, 0, 1])
    hashes = ["00", "02", "01", "03"]  # even first bytes calibrate, odd ones are scored
    out = calibrated_summary(scores, y, seen, hashes)
    assert (out["calibration_images"], out["eval_images"]) == (2, 2)
    assert 0.1 < out["gamma"] < 0.7
    assert out["without"] == {"seen": 1.0, "unseen": 0.0, "H": 0.0}
    assert out["with"] == {"seen": 1.0, "unseen": 1.0, "H": 1.0}
    assert rounded({"a": 1 / 3, "b": float("nan")}) == {"a": 0.3333, "b": None}
