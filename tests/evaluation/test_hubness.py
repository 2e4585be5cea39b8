"""Hubness correction (CSLS, inverted softmax) on hand-made similarity matrices with a hub."""

import numpy as np
import pytest

from embplat.errors import ConfigError
from embplat.evaluation.hubness import correct_hubness, csls, inverted_softmax


def _hub_images():
    """5 images x 3 labels: images 0-3 each belong to one label (0,0,1,2); image 4 is a hub,
    fairly close to every label and the raw nearest image of all three."""
    return np.array(
        [
            [0.80, 0.10, 0.00],
            [0.70, 0.20, 0.10],
            [0.10, 0.78, 0.20],
            [0.00, 0.20, 0.75],
            [0.85, 0.82, 0.80],  # the hub
        ],
        dtype=np.float32,
    )


@pytest.mark.parametrize("method", ["csls", "isoftmax"])
def test_an_image_near_every_label_stops_topping_every_search(method):
    sims = _hub_images()
    assert (sims.argmax(axis=0) == 4).all()  # raw cosine: the hub tops all three labels
    fixed = correct_hubness(sims, method, rank_axis=0)
    assert fixed.argmax(axis=0).tolist() == [0, 2, 3]  # each label finds its own image
    assert (np.argsort(-fixed, axis=0)[0] != 4).all()


@pytest.mark.parametrize("method", ["csls", "isoftmax"])
def test_a_label_near_every_image_stops_winning_every_classification(method):
    # 4 images x 3 labels; label 0 (a hub, like "shirt" among garments) is the raw winner for
    # images of labels 1 and 2 too
    sims = np.array(
        [
            [0.90, 0.30, 0.20],  # label 0
            [0.80, 0.75, 0.10],  # label 1
            [0.80, 0.10, 0.74],  # label 2
            [0.85, 0.20, 0.30],  # label 0
        ],
        dtype=np.float32,
    )
    assert sims.argmax(axis=1).tolist() == [0, 0, 0, 0]
    fixed = correct_hubness(sims, method, rank_axis=1)
    assert fixed.argmax(axis=1).tolist() == [0, 1, 2, 0]


def test_csls_matches_its_definition_by_hand():
    sims = np.array([[0.9, 0.1, 0.4], [0.2, 0.8, 0.5]], dtype=np.float32)
    out = csls(sims, k=2)
    r_row = np.array([(0.9 + 0.4) / 2, (0.8 + 0.5) / 2])  # each row's 2 best columns
    r_col = np.array([(0.9 + 0.2) / 2, (0.8 + 0.1) / 2, (0.5 + 0.4) / 2])  # k capped at 2 rows
    np.testing.assert_allclose(out, 2 * sims - r_row[:, None] - r_col[None, :], atol=1e-6)
    assert csls(np.empty((0, 3), np.float32)).shape == (0, 3)


def test_inverted_softmax_normalises_over_the_axis_not_ranked():
    sims = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    beta = 10.0
    per_label = inverted_softmax(sims, rank_axis=1, beta=beta)  # labels spread over images
    np.testing.assert_allclose(np.exp(beta * per_label).sum(axis=0), [1, 1], atol=1e-5)
    per_image = inverted_softmax(sims, rank_axis=0, beta=beta)
    np.testing.assert_allclose(np.exp(beta * per_image).sum(axis=1), [1, 1, 1], atol=1e-5)
    e = np.exp(beta * sims[:, 0])
    assert per_label[0, 0] == pytest.approx(np.log(e[0] / e.sum()) / beta, abs=1e-6)


def test_none_leaves_scores_alone_and_unknown_methods_are_refused():
    sims = _hub_images()
    np.testing.assert_array_equal(correct_hubness(sims, "none", rank_axis=0), sims)
    with pytest.raises(ConfigError, match=r"unknown hubness correction 'zca'.*none, csls"):
        correct_hubness(sims, "zca", rank_axis=0)
    with pytest.raises(ConfigError, match="rank_axis"):
        correct_hubness(sims, "csls", rank_axis=2)
