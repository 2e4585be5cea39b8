"""Embedding spaces: an encoder, its index, and their catalog rows, opened once per context.

:class:`Spaces` registers the active encoder in the catalog, opens each index once (a second
handle on a file-based index, or a local Qdrant folder, would hold a stale copy whose flush
undoes the first one's writes) and loads trained models from their checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Collection
from embplat.errors import ConfigError
from embplat.retrieval import VectorIndex, collection_name

if TYPE_CHECKING:
    from embplat.models.registry import ImageEncoder
    from embplat.models.softmax import SoftmaxEncoder


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


def _not_trained(model: str, kind: str = "encoder") -> ConfigError:
    if kind == "conse":  # registered by `--space conse`, so users meet it in `models list`
        return ConfigError(
            f"model {model!r} is a ConSE space (training-free, no checkpoint; its index follows "
            "the catalog at each search): classify or search with --space conse "
            "(space='conse' in the Python API and the service) instead"
        )
    return ConfigError(
        f"model {model!r} is a pretrained encoder, not a trained model; "
        "choose one from `platform models list`"
    )


@dataclass
class Spaces:
    """The active encoder's space and trained models' spaces, each opened once.

    Attributes:
        open_index: opens (creating) the index ``name`` of ``dim``-d vectors.
        make_encoder: builds the active encoder (cached by the caller).
        backend: the index backend's name, recorded with every collection.
        encoder_key: the active encoder's model key when known without building it
            (``embplat.models.registry.builtin_key``); None: only building it tells.
        home: data home, where trained models' checkpoints are found.
        device: the device trained models run on.
        index_root: folder of the file-based indexes, as ``open_index`` was given it.
    """

    sessions: sessionmaker[Session]
    open_index: Callable[[str, int], VectorIndex]
    make_encoder: Callable[[], ImageEncoder]
    backend: str
    encoder_key: str | None = None
    home: Path = Path(".embplat")
    device: str = "auto"
    index_root: Path = Path(".embplat/index")
    _space: Space | None = field(default=None, repr=False)
    _trained: dict[str, Space] = field(default_factory=dict, repr=False)
    _rows: tuple[ImageEncoder, int, int] | None = field(default=None, repr=False)
    _indexes: dict[str, VectorIndex] = field(default_factory=dict, repr=False)
    #: models built from checkpoints by the use cases (softmax heads, captioners...), by a
    #: key of their own, kept while it lives
    loaded: dict[Any, Any] = field(default_factory=dict, repr=False)

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
                coll = self._collection(session, encoder.key, model.id, encoder.dim)
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
                raise _not_trained(model)
            return self._collection(session, model, record.id, record.dim).id

    def index(self, name: str, dim: int) -> VectorIndex:
        """The index ``name`` without its encoder, opened once and shared with :meth:`space`."""
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
                self._trained[model] = self._trained_space(model)
            return self._trained[model]
        if self._space is None:
            encoder, model_id, collection_id = self.registered()
            index = self.index(collection_name(encoder.key), encoder.dim)
            self._space = Space(encoder, index, model_id, collection_id)
        return self._space

    def close(self) -> None:
        """Flush and close the indexes that were opened."""
        for index in self._indexes.values():
            index.flush()
            index.close()
        self._space = None
        self._trained.clear()
        self._indexes.clear()
        self.loaded.clear()

    def softmax(self, model: str) -> SoftmaxEncoder | None:
        """A trained model's ``backbone → softmax head`` (``models.softmax``), loaded once;
        None for a model without a softmax head over its classes (DeViSE, metric...) or
        without a checkpoint (a pretrained encoder).

        Raises:
            NotFoundError: no such model.
            ConfigError: its checkpoint is unreadable.
        """
        key = ("softmax", model)
        if key not in self.loaded:
            from embplat.models.softmax import load_softmax_encoder

            with self.sessions() as session:
                record = repo.get_model(session=session, name=model)
                checkpoint = (record.config or {}).get("checkpoint")
            self.loaded[key] = (
                load_softmax_encoder(self.home / checkpoint, name=model, device=self.device)
                if checkpoint
                else None
            )
        return self.loaded[key]  # type: ignore[no-any-return]

    def _collection(self, session: Session, key: str, model_id: int, dim: int) -> Collection:
        return repo.ensure_collection(
            session=session,
            name=collection_name(key),
            model_id=model_id,
            backend=self.backend,
            dim=dim,
        )

    def _trained_space(self, name: str) -> Space:
        """Open a trained model's encoder (from its checkpoint) and its collection."""
        from embplat.models.checkpoints import load_trained_encoder

        with transaction(self.sessions) as session:
            record = repo.get_model(session=session, name=name)
            checkpoint = (record.config or {}).get("checkpoint")
            if not checkpoint:
                raise _not_trained(name, str(record.kind))
            encoder = load_trained_encoder(self.home / checkpoint, name=name, device=self.device)
            coll = self._collection(session, name, record.id, encoder.dim)
            model_id, coll_id = record.id, coll.id
        index = self.index(collection_name(name), encoder.dim)
        return Space(encoder, index, model_id, coll_id)


def _encoder_config(encoder: ImageEncoder) -> dict[str, Any]:
    return {"encoder": encoder.name, "weights": encoder.weights, "image_size": encoder.image_size}
