"""Corpus BLEU against hand-computed n-gram precisions and brevity penalty; top-5 accuracy."""

import math

import pytest
import torch

from embplat.errors import DataError
from embplat.evaluation.bleu import corpus_bleu_scores, top5_accuracy


def test_bleu_matches_a_hand_computed_two_sentence_corpus():
    hypotheses = ["The cat sat on the mat.", "a dog runs"]
    references = [
        ["the cat is on the mat", "There is a cat on the mat!"],
        ["a dog runs fast"],
    ]
    # sentence 1 (6 words) against both references, counts clipped by the max in either:
    #   unigrams  the x2 (ref 1 has 2), cat, sat (none), on, mat -> 5 of 6
    #   bigrams   the cat, on the, the mat match; cat sat, sat on do not -> 3 of 5
    #   trigrams  only "on the mat" -> 1 of 4; 4-grams none -> 0 of 3
    # sentence 2 (3 words): 3 of 3, 2 of 2, 1 of 1, 0 of 0
    p1, p2, p3 = (5 + 3) / (6 + 3), (3 + 2) / (5 + 2), (1 + 1) / (4 + 1)
    # hypothesis length c = 9; closest reference lengths 6 (not 7) and 4: r = 10 > c
    bp = math.exp(1 - 10 / 9)
    scores = corpus_bleu_scores(hypotheses, references)
    assert scores["bleu1"] == pytest.approx(bp * p1)
    assert scores["bleu2"] == pytest.approx(bp * (p1 * p2) ** (1 / 2))
    assert scores["bleu3"] == pytest.approx(bp * (p1 * p2 * p3) ** (1 / 3))
    assert scores["bleu4"] == 0.0  # no matching 4-gram, and no smoothing


def test_bleu4_of_a_sentence_with_every_order_matched():
    # unigrams 5/6 (the clipped to 1), bigrams 3/5, trigrams 2/4, 4-grams 1/3; c = r = 6
    scores = corpus_bleu_scores(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert scores["bleu4"] == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** (1 / 4))
    assert scores["bleu1"] == pytest.approx(5 / 6)


def test_identical_captions_score_one_whatever_the_case_and_punctuation():
    refs = [["A man rides a red bike down the hill."], ["two dogs play in the snow", "x"]]
    hyps = ["a man rides a red bike down the hill", "Two dogs play in the snow!"]
    assert corpus_bleu_scores(hyps, refs) == {
        "bleu1": 1.0,
        "bleu2": 1.0,
        "bleu3": 1.0,
        "bleu4": 1.0,
    }


def test_bleu_refuses_mismatched_or_empty_references():
    with pytest.raises(DataError, match="one hypothesis per image"):
        corpus_bleu_scores(["a"], [["a"], ["b"]])
    with pytest.raises(DataError, match="image 1 has no reference"):
        corpus_bleu_scores(["a", "b"], [["a"], []])
    with pytest.raises(DataError, match="empty"):
        corpus_bleu_scores([], [])


def test_top5_accuracy_counts_real_tokens_within_the_five_highest_logits():
    scores = torch.zeros(1, 4, 8)
    scores[0, :, :] = torch.arange(8, dtype=torch.float32)  # ranks: 7 > 6 > ... > 0
    targets = torch.tensor([[7, 3, 2, 0]])  # ranks 1 and 5 are in, 6 and 8 are out
    mask = torch.tensor([[True, True, True, True]])
    assert top5_accuracy(scores, targets, mask) == 0.5
    mask = torch.tensor([[True, True, False, False]])  # padding is not counted
    assert top5_accuracy(scores, targets, mask) == 1.0
    assert math.isnan(top5_accuracy(scores, targets, torch.zeros(1, 4, dtype=torch.bool)))
    small = torch.randn(2, 3, 4)  # fewer than 5 words: every token is within the top 5
    assert (
        top5_accuracy(small, torch.randint(0, 4, (2, 3)), torch.ones(2, 3, dtype=torch.bool)) == 1.0
    )
