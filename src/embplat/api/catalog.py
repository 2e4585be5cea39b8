"""The catalog side of :class:`~embplat.api.Platform`: ingest, enrol, evaluate, and the
read-only views (classes, models, jobs, images)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embplat.api.inputs import ImageInput, check_class_name, save_uploads
from embplat.api.results import ClassInfo, ImageInfo, JobInfo, ModelInfo
from embplat.api.session import PlatformBase
from embplat.errors import NotFoundError


class CatalogMethods(PlatformBase):
    """What :class:`~embplat.api.Platform` does with the catalog (see its docstring)."""

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
            root = self.settings.serve.upload_dir or self.settings.home / "uploads"
            folder = save_uploads(root / check_class_name(name), images)
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


def _job(j: Any) -> JobInfo:
    return JobInfo(j.id, j.kind, j.state, j.total, j.done, j.failed, j.error)
