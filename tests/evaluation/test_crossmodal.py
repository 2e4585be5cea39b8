"""Cross-modal R@K and ranks, checked by hand, against scikit-learn, and against hit lists."""

import numpy as np
import pytest
from sklearn.metrics import coverage_error, top_k_accuracy_score

from embplat.evaluation.crossmodal import (
    crossmodal_metrics,
    image_to_text_ranks,
    rank_summary,
    ranks_from_hits,
    text_to_image_ranks,
)


def karpathy(n_images=20, per_image=5, seed=0):
    """Random (I, C) scores with 5 captions per image."""
    rng = np.random.default_rng(seed)
    owners = np.repeat(np.arange(n_images), per_image)
    return rng.standard_normal((n_images, len(owners))).astype(np.float32), owners


def test_ranks_by_hand():
    # 3 images, 4 captions: captions 0,1 → image 0, caption 2 → image 1, caption 3 → image 2
    owners = np.array([0, 0, 1, 2])
    scores = np.array(
        [
            [0.9, 0.1, 0.8, 0.0],
            [0.5, 0.7, 0.2, 0.3],
            [0.1, 0.2, 0.3, 0.9],
        ]
    )
    assert text_to_image_ranks(scores, owners).tolist() == [1, 3, 3, 1]
    # image 0: best right caption 0 (0.9) first; image 1: caption 2 (0.2) below 0,1,3;
    # image 2: caption 3 first
    assert image_to_text_ranks(scores, owners).tolist() == [1, 4, 1]
    metrics = crossmodal_metrics(scores, owners, ks=(1, 5))
    assert metrics["t2i_r1"] == 0.5 and metrics["t2i_r5"] == 1.0
    assert metrics["i2t_r1"] == pytest.approx(2 / 3) and metrics["i2t_median_rank"] == 1
    assert metrics["i2t_mean_rank"] == 2.0 and metrics["t2i_mean_rank"] == 2.0
    assert metrics["rsum"] == pytest.approx(0.5 + 1.0 + 2 / 3 + 1.0)


def test_ties_rank_the_right_item_last():
    owners = np.repeat(np.arange(4), 5)
    flat = np.zeros((4, 20))
    assert (text_to_image_ranks(flat, owners) == 4).all()
    assert (image_to_text_ranks(flat, owners) == 16).all()  # behind the 15 wrong captions
    assert crossmodal_metrics(flat, owners)["t2i_r1"] == 0.0


def test_text_to_image_agrees_with_scikit_learn():
    scores, owners = karpathy()
    ranks = text_to_image_ranks(scores, owners, chunk=7)
    truth = np.eye(scores.shape[0])[owners]
    assert ranks.mean() == pytest.approx(coverage_error(truth, scores.T))
    for k in (1, 5, 10):
        expected = top_k_accuracy_score(owners, scores.T, k=k, labels=np.arange(20))
        assert (ranks <= k).mean() == pytest.approx(expected)


def test_image_to_text_is_the_best_placed_right_caption():
    scores, owners = karpathy(seed=1)
    ranks = image_to_text_ranks(scores, owners, chunk=3)
    for i in range(scores.shape[0]):
        order = np.argsort(-scores[i], kind="stable")
        assert ranks[i] == 1 + np.flatnonzero(owners[order] == i)[0]


def test_an_image_without_captions_ranks_last():
    owners = np.array([0, 0])
    ranks = image_to_text_ranks(np.ones((2, 2)), owners)
    assert ranks.tolist() == [1, 3]


def test_hit_lists_give_the_same_ranks_as_scores():
    scores, owners = karpathy(seed=2)
    hits = [list(np.argsort(-scores[:, c], kind="stable")) for c in range(scores.shape[1])]
    relevant = [{int(o)} for o in owners]
    from_hits = ranks_from_hits(hits, relevant, n_candidates=20)
    assert (from_hits == text_to_image_ranks(scores, owners)).all()
    short = ranks_from_hits([h[:3] for h in hits], relevant, n_candidates=20)
    assert ((short == from_hits) | ((from_hits > 3) & (short == 20))).all()


def test_summary_keys_and_empty_input():
    summary = rank_summary(np.array([1, 2, 6, 30]), prefix="t2i_")
    assert summary == {
        "t2i_r1": 0.25,
        "t2i_r5": 0.5,
        "t2i_r10": 0.75,
        "t2i_median_rank": 4.0,
        "t2i_mean_rank": 9.75,
    }
    assert all(np.isnan(v) for v in rank_summary(np.array([])).values())


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="one image id per column"):
        crossmodal_metrics(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        crossmodal_metrics(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError, match="2 hit lists for 1 queries"):
        ranks_from_hits([[1], [2]], [{1}], n_candidates=2)
