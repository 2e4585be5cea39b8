"""Use case behind ``platform evaluate --model <captioning model>``: BLEU-1..4 of the best
caption of every image of a split at each beam width, against all of the image's captions
from files, and the teacher-forced top-5 token accuracy on those captions.

BLEU is nltk's corpus BLEU over lowercase word tokens (``evaluation.bleu``), as the
show-attend-tell reference reports it. Each beam's scores are recorded in the catalog as
``bleu4@beam3`` and so on (``platform models compare``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import DataError
from embplat.models.recipes.caption.config import check_beam
from embplat.pipelines.captioning import Captioner, load_captioner
from embplat.pipelines.context import Context
from embplat.pipelines.train_captioner import Captioned, captioned_split

log = logging.getLogger(__name__)

#: images decoded and captioned per forward pass
CHUNK = 32


def evaluate_captioner(
    ctx: Context,
    model: str,
    split: str = "test",
    beams: Sequence[int] = (1, 3, 5),
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Score captioning ``model`` on the captioned images of ``split``.

    Returns:
        ``model``, ``split``, ``images``, ``references``, ``top5``, ``beams``: {width:
        {bleu1..bleu4, seconds}}, ``examples`` (the first images' best captions at the
        widest beam) and ``recorded`` (metric values written to the catalog).

    Raises:
        DataError: the split holds no captioned images. ConfigError: a bad beam width.
    """
    for beam in beams:
        check_beam(beam, "--beam")
    captioner = load_captioner(ctx, model)
    data = captioned_split(ctx, split)
    if not data.paths:
        raise DataError(f"no captioned images in the {split} split to evaluate {model} on")
    images = _decoded(ctx, captioner, data)
    out: dict[str, Any] = {
        "model": captioner.name,
        "split": split,
        "images": len(data.paths),
        "references": sum(len(c) for c in data.captions),
        "top5": round(_top5(captioner, images, data), 6),
        "beams": {},
    }
    generated: dict[int, list[str]] = {}
    for beam in sorted(set(beams)):
        start = time.perf_counter()
        generated[beam] = _best_captions(captioner, images, beam, progress)
        out["beams"][beam] = {
            **_bleu(generated[beam], data.captions),
            "seconds": round(time.perf_counter() - start, 2),
        }
    widest = max(generated)
    out["examples"] = [
        {"path": p, "caption": c, "references": refs[:2]}
        for p, c, refs in zip(
            data.paths[:5], generated[widest][:5], data.captions[:5], strict=False
        )
    ]
    out["recorded"] = _record(ctx, captioner.name, split, out)
    return out


def _decoded(ctx: Context, captioner: Captioner, data: Captioned) -> list[Any]:
    from pathlib import Path

    from embplat.ingest.images import load_rgb

    return [load_rgb(Path(p), max_pixels=ctx.ingest.max_pixels) for p in data.paths]


def _best_captions(
    captioner: Captioner,
    images: list[Any],
    beam: int,
    progress: Callable[[int], None] | None,
) -> list[str]:
    out: list[str] = []
    for s in range(0, len(images), CHUNK):
        found = captioner.caption(images[s : s + CHUNK], beam=beam, n=1)
        out.extend(f[0][0] if f else "" for f in found)
        if progress:
            progress(len(found))
    return out


def _bleu(hypotheses: list[str], references: list[list[str]]) -> dict[str, float]:
    from embplat.evaluation.bleu import corpus_bleu_scores

    return {k: round(v, 6) for k, v in corpus_bleu_scores(hypotheses, references).items()}


def _top5(captioner: Captioner, images: list[Any], data: Captioned) -> float:
    """Teacher-forced top-5 accuracy over every reference caption of the split."""
    import torch

    from embplat.evaluation.bleu import top5_accuracy
    from embplat.models.recipes.caption import pad_captions

    hits, total = 0.0, 0
    model = captioner.model
    with torch.no_grad():
        for s in range(0, len(images), CHUNK):
            feats = model.encoder(captioner.tensors(images[s : s + CHUNK]))
            refs = data.captions[s : s + CHUNK]
            rows = [r for r, caps in enumerate(refs) for _ in caps]
            texts = [c for caps in refs for c in caps]
            tokens, lengths = pad_captions(captioner.vocab, texts, max_len=captioner.max_len)
            out = model.decoder(feats[rows], tokens.to(feats.device), lengths.to(feats.device))
            n = int(out.mask.sum())
            hits += top5_accuracy(out.scores, tokens[:, 1:].to(feats.device), out.mask) * n
            total += n
    return float(hits / total) if total else float(np.nan)


def _record(ctx: Context, model: str, split: str, out: dict[str, Any]) -> int:
    values: dict[str, float] = {"top5": out["top5"]}
    for beam, scores in out["beams"].items():
        values.update({f"{k}@beam{beam}": v for k, v in scores.items() if k.startswith("bleu")})
    with transaction(ctx.sessions) as session:
        model_id = repo.get_model(session=session, name=model).id
        return repo.record_metrics(session=session, model_id=model_id, split=split, values=values)
