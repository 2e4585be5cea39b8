"""Use cases of a CLIP encoder's own space (``--space clip``), training-free: zero-shot
classification by prompts and text → image search.

The active encoder must be an open_clip one (``openclip-<arch>``): its index already holds
CLIP image vectors (``platform ingest``), and its text tower embeds into the same space. A
label becomes the mean of its prompts' embeddings ("a photo of a {label}." and the other
``PROMPT_TEMPLATES``), so any class competes, with images or without; a search text is
embedded as it is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embplat.catalog import repo
from embplat.errors import DataError, IndexEmptyError
from embplat.pipelines.context import Context, Space
from embplat.pipelines.query import Neighbour
from embplat.pipelines.query_images import (
    QueryFailure,
    embed_answerable,
    require_files,
    require_some_file,
)
from embplat.pipelines.semantic_scores import LabelPrediction, top_labels
from embplat.retrieval import Filter

if TYPE_CHECKING:
    from embplat.models.prompt_vectors import PromptVectors
    from embplat.models.registry import ImageEncoder
    from embplat.models.text.openclip import OpenClipTextEncoder

log = logging.getLogger(__name__)

SPACE = "clip"


def clip_space(ctx: Context) -> tuple[Space, OpenClipTextEncoder]:
    """The active encoder's space and its text tower.

    Raises:
        ConfigError: the active encoder is no open_clip encoder.
    """
    from embplat.models.text.openclip import text_tower

    space = ctx.spaces.space()
    return space, text_tower(space.encoder)


def _prompts(ctx: Context, encoder: ImageEncoder) -> PromptVectors:
    """Prompt vectors of ``encoder``'s text tower, built once per context (so each label's
    prompts are embedded once while it lives)."""
    from embplat.models.prompt_vectors import PromptVectors
    from embplat.models.text.openclip import text_tower
    from embplat.models.wordvectors import VectorSource

    key = ("clip-prompts", encoder.key)
    if key not in ctx.spaces.loaded:
        tower = text_tower(encoder)
        source = VectorSource(kind="openclip", origin=f"{tower.key}-prompts")
        ctx.spaces.loaded[key] = PromptVectors(source, tower)
    return ctx.spaces.loaded[key]  # type: ignore[no-any-return]


def clip_labels(
    ctx: Context,
    paths: Sequence[Path],
    *,
    k: int = 5,
    candidates: Sequence[str] | None = None,
    roles: Sequence[str] | None = None,
    failures: list[QueryFailure] | None = None,
) -> list[LabelPrediction]:
    """Zero-shot classification by prompts: each image's CLIP vector against the prompt
    vectors of ``candidates`` (default: every catalog class, of ``roles`` when given);
    same shape as ``label_images``.

    Raises:
        DataError: a path is missing or unreadable (without ``failures``); k < 1; no
            candidate (no class in the catalog) or one without words.
        ConfigError: the active encoder is no open_clip encoder.
    """
    (require_files if failures is None else require_some_file)(paths)
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    space, _ = clip_space(ctx)
    with ctx.sessions() as session:
        known = repo.class_roles(session=session)
    names = list(candidates) if candidates is not None else sorted(known)
    if roles:
        names = [n for n in names if known.get(n, "unseen") in roles]
    if not names:
        raise DataError(
            "no candidate label: add classes (`platform ingest`, `platform classes add NAME "
            "--zero-shot`) or pass candidates"
        )
    labels = _prompts(ctx, space.encoder).phrases(names)
    kept, queries = embed_answerable(ctx, space, paths, failures)
    payloads: list[dict[str, Any]] = [{"class": n, "role": known.get(n, "unseen")} for n in names]
    return [
        top_labels(str(path), row, payloads, k, space.key, 0.0, "none", [])
        for path, row in zip(kept, queries @ labels.T, strict=True)
    ]


def clip_search(
    ctx: Context, text: str, *, k: int = 10, flt: Filter | None = None
) -> tuple[list[Neighbour], str]:
    """The active CLIP space's images nearest to the text tower's embedding of ``text``.

    Returns:
        The hits, best first, and the space searched (the encoder's key).

    Raises:
        DataError: an empty text; k < 1.
        ConfigError: the active encoder is no open_clip encoder.
        IndexEmptyError: the space holds no images (nothing ingested with this encoder).
    """
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    if not text.strip():
        raise DataError("--text is empty: give a sentence, e.g. 'a photo of a zebra'")
    space, tower = clip_space(ctx)
    query = tower.encode_texts([text])
    hits = space.index.search(query, k, {"kind": "image", **(flt or {})})[0]
    # counted only when nothing matched (a count per search is slow on Qdrant); a filter
    # matching nothing is no error
    if not hits and space.index.count({"kind": "image"}) == 0:
        raise IndexEmptyError(
            f"{space.index.name} holds no images: run `platform ingest` with this encoder"
        )
    return [Neighbour.from_hit(h) for h in hits], space.key
