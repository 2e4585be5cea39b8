"""``platform evaluate --model <matching model>``: cross-modal R@K on the test split, exact and
through the index, recorded in the catalog."""

from __future__ import annotations

import pytest

from embplat.catalog import repo
from embplat.evaluation.crossmodal import crossmodal_metrics
from embplat.pipelines.evaluate import EvaluationRequest, evaluate
from embplat.pipelines.evaluate_matching import exact_scores, split_points


def test_evaluate_dispatches_to_the_crossmodal_evaluation_and_records_it(matching_trained):
    ctx = matching_trained
    out = evaluate(ctx, EvaluationRequest(model="m"))
    assert (out["split"], out["images"], out["captions"]) == ("test", 6, 30)
    points, _ = split_points(ctx, "m", "test")
    expected = crossmodal_metrics(exact_scores(points, "infonce"), points.image_of_text)
    assert out["metrics"] == pytest.approx(expected)
    for key, tolerance in (("t2i_r1", 0.1), ("t2i_r5", 0.1), ("i2t_r5", 0.2), ("t2i_mean_rank", 1)):
        # cosine model: the index ranks as the exact scores (exact breaks ties pessimistically)
        assert out["index"][key] == pytest.approx(out["metrics"][key], abs=tolerance)
    assert 1 <= out["metrics"]["t2i_mean_rank"] <= 6
    with ctx.sessions() as session:
        recorded = repo.model_metrics(session=session, names=["m"], split="test")["m"]
    assert recorded["t2i_r5"] == pytest.approx(out["metrics"]["t2i_r5"])
    assert recorded["index_i2t_r1"] == pytest.approx(out["index"]["i2t_r1"])
    assert out["recorded"] == len(recorded) == 22


def test_an_explicit_split_is_evaluated(matching_trained):
    out = evaluate(matching_trained, EvaluationRequest(model="m", split="train"))
    assert (out["split"], out["images"], out["captions"]) == ("train", 48, 240)
    assert out["metrics"]["t2i_r10"] > 10 / 48  # well above chance on the data it learnt
