"""Caption metrics: corpus BLEU-1..4 against every reference, and top-5 token accuracy.

BLEU is nltk's ``corpus_bleu`` (Papineni et al. 2002): modified n-gram precisions pooled
over the whole corpus, each hypothesis clipped against all references of its image, times
the brevity penalty ``exp(1 - r / c)`` when the hypotheses' total length c is below r, the
sum of each hypothesis's closest reference length. BLEU-n is the cumulative score: the
geometric mean of the 1..n-gram precisions with uniform weights. No smoothing: a corpus
without any matching n-gram of some order up to n scores 0 for BLEU-n.

Tokenisation, of hypotheses and references alike, is
:func:`embplat.models.text.tokens.tokenize`: lowercase word tokens (letters and digits,
inner hyphens and apostrophes kept), punctuation dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from embplat.errors import DataError
from embplat.models.text.tokens import tokenize

if TYPE_CHECKING:
    import torch

#: Cumulative uniform weights of BLEU-1..4.
BLEU_WEIGHTS = {f"bleu{n}": tuple([1.0 / n] * n) for n in range(1, 5)}
#: Below this a score is nltk's stand-in for a zero precision.
_ZERO = 1e-30


def corpus_bleu_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Corpus BLEU-1..4 of one hypothesis per image against all of that image's references.

    Args:
        hypotheses: N generated captions.
        references: N lists of reference captions (at least one each).

    Returns:
        ``{"bleu1": .., "bleu2": .., "bleu3": .., "bleu4": ..}``, each in [0, 1].

    Raises:
        DataError: the counts differ, or an image has no reference.
    """
    from nltk.translate.bleu_score import corpus_bleu

    if len(hypotheses) != len(references):
        raise DataError(
            f"BLEU needs one hypothesis per image: got {len(hypotheses)} hypotheses for "
            f"{len(references)} images' references"
        )
    if not hypotheses:
        raise DataError("BLEU needs at least one captioned image; the split is empty")
    empty = next((i for i, refs in enumerate(references) if not refs), None)
    if empty is not None:
        raise DataError(f"image {empty} has no reference caption to score its hypothesis against")
    refs = [[tokenize(r) for r in image_refs] for image_refs in references]
    hyps = [tokenize(h) for h in hypotheses]
    with warnings.catch_warnings():  # nltk warns when an n-gram order has no match (score 0)
        warnings.simplefilter("ignore")
        scores = corpus_bleu(refs, hyps, weights=list(BLEU_WEIGHTS.values()))
    # nltk stands the smallest float in for a zero precision (to take its log), which leaves
    # ~1e-77 rather than the 0 BLEU defines
    return {
        name: float(s) if s > _ZERO else 0.0 for name, s in zip(BLEU_WEIGHTS, scores, strict=True)
    }


def top5_accuracy(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of real target tokens among the 5 highest logits of their step.

    Args:
        scores: (B, T, V) logits; targets: (B, T) token ids; mask: (B, T) bool, True for
            real (unpadded) targets.

    Returns:
        The accuracy in [0, 1]; NaN when ``mask`` selects no token.
    """
    k = min(5, scores.shape[-1])
    top = scores.topk(k, dim=-1).indices  # (B, T, k)
    hit = (top == targets.unsqueeze(-1)).any(dim=-1)
    real = mask.bool()
    counted = int(real.sum())
    return float((hit & real).sum()) / counted if counted else float("nan")
