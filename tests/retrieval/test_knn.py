import numpy as np
import pytest

from embplat.retrieval.knn import knn_vote, knn_votes


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


def test_votes_shares_padding_and_ties():
    knn_labels = np.array([[0, 1, 1], [2, 0, 1], [-1, -1, -1], [1, -1, 0]])
    scores = np.array(
        [[0.9, 0.8, 0.7], [0.9, 0.8, 0.7], [0, 0, 0], [0.5, 0.0, 0.5]], dtype=np.float32
    )
    pred, share = knn_votes(knn_labels, scores, 3)
    # q1: three-way tie on count, similarity sums differ → nearest (2); q3: padding skipped,
    # a tie on count and on summed similarity → the class seen first (1)
    assert pred.tolist() == [1, 2, -1, 1]
    assert share.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0, 1 / 2])
    assert knn_votes(knn_labels, scores, 1)[0].tolist() == [0, 2, -1, 1]
    none = knn_votes(np.full((2, 3), -1), np.zeros((2, 3)), 3)
    assert none[0].tolist() == [-1, -1] and none[1].tolist() == [0.0, 0.0]


def _loop_vote(labels, scores, weighted):
    """The vote written as a plain loop over neighbours: weight, then summed similarity,
    then the rank of the class's nearest neighbour."""
    weight, simsum, first = {}, {}, {}
    for rank, (label, score) in enumerate(zip(labels, scores, strict=True)):
        weight[label] = weight.get(label, 0.0) + (max(score, 0.0) if weighted else 1.0)
        simsum[label] = simsum.get(label, 0.0) + score
        first.setdefault(label, rank)
    best = min(weight, key=lambda c: (-weight[c], -simsum[c], first[c]))
    total = sum(weight.values())
    return best, weight[best] / total if total > 0 else 1 / len(weight)


@pytest.mark.parametrize("weighted", [False, True])
def test_array_votes_agree_with_a_plain_loop_and_the_single_vote(weighted):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, (200, 7))
    scores = np.round(rng.uniform(-0.2, 1.0, (200, 7)), 1)  # rounded: many exact ties
    pred, share = knn_votes(labels, scores, 5, weighted=weighted)
    for q in range(len(labels)):
        want = _loop_vote(labels[q, :5].tolist(), scores[q, :5].tolist(), weighted)
        assert (pred[q], share[q]) == (want[0], pytest.approx(want[1]))
        vote = knn_vote([str(c) for c in labels[q, :5]], scores[q, :5].tolist(), weighted=weighted)
        assert (vote.label, vote.confidence) == (str(want[0]), pytest.approx(want[1]))
