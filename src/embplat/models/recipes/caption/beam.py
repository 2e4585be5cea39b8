"""Decoding captions: batched beam search, and the greedy loop it reduces to at width 1.

Beam search keeps, per image, the ``beam`` most probable partial captions (by summed token
log-probability). Each step extends them all and keeps the best ``width`` extensions; an
extension ending in ``<end>`` is finished and narrows that image's beam by one (as the
reference implementation does), so an image ends with exactly ``beam`` finished hypotheses
(fewer only when fewer continuations exist; ``<pad>`` and ``<start>`` are never generated).
After ``max_len`` steps the unfinished ones
are kept as they are (``ended`` False). Width 1 is greedy decoding.

The finished hypotheses are ranked by a length-normalised score (Wu et al. 2016, GNMT's
``alpha``, on the plain length)::

    score = logprob / L ** length_norm

where L counts the generated tokens including ``<end>`` (the rows of ``alphas``). 0 ranks by
the raw log-probability, which favours short captions; 1 by the mean per-token
log-probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from embplat.errors import ConfigError
from embplat.models.recipes.caption.config import check_beam
from embplat.models.recipes.caption.model import AttentionDecoder
from embplat.models.recipes.caption.vocab import PAD_ID


@dataclass(frozen=True)
class Hypothesis:
    """One decoded caption.

    Attributes:
        tokens: generated word ids, without ``<start>``/``<end>``.
        logprob: sum of the token log-probabilities, ``<end>``'s included.
        score: what hypotheses are ranked by: ``logprob / L ** length_norm``.
        alphas: (L, P) float32 attention of each generated token (``<end>``'s step too).
        ended: whether it ended with ``<end>`` (False: cut at ``max_len``).
    """

    tokens: list[int]
    logprob: float
    score: float
    alphas: np.ndarray
    ended: bool = True


def _hypothesis(
    tokens: list[int], logprob: float, alphas: torch.Tensor, *, ended: bool, length_norm: float
) -> Hypothesis:
    steps = int(alphas.shape[0])
    return Hypothesis(
        tokens=tokens,
        logprob=logprob,
        score=logprob / steps**length_norm,
        alphas=alphas.float().cpu().numpy().astype(np.float32, copy=False),
        ended=ended,
    )


def _log_probs(logits: torch.Tensor, start: int) -> torch.Tensor:
    """(N, V) log-probabilities of the next token; ``<pad>`` and ``<start>`` are never
    generated (their probability is not renormalised away, so logprobs stay the model's)."""
    logp = torch.log_softmax(logits.float(), dim=1)
    logp[:, [PAD_ID, start]] = float("-inf")
    return logp


def _check(features: torch.Tensor, max_len: int, length_norm: float) -> None:
    if features.dim() != 3:
        raise ConfigError(f"features must be (B, P, C), got shape {tuple(features.shape)}")
    if max_len < 1:
        raise ConfigError(f"max_len must be at least 1, got {max_len}")
    if length_norm < 0:
        raise ConfigError(f"length_norm must be 0 or more, got {length_norm}")


def beam_search(
    decoder: AttentionDecoder,
    features: torch.Tensor,
    *,
    beam: int,
    max_len: int,
    end: int,
    start: int,
    length_norm: float = 0.7,
) -> list[list[Hypothesis]]:
    """Decode a batch of images by beam search (in eval mode, without gradients).

    Args:
        decoder: the trained decoder.
        features: (B, P, C) location features of B images.
        beam: width, 1..10 (1 = greedy decoding).
        max_len: the most tokens generated per caption.
        end, start: the ``<end>`` and ``<start>`` ids.
        length_norm: exponent of the length normalisation of the score (module docstring).

    Returns:
        Per image, its finished hypotheses, best score first.

    Raises:
        ConfigError: a width outside 1..10, ``max_len`` below 1, or malformed features.
    """
    check_beam(beam)
    _check(features, max_len, length_norm)
    was_training = decoder.training
    decoder.eval()
    try:
        with torch.inference_mode():
            return _BeamRun(decoder, features, beam, end, length_norm).run(start, max_len)
    finally:
        decoder.train(was_training)


class _BeamRun:
    """The state of one batched beam search: B images x k slots."""

    def __init__(
        self, decoder: AttentionDecoder, features: torch.Tensor, k: int, end: int, norm: float
    ):
        param = next(decoder.parameters())
        feats = features.to(param.device, param.dtype)
        self.decoder, self.k, self.end, self.norm = decoder, k, end, norm
        self.b = feats.shape[0]
        self.feats = decoder.locate(feats).repeat_interleave(k, dim=0)  # (B*k, P, C)
        self.keys = decoder.keys(self.feats)
        self.h, self.c = decoder.init_state(self.feats)
        # each slot's attention summed over its steps so far (what coverage attends with)
        self.coverage = torch.zeros(self.feats.shape[:2], device=param.device)
        self.cum = torch.full((self.b, k), float("-inf"), device=param.device)
        self.cum[:, 0] = 0.0
        self.tokens = torch.zeros((self.b, k, 0), dtype=torch.long, device=param.device)
        self.alphas = torch.zeros((self.b, k, 0, feats.shape[1]), device=param.device)
        self.width = [k] * self.b
        self.done: list[list[Hypothesis]] = [[] for _ in range(self.b)]

    def run(self, start: int, max_len: int) -> list[list[Hypothesis]]:
        words = torch.full((self.b * self.k,), start, dtype=torch.long, device=self.cum.device)
        for t in range(max_len):
            logits, alpha, self.h, self.c = self.decoder.step(
                self.feats, self.keys, words, self.h, self.c, self.coverage
            )
            logp = _log_probs(logits, start).view(self.b, self.k, -1)
            words = self._advance(
                logp, alpha.float().view(self.b, self.k, -1), last=t == max_len - 1
            )
            if not any(self.width):
                break
        return [sorted(hyps, key=lambda h: -h.score) for hyps in self.done]

    def _advance(self, logp: torch.Tensor, alpha: torch.Tensor, *, last: bool) -> torch.Tensor:
        """Extend every beam by one token; returns the (B*k,) tokens to feed next."""
        vocab = logp.shape[2]
        top_val, top_idx = (self.cum.unsqueeze(2) + logp).view(self.b, -1).topk(self.k, dim=1)
        vals, parents, words = (
            top_val.tolist(),
            (top_idx // vocab).tolist(),
            (top_idx % vocab).tolist(),
        )
        keep_parent = torch.zeros((self.b, self.k), dtype=torch.long)
        keep_word = torch.zeros((self.b, self.k), dtype=torch.long)
        keep_cum = torch.full((self.b, self.k), float("-inf"))
        for b in range(self.b):
            live = 0
            for r in range(self.width[b]):
                if vals[b][r] == float("-inf"):
                    break  # fewer continuations than the beam is wide
                p, w = parents[b][r], words[b][r]
                if w == self.end or last:
                    self._finish(b, p, w, vals[b][r], alpha[b, p], ended=w == self.end)
                else:
                    keep_parent[b, live], keep_word[b, live], keep_cum[b, live] = p, w, vals[b][r]
                    live += 1
            self.width[b] = live
        self._reorder(keep_parent.to(self.cum.device), keep_word.to(self.cum.device), alpha)
        self.cum = keep_cum.to(self.cum.device)
        return keep_word.view(-1).to(self.cum.device)

    def _finish(
        self, b: int, p: int, w: int, logprob: float, alpha: torch.Tensor, *, ended: bool
    ) -> None:
        tokens = self.tokens[b, p].tolist() + ([] if ended else [w])
        alphas = torch.cat([self.alphas[b, p], alpha.unsqueeze(0)])
        self.done[b].append(
            _hypothesis(tokens, logprob, alphas, ended=ended, length_norm=self.norm)
        )

    def _reorder(self, parent: torch.Tensor, word: torch.Tensor, alpha: torch.Tensor) -> None:
        """Slots take their parents' histories and LSTM states, plus the new token."""
        t = self.tokens.shape[2]
        self.tokens = torch.cat(
            [self.tokens.gather(1, parent.unsqueeze(2).expand(-1, -1, t)), word.unsqueeze(2)], 2
        )
        chosen = alpha.gather(1, parent.unsqueeze(2).expand(-1, -1, alpha.shape[2]))
        index = parent.view(self.b, self.k, 1, 1).expand(-1, -1, t, alpha.shape[2])
        self.alphas = torch.cat([self.alphas.gather(1, index), chosen.unsqueeze(2)], 2)
        rows = (parent + torch.arange(self.b, device=parent.device).unsqueeze(1) * self.k).view(-1)
        self.h, self.c = self.h[rows], self.c[rows]
        self.coverage = self.coverage[rows] + chosen.reshape(self.b * self.k, -1)


def greedy_decode(
    decoder: AttentionDecoder,
    features: torch.Tensor,
    *,
    max_len: int,
    end: int,
    start: int,
    length_norm: float = 0.7,
) -> list[Hypothesis]:
    """Decode each image by taking the most probable token at every step (a loop of its own,
    against which width-1 beam search is tested).

    Args:
        features: (B, P, C) location features.

    Returns:
        One hypothesis per image (scored as :func:`beam_search` scores).
    """
    _check(features, max_len, length_norm)
    was_training = decoder.training
    decoder.eval()
    try:
        with torch.inference_mode():
            return _greedy(decoder, features, max_len, end, start, length_norm)
    finally:
        decoder.train(was_training)


def _greedy(
    decoder: AttentionDecoder,
    features: torch.Tensor,
    max_len: int,
    end: int,
    start: int,
    norm: float,
) -> list[Hypothesis]:
    param = next(decoder.parameters())
    feats = decoder.locate(features.to(param.device, param.dtype))
    keys, (h, c) = decoder.keys(feats), decoder.init_state(feats)
    words = torch.full((feats.shape[0],), start, dtype=torch.long, device=param.device)
    total = torch.zeros(feats.shape[0], device=param.device)
    out: list[Hypothesis | None] = [None] * feats.shape[0]
    tokens: list[list[int]] = [[] for _ in out]
    alphas: list[list[torch.Tensor]] = [[] for _ in out]
    coverage = torch.zeros(feats.shape[:2], device=param.device)
    for t in range(max_len):
        logits, alpha, h, c = decoder.step(feats, keys, words, h, c, coverage)
        coverage = coverage + alpha.float()
        logp = _log_probs(logits, start)
        words = logp.argmax(dim=1)
        total = total + logp.gather(1, words.unsqueeze(1)).squeeze(1)
        for i, w in enumerate(words.tolist()):
            if out[i] is not None:
                continue
            alphas[i].append(alpha[i].float())
            if w != end:
                tokens[i].append(w)
            if w == end or t == max_len - 1:
                steps = torch.stack(alphas[i])
                out[i] = _hypothesis(
                    tokens[i], float(total[i]), steps, ended=w == end, length_norm=norm
                )
        if all(o is not None for o in out):
            break
    return [o for o in out if o is not None]
