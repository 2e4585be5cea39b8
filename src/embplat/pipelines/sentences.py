"""Sentence indexes: every caption of the catalog (from files or generated) embedded by a
pretrained text encoder, so ``platform search --text`` finds images by what their captions
say, on any collection, with no model trained on it.

A sentence index is registered as a model of kind ``sentences`` named
``sentences-<text encoder>`` (``sentences-minilm`` by default: the bundled all-MiniLM-L6-v2),
whose collection ``embplat_sentences-<encoder>`` holds one caption point per caption
(``kind=caption``; payload: image id, class, text, ordinal, source, split, path). A search
embeds the sentence with the same encoder, ranks caption points and answers each image once,
by its best caption. Caption points leave and move with their image
(``pipelines.caption_points``); ``platform doctor`` deletes any left behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import DataError, IndexEmptyError, NotFoundError
from embplat.pipelines.context import Context
from embplat.pipelines.query import Neighbour
from embplat.retrieval import Filter, VectorIndex, collection_name, point_id

if TYPE_CHECKING:
    from embplat.models.text.registry import TextEncoder

log = logging.getLogger(__name__)

KIND = "sentences"
DEFAULT_TEXT_ENCODER = "minilm"
#: caption hits fetched per image asked for (several captions of one image share a rank)
_OVERFETCH = 5


def index_name(text_encoder: str = DEFAULT_TEXT_ENCODER) -> str:
    """The model name of the sentence index of ``text_encoder``."""
    return f"{KIND}-{text_encoder}"


def text_encoder(name: str, ctx: Context) -> TextEncoder:
    """The pretrained text encoder ``name`` on this context's device.

    Raises:
        ConfigError: unknown encoder; DataError: one that must be trained first (``gru``).
    """
    from embplat.models.encoders import resolve_device
    from embplat.models.text.registry import TextOptions, get_text_encoder
    from embplat.models.wordvectors import active_source

    if name == "gru":
        raise DataError(
            "--text-encoder gru is trained inside a matching model; choose a pretrained one "
            "(minilm, glove)"
        )
    device = str(resolve_device(ctx.spaces.device))
    options = TextOptions(vectors=active_source(ctx.home), vocabulary=(), device=device)
    return get_text_encoder(name, options)


def caption_point_id(caption_id: int, index: str) -> str:
    """Deterministic id of caption ``caption_id`` in sentence index ``index``."""
    return point_id(f"caption:{caption_id}", index, kind="caption")


def index_captions(
    ctx: Context,
    *,
    image_ids: Sequence[int] | None = None,
    text_encoder_name: str = DEFAULT_TEXT_ENCODER,
    encoder: TextEncoder | None = None,
    chunk: int = 256,
) -> int:
    """Embed the captions of ``image_ids`` (None: of every image) into the sentence index of
    ``text_encoder_name``, registering it on first use. Idempotent: a caption is written
    under the same id every time.

    Returns:
        How many caption points were written.
    """
    encoder = encoder or text_encoder(text_encoder_name, ctx)
    name = index_name(text_encoder_name)
    index = _open(ctx, name, text_encoder_name, encoder.dim)
    with ctx.sessions() as session:
        ids = repo.captioned_image_ids(session=session, image_ids=image_ids)
        images = {i.id: i for i in repo.get_images(session=session, ids=list(ids))}
        captions = repo.get_captions(session=session, image_ids=list(images))
        rows = [(images[i], c) for i in images for c in captions.get(i, [])]
        payloads = [_payload(img, c, name) for img, c in rows]
    written = 0
    for s in range(0, len(rows), chunk):
        part = rows[s : s + chunk]
        vectors = np.asarray(encoder.encode_texts([c.text for _, c in part]), np.float32)
        pids = [caption_point_id(c.id, name) for _, c in part]
        index.upsert(pids, vectors, payloads[s : s + chunk])
        written += len(part)
    index.flush()
    log.info("%s: %d caption points written", name, written)
    return written


def has_sentence_index(ctx: Context) -> str | None:
    """The newest registered sentence index's name, if any."""
    with ctx.sessions() as session:
        found = repo.list_models(session=session, kinds=[KIND])
    return found[-1].name if found else None


def is_sentence_index(ctx: Context, model: str | None) -> bool:
    """Whether ``model`` names a sentence index."""
    if model is None:
        return False
    with ctx.sessions() as session:
        return repo.get_model(session=session, name=model).kind == KIND


def search_sentences(
    ctx: Context, text: str, *, model: str | None = None, k: int = 10, flt: Filter | None = None
) -> tuple[list[Neighbour], str]:
    """The ``k`` images whose captions are nearest to the sentence ``text``, best first,
    each image once (by its best caption), from sentence index ``model`` (default: the newest).

    Returns:
        The hits and the index searched.

    Raises:
        DataError: empty text or k < 1. NotFoundError: no sentence index yet.
        IndexEmptyError: the index holds no captions.
    """
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    if not text.strip():
        raise DataError("--text is empty: give a sentence, e.g. 'a red circle left of a square'")
    name = model or has_sentence_index(ctx)
    if name is None:
        raise NotFoundError(
            "no sentence index yet: caption images (`platform ingest DIR --caption-with MODEL`) "
            "or index existing captions (`platform captions index`)"
        )
    with ctx.sessions() as session:
        record = repo.get_model(session=session, name=name)
        encoder_name, dim = record.encoder, record.dim
    index = ctx.spaces.index(collection_name(name), dim)
    flt = {"kind": "caption", **(flt or {})}
    if index.count({"kind": "caption"}) == 0:
        raise IndexEmptyError(f"{index.name} holds no captions: run `platform captions index`")
    query = np.asarray(text_encoder(encoder_name, ctx).encode_texts([text]), np.float32)
    hits = index.search(query, k * _OVERFETCH, flt)[0]
    return _best_per_image(ctx, hits, k), name


def _best_per_image(ctx: Context, hits: Sequence[Any], k: int) -> list[Neighbour]:
    """Each image once, by its best caption, skipping images no longer cataloged."""
    ids = {h.payload.get("image_id") for h in hits}
    with ctx.sessions() as session:
        alive = {i.id for i in repo.get_images(session=session, ids=[i for i in ids if i])}
    out: list[Neighbour] = []
    seen: set[int] = set()
    for hit in hits:
        image_id = hit.payload.get("image_id")
        if image_id in seen or image_id not in alive:
            continue
        seen.add(image_id)
        out.append(Neighbour.from_hit(hit))
        if len(out) == k:
            break
    return out


def _open(ctx: Context, name: str, encoder: str, dim: int) -> VectorIndex:
    with transaction(ctx.sessions) as session:
        repo.ensure_model(
            session=session,
            name=name,
            kind=KIND,
            encoder=encoder,
            weights="pretrained",
            dim=dim,
            image_size=0,
            config={"text_encoder": encoder, "collection": collection_name(name)},
        )
    ctx.spaces.collection_id(name)
    return ctx.spaces.index(collection_name(name), dim)


def _payload(image: Any, caption: Any, name: str) -> dict[str, Any]:
    return {
        "kind": "caption",
        "image_id": image.id,
        "class": image.label.name,
        "caption_id": caption.id,
        "text": caption.text,
        "ordinal": caption.ordinal,
        "source": caption.source,
        "split": image.split,
        "path": image.path,
        "sha256": image.sha256,
        "model": name,
    }
