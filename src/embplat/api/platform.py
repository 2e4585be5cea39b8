"""``Platform``: the public Python facade over the use cases the CLI calls.

One object holds one ``Context`` (catalog, spaces, job runner) built from the same
``Settings`` as the CLI (``EMBPLAT_*``, ``.env``, then the arguments given here), so a
notebook, a script and ``platform serve`` share the CLI's behaviour and data home. The
encoder is built once, on first use (or :meth:`Platform.warm`), and kept.

Every call takes one re-entrant lock: the encoder and the opened indexes are used by one
thread at a time, so a server may call one ``Platform`` from many threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embplat.api.inputs import (
    ImageInput,
    check_class_name,
    image_bytes,
    is_path,
    query_files,
    source_of,
    suffix_of,
)
from embplat.api.results import (
    Classification,
    ClassInfo,
    Failure,
    ImageInfo,
    JobInfo,
    Match,
    ModelInfo,
    SearchResult,
)
from embplat.config import Settings, load_settings
from embplat.errors import DataError, NotFoundError

if TYPE_CHECKING:
    from embplat.pipelines.context import Context
    from embplat.pipelines.query import Neighbour, Prediction

#: Keyword arguments of ``Platform()`` and the setting each one sets (the CLI's root flags).
SETTING_OF = {
    "catalog_url": "catalog.url",
    "backend": "index.backend",
    "encoder": "embed.encoder",
    "weights": "embed.weights",
    "image_size": "embed.image_size",
    "device": "embed.device",
}


class Platform:
    """Ingest, classify, search, enrol and evaluate from Python.

    Args:
        home: the data home (default: ``EMBPLAT_HOME`` or ``./.embplat``).
        settings: complete settings; otherwise read like the CLI's (environment, ``.env``).
        **options: the CLI's root flags: ``catalog_url``, ``backend``, ``encoder``,
            ``weights``, ``image_size``, ``device``.

    Raises:
        ConfigError: a setting is invalid or an option unknown.
    """

    def __init__(
        self, home: str | Path | None = None, *, settings: Settings | None = None, **options: Any
    ) -> None:
        from embplat.errors import ConfigError

        unknown = sorted(set(options) - set(SETTING_OF))
        if unknown:
            raise ConfigError(f"unknown Platform options {unknown}; known: {sorted(SETTING_OF)}")
        overrides = {SETTING_OF[key]: value for key, value in options.items()}
        self.settings = settings or load_settings(
            home=Path(home) if home is not None else None, **overrides
        )
        self._ctx: Context | None = None
        self._lock = threading.RLock()

    @property
    def context(self) -> Context:
        """The use-case context (opens the catalog on first use)."""
        with self._lock:
            if self._ctx is None:
                from embplat.workers.context import build_context

                self._ctx = build_context(self.settings)
            return self._ctx

    def warm(self) -> float:
        """Build the active encoder and open its index now; returns the seconds it took."""
        start = time.perf_counter()
        with self._lock:
            self.context.spaces.space()
        return time.perf_counter() - start

    def close(self) -> None:
        """Flush and close the opened indexes; the object can be used again afterwards."""
        with self._lock:
            if self._ctx is not None:
                context, self._ctx = self._ctx, None
                context.close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- queries -------------------------------------------------------------------------

    def classify(self, image: ImageInput, *, k: int = 10, **options: Any) -> Classification:
        """The class of one image by kNN vote of its ``k`` nearest enrolled images.

        Args:
            image: a path, bytes, a binary file object, a PIL image or an (H, W[, 3]) uint8
                array.
            **options: as :meth:`classify_many`.

        Raises:
            DataError: the image cannot be read (the message says why); a bad option.
            IndexEmptyError: nothing is enrolled yet.
            NotFoundError: no such model.
        """
        answer = self.classify_many([image], k=k, **options)[0]
        if isinstance(answer, Failure):
            raise DataError(f"{answer.source}: {answer.error}")
        return answer

    def classify_many(
        self,
        images: Sequence[ImageInput],
        *,
        k: int = 10,
        weighted: bool = False,
        model: str | None = None,
        reject_below: float | None = None,
        reject_on: str = "share",
        names: Sequence[str] | None = None,
    ) -> list[Classification | Failure]:
        """Classify several images in batches; one answer per image, in order, a
        :class:`Failure` for each image that cannot be read.

        Args:
            weighted: weight the votes by similarity.
            model: a trained model (``platform models list``); None: the active encoder.
            reject_below, reject_on: answer ``unknown`` when the vote share (``share``) or
                the nearest cosine (``score``) is below this threshold.
            names: how the answers name their images (default: the path, a file object's
                name, else ``<image N>``).
        """
        from embplat.pipelines.query import QueryFailure, classify

        sources = list(names or [source_of(image, n) for n, image in enumerate(images)])
        if len(sources) != len(images):
            raise DataError(f"{len(images)} images but {len(sources)} names")
        failures: list[QueryFailure] = []
        with self._lock, query_files(images) as paths:
            answers = classify(
                self.context,
                paths,
                k=k,
                weighted=weighted,
                model=model,
                reject_below=reject_below,
                reject_on=reject_on,
                failures=failures,
            )
        by_path: dict[str, Classification | Failure] = {a.path: _classification(a) for a in answers}
        by_path |= {f.path: Failure(f.path, f.error) for f in failures}
        return [
            replace(by_path[str(path)], source=source)
            for path, source in zip(paths, sources, strict=True)
        ]

    def search(
        self,
        *,
        image: ImageInput | None = None,
        text: str | None = None,
        vector: Sequence[float] | Any | None = None,
        point_id: str | None = None,
        k: int = 5,
        label: str | None = None,
        split: str | None = None,
        kind: str = "image",
        model: str | None = None,
    ) -> SearchResult:
        """The ``k`` points nearest to one query: an image, a text (a DeViSE model's word
        space), a vector of the space's dimension, or a stored point's id.

        Args:
            label, split: only images of this class / split.
            kind: ``image``, or ``label`` (a DeViSE model's label points; vector and
                point-id queries only).
            model: a trained model's space; text queries default to the newest DeViSE model.

        Raises:
            DataError: not exactly one query given; a bad filter, k or vector.
            NotFoundError: no such model or point.
            IndexEmptyError: nothing matches the filters.
        """
        from embplat.api import searching

        given = [
            n
            for n, v in (
                ("image", image),
                ("text", text),
                ("vector", vector),
                ("point_id", point_id),
            )
            if v is not None
        ]
        if len(given) != 1:
            raise DataError(
                "give exactly one query of image=, text=, vector=, point_id= "
                f"(got {given or 'none'})"
            )
        flt = searching.user_filter(
            label=label, split=split, kind=kind, by_points=not (image or text)
        )
        with self._lock:
            ctx = self.context
            if text is not None:
                return searching.by_text(ctx, text, k=k, flt=flt, model=model)
            if image is not None:
                with query_files([image]) as paths:
                    result = searching.by_image(ctx, paths[0], k=k, flt=flt, model=model)
                result.query = f"image {source_of(image, 0)}"
                return result
            return searching.by_vector(ctx, vector, point_id, k=k, flt=flt, model=model)

    # --- catalog -------------------------------------------------------------------------

    def ingest(self, root: str | Path, **options: Any) -> dict[str, Any]:
        """Ingest a folder tree (AwA2 layout or class-per-folder) as ``platform ingest``
        does: catalog, embed (here or on the workers), follow moves and deletions.

        Args:
            **options: ``embed``, ``models``, ``prune`` of
                :func:`embplat.pipelines.ingest.ingest_tree`.

        Returns:
            The run's summary (``--json`` of ``platform ingest``), with its ``job_id``.
        """
        from embplat.pipelines.ingest import ingest_tree

        with self._lock:
            return ingest_tree(self.context, Path(root), **options).as_dict()

    def add_class(
        self, name: str, images: str | Path | Sequence[ImageInput], **options: Any
    ) -> dict[str, Any]:
        """Enrol class ``name`` from a folder, or from images (saved under the uploads
        folder, ``<home>/uploads/<name>/``, named by content); classifiable at once.

        Args:
            **options: ``models``, ``prune`` of :func:`embplat.pipelines.ingest.enrol_class`.

        Returns:
            The enrolment's summary, with its ``job_id``.

        Raises:
            DataError: no image, an unreadable one, or (for images) an unsafe class name.
        """
        from embplat.pipelines.ingest import enrol_class

        if isinstance(images, str | Path):
            folder = Path(images)
        else:
            folder = self._save_uploads(check_class_name(name), images)
        with self._lock:
            return enrol_class(self.context, name, folder, **options).as_dict()

    def evaluate(self, split: str = "valid", *, k: int = 10, **options: Any) -> dict[str, Any]:
        """kNN evaluation of one split (``platform evaluate``): accuracy, precision@1, ...

        Args:
            **options: other fields of :class:`embplat.pipelines.evaluate.EvaluationRequest`
                (``model``, ``weighted``, ``reference``, ``full``...).
        """
        from embplat.pipelines.evaluate import EvaluationRequest, evaluate

        with self._lock:
            return evaluate(self.context, EvaluationRequest(split=split, k=k, **options))

    def classes(self) -> list[ClassInfo]:
        """Every class with its role and image count per split."""
        from embplat.catalog import repo

        with self.context.sessions() as session:
            rows = repo.class_counts(session=session)
        return [ClassInfo(c.name, c.role, dict(n)) for c, n in rows]

    def models(self) -> list[ModelInfo]:
        """Registered models: the pretrained encoders used so far and the trained models."""
        from embplat.catalog import repo

        with self.context.sessions() as session:
            rows = repo.list_models(session=session)
            return [ModelInfo(m.name, m.kind, m.encoder, m.dim, m.image_size) for m in rows]

    def jobs(self, limit: int = 20) -> list[JobInfo]:
        """The most recent jobs, newest first."""
        from embplat.catalog import repo

        with self.context.sessions() as session:
            return [_job(j) for j in repo.list_jobs(session=session, limit=limit)]

    def job(self, job_id: int) -> JobInfo:
        """One job's state and progress. Raises NotFoundError for an unknown id."""
        from embplat.catalog import repo

        with self.context.sessions() as session:
            return _job(repo.get_job(session=session, job_id=job_id))

    def image(self, image_id: int) -> ImageInfo:
        """A cataloged image by id. Raises NotFoundError for an unknown id."""
        from embplat.catalog import repo

        with self.context.sessions() as session:
            found = repo.get_images(session=session, ids=[image_id])
            if not found:
                raise NotFoundError(f"no cataloged image with id {image_id}")
            img = found[0]
            return ImageInfo(img.id, img.path, img.label.name, img.split)

    def ready(self) -> dict[str, Any]:
        """Whether the catalog answers and the active index is open: their counts.

        Raises:
            ServiceUnavailableError, EmbplatError: one of them does not answer.
        """
        from sqlalchemy import text

        with self.context.sessions() as session:
            session.execute(text("select 1"))
        with self._lock:
            space = self.context.spaces.space()
            return {"catalog": "ok", "index": space.index.name, "points": space.index.count(None)}

    # --- helpers -------------------------------------------------------------------------

    def _save_uploads(self, name: str, images: Sequence[ImageInput]) -> Path:
        import hashlib

        if not images:
            raise DataError(f"no image given for class {name!r}")
        folder = (self.settings.serve.upload_dir or self.settings.home / "uploads") / name
        folder.mkdir(parents=True, exist_ok=True)
        for n, image in enumerate(images):
            data = Path(image).read_bytes() if is_path(image) else image_bytes(image)  # type: ignore[arg-type]
            suffix = suffix_of(data, source_of(image, n))
            (folder / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}").write_bytes(data)
        return folder


def _match(n: Neighbour) -> Match:
    return Match(label=n.label, score=n.score, image_id=n.image_id, path=n.path)


def _classification(p: Prediction) -> Classification:
    return Classification(
        source=p.path,
        label=p.label,
        confidence=p.confidence,
        k=p.k,
        runner_up=p.runner_up,
        runner_up_share=p.runner_up_share,
        tallies=dict(p.tallies),
        neighbours=[_match(n) for n in p.neighbours],
        notes=list(p.notes),
        best_label=p.best_label,
    )


def _job(j: Any) -> JobInfo:
    return JobInfo(j.id, j.kind, j.state, j.total, j.done, j.failed, j.error)
