"""The caption decoder's vocabulary: the words it can write, and captions as id sequences.

Torch-free. Words are :func:`embplat.models.text.tokens.tokenize`'s tokens (lowercase words,
punctuation dropped), so a generated caption reads like the training captions tokenised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from embplat.errors import ConfigError
from embplat.models.text.tokens import tokenize

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
#: The special tokens, at ids 0..3 of every caption vocabulary.
SPECIALS = (PAD, START, END, UNK)
PAD_ID, START_ID, END_ID, UNK_ID = range(4)


@dataclass(frozen=True)
class CaptionVocab:
    """Words in id order: ``<pad>`` = 0, ``<start>`` = 1, ``<end>`` = 2, ``<unk>`` = 3, then the
    training captions' words, most frequent first (ties alphabetical, so ids are
    deterministic).

    Attributes:
        words: every token, in id order.
        min_count: the count a word needed in the training captions to be kept.
    """

    words: tuple[str, ...]
    min_count: int = 1
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.words[:4]) != SPECIALS:
            raise ConfigError(
                f"a caption vocabulary starts with {', '.join(SPECIALS)}; got {self.words[:4]}"
            )
        object.__setattr__(self, "_ids", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def build(cls, texts: Sequence[str], *, min_count: int) -> CaptionVocab:
        """The words of ``texts`` seen at least ``min_count`` times.

        Raises:
            ConfigError: ``min_count`` below 1.
        """
        if min_count < 1:
            raise ConfigError(f"min_word_count must be at least 1, got {min_count}")
        counts = Counter(tok for text in texts for tok in tokenize(text))
        kept = [w for w, n in counts.items() if n >= min_count and w not in SPECIALS]
        kept.sort(key=lambda w: (-counts[w], w))
        return cls((*SPECIALS, *kept), min_count=min_count)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def pad(self) -> int:
        """Id of ``<pad>`` (0)."""
        return PAD_ID

    @property
    def start(self) -> int:
        """Id of ``<start>`` (1)."""
        return START_ID

    @property
    def end(self) -> int:
        """Id of ``<end>`` (2)."""
        return END_ID

    @property
    def unk(self) -> int:
        """Id of ``<unk>`` (3)."""
        return UNK_ID

    def encode(self, text: str, *, max_len: int) -> list[int]:
        """``<start> w1 .. wn <end>`` ids of ``text``'s first ``max_len`` words (unknown words
        ``<unk>``); a text without words is ``<start> <end>``."""
        ids = [self._ids.get(tok, UNK_ID) for tok in tokenize(text, max_len)]
        return [START_ID, *ids, END_ID]

    def decode(self, ids: Sequence[int]) -> str:
        """Words joined by spaces, up to the first ``<end>``; ``<start>`` and ``<pad>`` are
        dropped, ``<unk>`` is written as such.

        Raises:
            ConfigError: an id outside the vocabulary.
        """
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.words):
                raise ConfigError(f"token id {i} outside this vocabulary of {len(self)} words")
            if i == END_ID:
                break
            if i not in (PAD_ID, START_ID):
                out.append(self.words[i])
        return " ".join(out)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored in checkpoints."""
        return {"words": list(self.words), "min_count": self.min_count}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaptionVocab:
        """Inverse of :meth:`as_dict`.

        Raises:
            ConfigError: not a caption vocabulary (missing words or special tokens).
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("words"), list):
            raise ConfigError("not a caption vocabulary: expected {'words': [...]}")
        return cls(tuple(str(w) for w in data["words"]), min_count=int(data.get("min_count", 1)))
