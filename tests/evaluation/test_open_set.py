"""Open set: rejection, the accuracy/coverage curve, never-enrolled classes, the unseen drop."""

import numpy as np
import pytest

from embplat.errors import ConfigError
from embplat.evaluation.open_set import (
    accuracy_coverage_curve,
    best_threshold,
    hit_rate,
    open_set_curve,
    open_set_decision,
    open_set_without,
    per_class_precision_at_1,
    precision_drop,
)
from embplat.evaluation.retrieval_eval import evaluate_retrieval
from embplat.evaluation.vectors import SplitVectors

A, B, C = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.2, 1.0]


def _vectors(classes: list[str], rows: list[list[float]]) -> SplitVectors:
    ids = [f"{c}{i}" for i, c in enumerate(classes)]
    return SplitVectors(ids, classes, ids, np.array(rows, dtype=np.float32))


def test_open_set_decision():
    assert open_set_decision(0.6, 0.2, 0.5) is True
    assert open_set_decision(0.4, 0.9, 0.5) is False
    assert open_set_decision(0.4, 0.9, 0.5, on="score") is True
    assert open_set_decision(0.0, 0.0, None) is True
    with pytest.raises(ConfigError, match="share, score"):
        open_set_decision(0.5, 0.5, 0.1, on="margin")


def test_accuracy_coverage_curve_by_hand():
    truth = np.array([0, 0, 1, 1, 2, 2])  # class 2 is unseen: always mispredicted
    pred = np.array([0, 1, 1, 1, 0, 1])
    conf = np.array([0.9, 0.5, 0.8, 0.6, 0.4, 0.7])
    unseen = truth == 2
    curve = accuracy_coverage_curve(truth, pred, conf, unseen, thresholds=[0.0, 0.65, 0.95])
    assert curve[0] == {
        "threshold": 0.0,
        "coverage": 1.0,
        "accuracy": 0.75,  # 3 of the 4 seen queries right
        "unknown_rate": 0.0,
        "open_set_accuracy": 0.5,
    }
    # ≥ 0.65 accepts seen 0.9 ✓, 0.8 ✓ and unseen 0.7; rejects unseen 0.4
    assert curve[1] == {
        "threshold": 0.65,
        "coverage": 0.5,
        "accuracy": 1.0,
        "unknown_rate": 0.5,
        "open_set_accuracy": pytest.approx(3 / 6),
    }
    assert curve[2]["coverage"] == 0.0 and curve[2]["accuracy"] is None
    assert curve[2]["unknown_rate"] == 1.0
    default = accuracy_coverage_curve(truth, pred, conf, unseen)
    assert [row["threshold"] for row in default] == pytest.approx(sorted(conf))
    assert best_threshold(curve)["threshold"] == 0.0  # ties: the lowest threshold
    assert best_threshold([]) is None


def test_per_class_precision_and_unseen_drop():
    names = ["a", "b", "c"]
    base = per_class_precision_at_1(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), names)
    assert base == {"a": 0.5, "b": 1.0, "c": 1.0}
    held = {"a": 0.5, "b": 0.5, "c": 0.25}
    drop = precision_drop(base, held, ["c"])
    assert drop["per_class"]["c"] == {
        "all_classes": 1.0,
        "without_unseen": 0.25,
        "drop": 0.75,
        "unseen": True,
    }
    assert drop["mean_drop_unseen"] == 0.75
    assert drop["mean_drop_seen"] == 0.25
    assert drop["mean_drop_all"] == pytest.approx((0 + 0.5 + 0.75) / 3)
    with pytest.raises(ConfigError, match="zebra"):
        precision_drop(base, held, ["zebra"])
    assert hit_rate(np.array([True, False])) == 0.5 and hit_rate(np.array([], bool)) is None


def test_open_set_without_treats_held_out_classes_as_unknown():
    refs = _vectors(["a", "a", "b", "b", "c", "c"], [A, A, B, B, C, C])
    queries = _vectors(["a", "b", "c"], [A, B, C])
    out = open_set_without(queries, refs, ["c"], k=2)
    # the unknown c is nearest to b (never to its own, unenrolled images) with a low score
    assert out["auroc_score"] == 1.0 and out["auroc_share"] == 0.5  # c's b-vote is unanimous
    assert out["seen_accuracy"] == 1.0  # a and b among themselves
    strict = next(r for r in out["curve"] if r["threshold"] == 1.0)
    assert strict["coverage"] == 1.0 and strict["accuracy"] == 1.0 and strict["unknown_rate"] == 0


def test_open_set_curve_adds_never_enrolled_images_as_unknowns():
    refs = _vectors(["a", "a", "b", "b"], [A, [1.0, 0.1, 0.0], B, [0.1, 1.0, 0.0]])
    queries = _vectors(["a", "b"], [A, [0.0, 0.9, 0.1]])
    names = ["a", "b"]
    result = evaluate_retrieval(
        queries.vectors,
        queries.labels(names),
        refs.vectors,
        refs.labels(names),
        class_names=names,
        ks=(1, 2),
        clustering=False,
    )
    unseen = _vectors(["c", "c"], [C, [0.7, 0.68, 0.2]])  # one voted b, one split a/b
    curve = open_set_curve(result, queries.labels(names), names, unseen, refs, k=2)
    accept_all = curve[0]
    assert accept_all["coverage"] == 1.0 and accept_all["accuracy"] == 1.0
    assert accept_all["unknown_rate"] == 0.0 and accept_all["open_set_accuracy"] == 0.5
    # a threshold above the split vote (share 1/2) rejects that unknown only
    above_half = next(r for r in curve if r["threshold"] > 0.5)
    assert above_half["unknown_rate"] == 0.5 and above_half["coverage"] == 1.0
    nothing = unseen.where(np.zeros(2, dtype=bool))
    assert open_set_curve(result, queries.labels(names), names, nothing, refs) == []
