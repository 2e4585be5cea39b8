"""The torch-free half of the text encoders: the ``TextEncoder`` protocol, build options and
the registry (``register_text_encoder`` / ``get_text_encoder`` / ``list_text_encoders``).

A text encoder module registers a factory ``factory(options) -> TextEncoder`` under a name::

    @register_text_encoder("mine")
    def mine(options: TextOptions) -> TextEncoder: ...

The built-in modules (:data:`BUILTIN_TEXT_ENCODERS`) are imported only when their encoder is
built, so listing names (``platform train matching --help``, config validation) loads no
model and no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from embplat.errors import ConfigError
from embplat.models.wordvectors import VectorSource

if TYPE_CHECKING:
    import numpy as np
    import torch

#: Built-in encoder name → the module that registers it.
BUILTIN_TEXT_ENCODERS: dict[str, str] = {
    "glove": "embplat.models.text.glove",
    "gru": "embplat.models.text.gru",
    "minilm": "embplat.models.text.minilm",
}


@runtime_checkable
class TextEncoder(Protocol):
    """Maps texts to L2-normalised float32 vectors, in batches.

    Attributes:
        name: the registered name (``minilm``, ``glove``, ``gru``).
        key: identity of the vectors it gives (name + weights/vectors), for model lineage.
        dim: the vector dimension D.
        trainable: whether its parameters can be trained (then it is a
            :class:`TrainableTextEncoder` too).
    """

    name: str
    key: str
    dim: int
    trainable: bool

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``len(texts)`` texts → (B, D) float32, rows of unit length.

        Raises:
            DataError: a text is empty, or none of its words is known to the encoder; the
                message names the text and its position.
        """


@runtime_checkable
class TrainableTextEncoder(TextEncoder, Protocol):
    """A text encoder trained end-to-end with a model (an ``nn.Module``): texts become token
    ids once (:meth:`token_ids`), and the module maps id batches to features with gradients."""

    def token_ids(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, L) int64 token ids, 0-padded; unknown words map to ``<unk>``, never an error."""

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids → (B, D) features (not normalised), differentiable."""


@dataclass(frozen=True)
class TextOptions:
    """How to build a text encoder; each encoder reads the fields it needs.

    Attributes:
        vectors: word vectors of ``glove`` and of ``gru``'s initial embeddings.
        vocabulary: ``gru``'s words in id order (``Vocabulary.words``), e.g. built from the
            training captions or read back from a checkpoint.
        device: ``cpu``, ``cuda[:N]`` or ``auto``.
        batch_size: texts per forward pass in ``encode_texts``.
        max_tokens: words kept per text (``glove``, ``gru``); longer texts are truncated.
        hidden: ``gru``'s hidden size (its output dimension).
    """

    vectors: VectorSource = field(default_factory=VectorSource)
    vocabulary: tuple[str, ...] = ()
    device: str = "cpu"
    batch_size: int = 256
    max_tokens: int = 32
    hidden: int = 512

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_tokens", "hidden"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"text encoder {name} must be at least 1, got {getattr(self, name)}"
                )


TextFactory = Callable[[TextOptions], TextEncoder]
_REGISTRY: dict[str, TextFactory] = {}


def register_text_encoder(name: str) -> Callable[[TextFactory], TextFactory]:
    """Decorator registering ``factory(options) -> TextEncoder`` under ``name``."""

    def deco(factory: TextFactory) -> TextFactory:
        _REGISTRY[name] = factory
        return factory

    return deco


def list_text_encoders() -> list[str]:
    """Names of the built-in text encoders and of any registered since (imports nothing)."""
    return sorted(set(BUILTIN_TEXT_ENCODERS) | set(_REGISTRY))


def check_text_encoder(name: str) -> None:
    """Refuse an unknown name without building anything.

    Raises:
        ConfigError: ``name`` is not a text encoder; the message lists the known ones.
    """
    if name not in BUILTIN_TEXT_ENCODERS and name not in _REGISTRY:
        known = ", ".join(list_text_encoders())
        raise ConfigError(f"unknown text encoder {name!r}; choose one of: {known}")


def get_text_encoder(name: str, options: TextOptions | None = None) -> TextEncoder:
    """Build the text encoder ``name`` (importing its module on first use).

    Raises:
        ConfigError: an unknown name, or options the encoder cannot be built with (e.g.
            ``gru`` without a vocabulary, ``minilm`` with its package missing).
    """
    check_text_encoder(name)
    if name not in _REGISTRY:
        importlib.import_module(BUILTIN_TEXT_ENCODERS[name])
    return _REGISTRY[name](options or TextOptions())
