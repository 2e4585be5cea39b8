"""The explicit objects every use case receives: catalog sessions, index opener, encoder.

Built from ``Settings`` by ``embplat.workers.context.build_context`` (the CLI and the Celery
workers share it), so nothing below reads configuration itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Collection
from embplat.errors import ConfigError
from embplat.retrieval import VectorIndex, collection_name

if TYPE_CHECKING:
    from embplat.ingest.embedding import EmbedReport
    from embplat.models.registry import ImageEncoder


@dataclass(frozen=True)
class EmbedOptions:
    """How images are batched through the encoder."""

    batch_size: int = 32
    num_workers: int = 1
    commit_every: int = 256


@dataclass(frozen=True)
class IngestOptions:
    """How ingest validates and splits images."""

    valid_fraction: float = 0.1
    max_pixels: int = 40_000_000
    batch_size: int = 256


class Dispatcher(Protocol):
    """Hands job batches to workers (server mode)."""

    def check(self) -> None:
        """Fail fast (ServiceUnavailableError naming the broker) before any work is written."""

    def send(self, job_id: int, seqs: list[int]) -> None:
        """Queue one task per batch of the job."""

    def send_train(self, recipe: str, config: dict[str, Any]) -> str:
        """Queue a training run on a worker; returns the task id."""


@dataclass(frozen=True)
class Space:
    """An opened embedding space: the encoder, its index, and their catalog rows."""

    encoder: ImageEncoder
    index: VectorIndex
    model_id: int
    collection_id: int

    @property
    def key(self) -> str:
        """The model key written into every payload."""
        return self.encoder.key


@dataclass
class Context:
    """Everything a use case needs, passed explicitly (dependency injection)."""

    sessions: sessionmaker[Session]
    open_index: Callable[[str, int], VectorIndex]
    make_encoder: Callable[[], ImageEncoder]
    backend: str
    #: The active encoder's model key when known without building it (a built-in encoder,
    #: ``embplat.models.registry.builtin_key``); None: only building it tells.
    encoder_key: str | None = None
    embed: EmbedOptions = field(default_factory=EmbedOptions)
    ingest: IngestOptions = field(default_factory=IngestOptions)
    #: Sends an embedding job's batches to workers (server mode); None runs them in-process.
    dispatch: Dispatcher | None = None
    #: Data home (checkpoints, plots, active word vectors); device trained models run on.
    home: Path = Path(".embplat")
    device: str = "auto"
    #: Folder of the file-based indexes (nmslib, exact), as ``open_index`` was given it.
    index_root: Path = Path(".embplat/index")
    _space: Space | None = field(default=None, repr=False)
    _trained: dict[str, Space] = field(default_factory=dict, repr=False)
    _rows: tuple[ImageEncoder, int, int] | None = field(default=None, repr=False)
    _indexes: dict[str, VectorIndex] = field(default_factory=dict, repr=False)

    def registered(self) -> tuple[ImageEncoder, int, int]:
        """The active encoder with its model and collection ids, without opening the index."""
        if self._rows is None:
            encoder = self.make_encoder()
            with transaction(self.sessions) as session:
                model = repo.ensure_model(
                    session=session,
                    name=encoder.key,
                    kind="encoder",
                    encoder=encoder.name,
                    weights=encoder.weights,
                    dim=encoder.dim,
                    image_size=encoder.image_size,
                    config=_encoder_config(encoder),
                )
                coll = repo.ensure_collection(
                    session=session,
                    name=collection_name(encoder.key),
                    model_id=model.id,
                    backend=self.backend,
                    dim=encoder.dim,
                )
            self._rows = (encoder, model.id, coll.id)
        return self._rows

    def collection_id(self, model: str | None = None) -> int:
        """The catalog id of a space's collection without loading its encoder or opening its
        index (a server-mode CLI must not hold a worker's index): the active encoder's, or a
        trained model's (created if new).

        Raises:
            NotFoundError: no such model.
            ConfigError: ``model`` is a pretrained encoder.
        """
        if model is None:
            return self.registered()[2]
        with transaction(self.sessions) as session:
            record = repo.get_model(session=session, name=model)
            if record.kind == "encoder":
                raise ConfigError(
                    f"model {model!r} is a pretrained encoder, not a trained model; "
                    "choose one from `platform models list`"
                )
            return repo.ensure_collection(
                session=session,
                name=collection_name(model),
                model_id=record.id,
                backend=self.backend,
                dim=record.dim,
            ).id

    def index(self, name: str, dim: int) -> VectorIndex:
        """The index ``name`` without its encoder, opened once per context and shared with
        :meth:`space`: a second handle on a file-based index (or a local Qdrant folder) would
        hold a stale copy whose flush undoes the first one's writes."""
        if name not in self._indexes:
            self._indexes[name] = self.open_index(name, dim)
        return self._indexes[name]

    def active_index(self) -> tuple[str, VectorIndex, int] | None:
        """The active encoder's (model key, index, collection id) read from the catalog,
        without building the encoder (``platform status`` must not load torch); None when
        that needs the encoder: its key is not known in advance or its collection is not
        registered yet (then use :meth:`space`, which registers it)."""
        if self._space is not None:
            return self._space.key, self._space.index, self._space.collection_id
        if self.encoder_key is None:
            return None
        name = collection_name(self.encoder_key)
        with self.sessions() as session:
            coll = session.scalar(select(Collection).where(Collection.name == name))
            if coll is None:
                return None
            coll_id, dim = coll.id, coll.dim
        return self.encoder_key, self.index(name, dim), coll_id

    def space(self, model: str | None = None) -> Space:
        """The active encoder and its index, registered in the catalog on first use.

        With ``model``: that trained model (``platform models list``) and its own collection.
        """
        if model is not None:
            if model not in self._trained:
                self._trained[model] = _trained_space(self, model)
            return self._trained[model]
        if self._space is None:
            encoder, model_id, collection_id = self.registered()
            index = self.index(collection_name(encoder.key), encoder.dim)
            self._space = Space(encoder, index, model_id, collection_id)
        return self._space

    def run_embed_batch(
        self, job_id: int, seq: int, progress: Callable[[int], None] | None = None
    ) -> dict[str, Any]:
        """Embed one batch of a job into its index (in-process, or inside a worker): the
        active encoder's, or the trained model named by the job's ``model`` parameter."""
        from embplat.ingest.batches import IMAGES_ALIAS, run_batch

        with self.sessions() as session:
            model = (repo.get_job(session=session, job_id=job_id).params or {}).get("model")
        space = self.space(model)
        return run_batch(
            alias=None if model else IMAGES_ALIAS,
            sessions=self.sessions,
            job_id=job_id,
            seq=seq,
            encoder=space.encoder,
            index=space.index,
            collection_id=space.collection_id,
            batch_size=self.embed.batch_size,
            num_workers=self.embed.num_workers,
            max_pixels=self.ingest.max_pixels,
            progress=progress,
        )

    def embed_into(
        self,
        space: Space,
        image_ids: Sequence[int],
        progress: Callable[[int], None] | None = None,
    ) -> EmbedReport:
        """Embed the given cataloged images (those the space lacks) into ``space`` here, in
        this process, with this context's batching and limits."""
        from embplat.ingest.embedding import embed_images

        return embed_images(
            image_ids,
            sessions=self.sessions,
            encoder=space.encoder,
            index=space.index,
            collection_id=space.collection_id,
            batch_size=self.embed.batch_size,
            num_workers=self.embed.num_workers,
            commit_every=self.embed.commit_every,
            max_pixels=self.ingest.max_pixels,
            progress=progress,
        )

    def close(self) -> None:
        """Flush and close the indexes that were opened."""
        for index in self._indexes.values():
            index.flush()
            index.close()
        self._space = None
        self._trained.clear()
        self._indexes.clear()


def _trained_space(ctx: Context, name: str) -> Space:
    """Open a trained model's encoder (from its checkpoint) and its collection."""
    from embplat.models.checkpoints import load_trained_encoder

    with transaction(ctx.sessions) as session:
        record = repo.get_model(session=session, name=name)
        checkpoint = (record.config or {}).get("checkpoint")
        if not checkpoint:
            raise ConfigError(
                f"model {name!r} is a pretrained encoder, not a trained model; "
                "choose one from `platform models list`"
            )
        encoder = load_trained_encoder(ctx.home / checkpoint, name=name, device=ctx.device)
        coll = repo.ensure_collection(
            session=session,
            name=collection_name(name),
            model_id=record.id,
            backend=ctx.backend,
            dim=encoder.dim,
        )
        model_id, coll_id = record.id, coll.id
    return Space(encoder, ctx.index(collection_name(name), encoder.dim), model_id, coll_id)


def _encoder_config(encoder: ImageEncoder) -> dict[str, Any]:
    return {"encoder": encoder.name, "weights": encoder.weights, "image_size": encoder.image_size}
