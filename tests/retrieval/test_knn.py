import pytest

from embplat.retrieval.knn import knn_vote


def test_majority_wins_and_confidence_is_vote_share():
    vote = knn_vote(["a", "b", "a", "c", "a"], [0.9, 0.8, 0.7, 0.6, 0.5])
    assert vote.label == "a"
    assert vote.confidence == pytest.approx(3 / 5)
    assert vote.runner_up in {"b", "c"}
    assert vote.runner_up_share == pytest.approx(1 / 5)


def test_tie_broken_by_summed_similarity():
    # a and b have two votes each; b's neighbours are closer in total
    vote = knn_vote(["a", "b", "b", "a"], [0.95, 0.9, 0.9, 0.1])
    assert vote.label == "b"
    assert vote.runner_up == "a"


def test_exact_tie_broken_by_first_rank_and_is_deterministic():
    labels, scores = ["x", "y"], [0.5, 0.5]
    assert knn_vote(labels, scores).label == "x"
    assert knn_vote(list(reversed(labels)), scores).label == "y"


def test_weighted_vote_lets_one_close_neighbour_beat_two_far_ones():
    labels, scores = ["near", "far", "far"], [0.99, 0.3, 0.3]
    assert knn_vote(labels, scores).label == "far"
    weighted = knn_vote(labels, scores, weighted=True)
    assert weighted.label == "near"
    assert weighted.confidence == pytest.approx(0.99 / 1.59)


def test_negative_scores_do_not_subtract_weight():
    vote = knn_vote(["a", "b"], [0.2, -0.5], weighted=True)
    assert vote.label == "a"
    assert vote.confidence == pytest.approx(1.0)


def test_rejects_empty_and_mismatched_input():
    with pytest.raises(ValueError, match="without neighbours"):
        knn_vote([], [])
    with pytest.raises(ValueError, match="2 labels but 1 scores"):
        knn_vote(["a", "b"], [0.1])
