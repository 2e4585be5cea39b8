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
        {bleu1..bleu4, seconds (its beam search; the encoder pass is shared)}},
        ``examples`` (the first images' best captions at the widest beam) and ``recorded``
        (metric values written to the catalog).

    Raises:
        DataError: the split holds no captioned images. ConfigError: a bad beam width.
    """
    for beam in beams:
        check_beam(beam, "--beam")
    captioner = load_captioner(ctx, model)
    data = captioned_split(ctx, split)
    if not data.paths:
        raise DataError(f"no captioned images in the {split} split to evaluate {model} on")
    top5, generated, seconds = _score(ctx, captioner, data, sorted(set(beams)), progress)
    out: dict[str, Any] = {
        "model": captioner.name,
        "split": split,
        "images": len(data.paths),
        "references": sum(len(c) for c in data.captions),
        "top5": round(top5, 6),
        "beams": {
            beam: {**_bleu(texts, data.captions), "seconds": round(seconds[beam], 2)}
            for beam, texts in generated.items()
        },
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


def _score(
    ctx: Context,
    captioner: Captioner,
    data: Captioned,
    beams: list[int],
    progress: Callable[[int], None] | None,
) -> tuple[float, dict[int, list[str]], dict[int, float]]:
    """One pass over the split, a chunk of images at a time, each encoded once: the
    teacher-forced top-5 accuracy, the best caption at every beam width, and each width's
    beam-search seconds."""
    from pathlib import Path

    from embplat.ingest.images import load_rgb

    hits = total = 0.0
    generated: dict[int, list[str]] = {beam: [] for beam in beams}
    seconds = dict.fromkeys(beams, 0.0)
    for s in range(0, len(data.paths), CHUNK):
        images = [
            load_rgb(Path(p), max_pixels=ctx.ingest.max_pixels) for p in data.paths[s : s + CHUNK]
        ]
        feats = captioner.features(images)
        right, counted = _top5_counts(captioner, feats, data.captions[s : s + CHUNK])
        hits, total = hits + right, total + counted
        for beam in beams:
            start = time.perf_counter()
            found = captioner.decode(feats, beam=beam, n=1)
            generated[beam] += [f[0][0] if f else "" for f in found]
            seconds[beam] += time.perf_counter() - start
        if progress:
            progress(len(images))
    return (hits / total if total else float(np.nan)), generated, seconds


def _bleu(hypotheses: list[str], references: list[list[str]]) -> dict[str, float]:
    from embplat.evaluation.bleu import corpus_bleu_scores

    return {k: round(v, 6) for k, v in corpus_bleu_scores(hypotheses, references).items()}


def _top5_counts(captioner: Captioner, feats: Any, refs: list[list[str]]) -> tuple[float, int]:
    """(reference tokens within the model's top 5, reference tokens) of the captions
    ``refs`` of the images whose (B, P, C) features are ``feats``, teacher-forced."""
    import torch

    from embplat.evaluation.bleu import top5_accuracy
    from embplat.models.recipes.caption import pad_captions

    rows = [r for r, caps in enumerate(refs) for _ in caps]
    texts = [c for caps in refs for c in caps]
    tokens, lengths = pad_captions(captioner.vocab, texts, max_len=captioner.max_len)
    tokens, lengths = tokens.to(feats.device), lengths.to(feats.device)
    with torch.inference_mode():
        out = captioner.model.decoder(feats[rows], tokens, lengths)
    n = int(out.mask.sum())
    return top5_accuracy(out.scores, tokens[:, 1:], out.mask) * n, n


def _record(ctx: Context, model: str, split: str, out: dict[str, Any]) -> int:
    values: dict[str, float] = {"top5": out["top5"]}
    for beam, scores in out["beams"].items():
        values.update({f"{k}@beam{beam}": v for k, v in scores.items() if k.startswith("bleu")})
    with transaction(ctx.sessions) as session:
        model_id = repo.get_model(session=session, name=model).id
        return repo.record_metrics(session=session, model_id=model_id, split=split, values=values)
