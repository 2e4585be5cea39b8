"""The ``caption`` recipe: show-attend-tell image captioning (Xu et al. 2015; the reference
system trains it on Flickr8k with a ResNet-101 encoder, soft attention, an LSTM decoder and
beam search).

- :mod:`.config`: :class:`CaptionConfig` (phases, sizes, regularisation, vocabulary, beam).
- :mod:`.vocab`: :class:`CaptionVocab`, the words the decoder writes.
- :mod:`.model`: :class:`SpatialEncoder` over a backbone's spatial trunk (or its
  hypercolumns), :class:`AttentionDecoder`, :class:`CaptionModel`, :func:`caption_loss`.
- :mod:`.build`: :func:`build_caption_model` (embeddings from word vectors).
- :mod:`.beam`: batched :func:`beam_search` and :func:`greedy_decode`.
- :mod:`.batches`: (image, caption) pairs, sortish batches, padding.
- :mod:`.fit`: :class:`CaptionTrainer`, the frozen and fine-tune phases.
- :mod:`.spec`: the registry entry (``data = "captioning"``).
- :mod:`.saved`: checkpoints, a saved model rebuilt, :func:`caption_batch`.

The names below load on first use (PEP 562), so ``.config`` can be checked without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from embplat.models.recipes.caption.spec import CaptionRecipe

if TYPE_CHECKING:
    from embplat.models.recipes.caption.batches import pad_captions
    from embplat.models.recipes.caption.beam import Hypothesis, beam_search, greedy_decode
    from embplat.models.recipes.caption.build import build_caption_model, caption_vectors
    from embplat.models.recipes.caption.config import MAX_BEAM, CaptionConfig, check_beam
    from embplat.models.recipes.caption.fit import (
        CaptionSet,
        CaptionTrainer,
        EpochReport,
    )
    from embplat.models.recipes.caption.model import (
        AttentionDecoder,
        CaptionModel,
        DecoderOutput,
        SpatialEncoder,
        caption_loss,
    )
    from embplat.models.recipes.caption.saved import (
        caption_batch,
        caption_features,
        checkpoint_meta,
        is_caption,
        load_caption_model,
    )
    from embplat.models.recipes.caption.vocab import CaptionVocab

_HOMES = {
    "pad_captions": "batches",
    "Hypothesis": "beam",
    "beam_search": "beam",
    "greedy_decode": "beam",
    "MAX_BEAM": "config",
    "CaptionConfig": "config",
    "check_beam": "config",
    "CaptionSet": "fit",
    "CaptionTrainer": "fit",
    "EpochReport": "fit",
    "AttentionDecoder": "model",
    "CaptionModel": "model",
    "DecoderOutput": "model",
    "SpatialEncoder": "model",
    "build_caption_model": "build",
    "caption_loss": "model",
    "caption_vectors": "build",
    "caption_batch": "saved",
    "caption_features": "saved",
    "checkpoint_meta": "saved",
    "is_caption": "saved",
    "load_caption_model": "saved",
    "CaptionVocab": "vocab",
}
__all__ = [
    "MAX_BEAM",
    "AttentionDecoder",
    "CaptionConfig",
    "CaptionModel",
    "CaptionRecipe",
    "CaptionSet",
    "CaptionTrainer",
    "CaptionVocab",
    "DecoderOutput",
    "EpochReport",
    "Hypothesis",
    "SpatialEncoder",
    "beam_search",
    "build_caption_model",
    "caption_batch",
    "caption_features",
    "caption_loss",
    "caption_vectors",
    "check_beam",
    "checkpoint_meta",
    "greedy_decode",
    "is_caption",
    "load_caption_model",
    "pad_captions",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
