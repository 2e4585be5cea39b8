"""A captioner's checkpoints, the model rebuilt from one, and captioning a batch of images.

A caption checkpoint is a regular one (``models.checkpoints``, ``format`` 1, loadable with
``weights_only=True``) with the recipe ``caption`` and these fields::

    config: dict       the CaptionConfig
    encoder: dict      the image encoder it was built on: name, weights, image_size, key...
    caption: dict      vocab (words, min_count), encoder_dim, grid (h, w of the feature map
                       at training), embedding_init (vectors, known words)
    state_dict: dict   the CaptionModel's tensors: ``encoder.trunk.*`` (the whole image
                       encoder, fine-tuned or not) and ``decoder.*``

The model is rebuilt from the checkpoint alone: the encoder's architecture from its name
(random weights), then every tensor from the state dict, so no weights file is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from embplat.errors import ConfigError
from embplat.models.checkpoints import load_checkpoint
from embplat.models.encoders import get_backbone, resolve_device
from embplat.models.recipes.caption.beam import Hypothesis, beam_search
from embplat.models.recipes.caption.build import build_caption_model
from embplat.models.recipes.caption.config import CaptionConfig, check_beam
from embplat.models.recipes.caption.model import CaptionModel
from embplat.models.recipes.caption.vocab import CaptionVocab

RECIPE = "caption"


def is_caption(ckpt: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint is a captioner's."""
    return ckpt.get("recipe") == RECIPE and "caption" in ckpt


def checkpoint_meta(
    model: CaptionModel,
    vocab: CaptionVocab,
    cfg: CaptionConfig,
    *,
    name: str,
    encoder: dict[str, Any],
    epoch: int,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """The fields of epoch ``epoch``'s checkpoint besides the state dict (module docstring);
    ``models.checkpoints.save_checkpoint(path, model, meta)`` writes them.

    Args:
        encoder: the image encoder's meta; at least ``name`` (a registered encoder) and
            ``image_size``.

    Raises:
        ConfigError: ``encoder`` lacks its name or image size.
    """
    missing = [k for k in ("name", "image_size") if encoder.get(k) is None]
    if missing:
        raise ConfigError(f"caption checkpoint encoder meta lacks {missing}: got {encoder}")
    return {
        "model": name,
        "recipe": RECIPE,
        "config": cfg.as_dict(),
        "encoder": dict(encoder),
        "caption": {
            "vocab": vocab.as_dict(),
            "encoder_dim": model.decoder.encoder_dim,
            "grid": list(model.encoder.grid) if model.encoder.grid is not None else None,
            "embedding_init": dict(model.embedding_init),
        },
        "epoch": epoch,
        "metrics": metrics,
    }


def load_caption_model(
    path: str | Path, *, device: str
) -> tuple[CaptionModel, CaptionVocab, dict[str, Any]]:
    """A saved captioner, in eval mode on ``device``.

    Returns:
        The model, its vocabulary, and the checkpoint's other fields (config, encoder,
        caption, epoch, metrics...).

    Raises:
        ConfigError: the file is missing, unreadable, or not a captioner's checkpoint.
    """
    ckpt = load_checkpoint(path)
    if not is_caption(ckpt):
        raise ConfigError(
            f"{path} is a {ckpt.get('recipe')!r} checkpoint, not a caption model's; "
            "pick a model trained with `platform train caption`"
        )
    # captioners saved before these options existed were trained without them
    before = {"positions": False, "hypercolumns": False, "coverage": False}
    cfg = CaptionConfig.from_dict({**before, **ckpt["config"]})
    vocab = CaptionVocab.from_dict(ckpt["caption"]["vocab"])
    with torch.random.fork_rng(devices=[]):  # random inits, overwritten: keep the caller's RNG
        backbone = get_backbone(str(ckpt["encoder"]["name"]), "random")
        model = build_caption_model(cfg, backbone, vocab, vectors=None)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ConfigError(f"{path}: its tensors do not fit a caption model: {exc}") from exc
    model.embedding_init = dict(ckpt["caption"].get("embedding_init") or model.embedding_init)
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.to(resolve_device(device)).eval(), vocab, meta


def caption_batch(
    model: CaptionModel,
    vocab: CaptionVocab,
    images: torch.Tensor,
    *,
    beam: int,
    max_len: int,
    length_norm: float = 0.7,
) -> list[list[tuple[str, Hypothesis]]]:
    """Caption a batch of images by beam search.

    Args:
        images: (B, 3, S, S) images normalised for the model's encoder.
        beam: width 1..10; max_len: the most words per caption.
        length_norm: see ``caption.beam``.

    Returns:
        Per image, ``(text, hypothesis)`` pairs, best score first; ``model.grid()`` then gives
        the (h, w) that each hypothesis's ``alphas`` rows reshape to.

    Raises:
        ConfigError: a beam width outside 1..10 or ``max_len`` below 1.
    """
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        features = model.encoder(images.to(device))
    return caption_features(
        model, vocab, features, beam=beam, max_len=max_len, length_norm=length_norm
    )


def caption_features(
    model: CaptionModel,
    vocab: CaptionVocab,
    features: torch.Tensor,
    *,
    beam: int,
    max_len: int,
    length_norm: float = 0.7,
) -> list[list[tuple[str, Hypothesis]]]:
    """:func:`caption_batch` from the encoder's (B, P, C) features of the images (so one
    encoder pass can serve several beam widths).

    Raises:
        ConfigError: a beam width outside 1..10 or ``max_len`` below 1.
    """
    check_beam(beam)
    model.eval()
    found = beam_search(
        model.decoder,
        features,
        beam=beam,
        max_len=max_len,
        end=vocab.end,
        start=vocab.start,
        length_norm=length_norm,
    )
    return [[(vocab.decode(h.tokens), h) for h in hyps] for hyps in found]
