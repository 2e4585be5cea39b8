"""Words of captions and queries: one tokenizer for every word-based text encoder, and the
vocabulary of a trainable one.

Tokens are lowercase runs of letters and digits, joined by inner hyphens or apostrophes
(``t-shirt``, ``man's``); punctuation and underscores separate them. Texts longer than
``max_tokens`` words are truncated (a 10,000-word caption costs what ``max_tokens`` words
cost); a text with no word at all is an error naming it.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np

from embplat.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")


def tokenize(text: str, max_tokens: int | None = None) -> list[str]:
    """Lowercase word tokens of ``text``, at most ``max_tokens`` of them (None: all)."""
    found = (m.group() for m in _WORD.finditer(text.lower()))
    return list(islice(found, max_tokens)) if max_tokens is not None else list(found)


def text_tokens(text: str, *, max_tokens: int, position: int | None = None) -> list[str]:
    """The first ``max_tokens`` tokens of a caption or query.

    Raises:
        DataError: ``text`` holds no word (empty, blank, punctuation only); the message names
            the text and its position in the batch.
    """
    tokens = tokenize(text, max_tokens)
    if not tokens:
        raise DataError(f"{describe(text, position)} has no words; give a non-empty sentence")
    return tokens


def describe(text: str, position: int | None = None) -> str:
    """``text 3 'a red cir…'``: how messages name a text (shortened to 60 characters)."""
    short = text if len(text) <= 60 else text[:59] + "…"
    where = "" if position is None else f" {position}"
    return f"text{where} {short!r}"


def require_texts(texts: Sequence[str]) -> None:
    """Refuse a blank text among ``texts`` (what sentence encoders cannot embed).

    Raises:
        DataError: naming the first blank text and its position.
    """
    for i, text in enumerate(texts):
        if not text.strip():
            raise DataError(f"{describe(text, i)} is empty; give a non-empty sentence")


def count_truncated(texts: Sequence[str], max_tokens: int) -> int:
    """How many of ``texts`` have more than ``max_tokens`` words (logged by encoders)."""
    return sum(len(tokenize(t, max_tokens + 1)) > max_tokens for t in texts)


@dataclass(frozen=True)
class Vocabulary:
    """Words of a trainable text encoder, in id order: ``words[0]`` is ``<pad>``,
    ``words[1]`` is ``<unk>``. Frozen and JSON-ready (``list(words)``), so a checkpoint can
    carry it."""

    words: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.words[:2] != (PAD, UNK):
            raise ConfigError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {self.words[:2]}")
        object.__setattr__(self, "_ids", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """Words seen at least ``min_count`` times in ``texts``, most frequent first (ties in
        alphabetical order, so the ids are deterministic), at most ``max_size`` of them."""
        counts = Counter(tok for text in texts for tok in tokenize(text))
        ranked = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls((PAD, UNK, *ranked[:max_size]))

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        """Token ids; words outside the vocabulary are ``<unk>`` (1)."""
        pos: dict[str, int] = self._ids  # type: ignore[attr-defined]
        return [pos.get(t, 1) for t in tokens]

    def encode(self, texts: Sequence[str], *, max_tokens: int, strict: bool = False) -> np.ndarray:
        """(B, L) int64 ids of ``texts`` (L: the longest, at most ``max_tokens``), 0-padded.

        Args:
            strict: refuse a text none of whose words is in the vocabulary (a query in a
                language the model never saw); otherwise it is all ``<unk>``.

        Raises:
            DataError: a text has no words, or (``strict``) no known word; the message names
                the text and its position.
        """
        rows = [
            self.ids(text_tokens(t, max_tokens=max_tokens, position=i)) for i, t in enumerate(texts)
        ]
        if strict:
            for i, row in enumerate(rows):
                if all(x == 1 for x in row):
                    raise DataError(
                        f"{describe(texts[i], i)}: none of its words is among the "
                        f"{len(self) - 2} words the model learnt from its training captions; "
                        "rephrase it in the captions' language"
                    )
        out = np.zeros((len(rows), max((len(r) for r in rows), default=1)), dtype=np.int64)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out
