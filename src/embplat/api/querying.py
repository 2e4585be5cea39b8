"""Classify adapters of the Python API: the use cases' answers as the API's results, one per
query image, in order, a :class:`Failure` in place of each image that cannot be read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from embplat.api.inputs import query_files, query_images
from embplat.api.results import Captions, CaptionText, Classification, Failure, Match, ZeroShot
from embplat.pipelines.context import Context

if TYPE_CHECKING:
    from embplat.pipelines.captioning import Candidate
    from embplat.pipelines.classify import Prediction
    from embplat.pipelines.query_images import QueryFailure
    from embplat.pipelines.semantic import LabelScore

T = TypeVar("T", Classification, ZeroShot, Captions)


def classify(
    ctx: Context, images: Sequence[Any], sources: Sequence[str], **options: Any
) -> list[Classification | Failure]:
    """kNN votes (or a trained classifier's softmax answers) for ``images`` (paths, or
    in-memory images read as encoded bytes).

    Args:
        sources: how each answer names its image.
        **options: of :func:`embplat.pipelines.classify.classify` (``k``, ``weighted``,
            ``knn``...).
    """
    from embplat.pipelines.classify import classify as classify_images
    from embplat.pipelines.query_images import query_label

    queries = query_images(images)
    failures: list[QueryFailure] = []
    answers = classify_images(ctx, queries, failures=failures, **options)
    labels = [query_label(q, n) for n, q in enumerate(queries)]
    return _in_order(labels, sources, [_classification(a) for a in answers], failures)


def zero_shot(
    ctx: Context,
    images: Sequence[Any],
    sources: Sequence[str],
    *,
    k: int,
    model: str | None,
    roles: Sequence[str] | None,
    gamma: float | None = None,
    hubness: str = "none",
    space: str = "semantic",
    top: int = 10,
) -> list[ZeroShot | Failure]:
    """The nearest label vectors of ``images`` in a DeViSE model's space (the newest unless
    ``model``; its stored calibration unless ``gamma``), only labels of ``roles`` when given;
    with ``space="conse"`` the ConSE vectors of the frozen encoder's ImageNet head (``top``
    classes) instead, no training needed; with ``space="clip"`` the labels' prompt vectors
    by the active open_clip encoder's text tower."""
    from embplat.pipelines.conse import conse_labels
    from embplat.pipelines.semantic import label_images

    failures: list[QueryFailure] = []
    with query_files(images) as paths:
        if space == "conse":
            answers = conse_labels(ctx, paths, k=k, top=top, failures=failures)
        elif space == "clip":
            from embplat.pipelines.clip import clip_labels

            answers = clip_labels(ctx, paths, k=k, roles=roles, failures=failures)
        else:
            answers = label_images(
                ctx, paths, model=model, k=k, roles=roles, failures=failures, gamma=gamma,
                hubness=hubness,
            )  # fmt: skip
    found = [
        ZeroShot(
            a.path,
            a.label,
            a.score,
            a.role,
            a.model,
            [_label(c) for c in a.candidates],
            gamma=a.gamma,
            notes=list(a.notes),
        )
        for a in answers
    ]
    return _in_order([str(p) for p in paths], sources, found, failures)


def caption(
    ctx: Context,
    images: Sequence[Any],
    sources: Sequence[str],
    *,
    model: str | None,
    beam: int,
    n: int,
) -> list[Captions | Failure]:
    """Captions of ``images`` by a captioning model (the newest unless ``model``), best
    first, ``n`` per image."""
    from embplat.pipelines.captioning import caption_files
    from embplat.pipelines.query_images import query_label

    queries = query_images(images)  # in-memory images stay bytes: no temporary files
    failures: list[QueryFailure] = []
    answers = caption_files(ctx, queries, model=model, beam=beam, n=n, failures=failures)
    found = [
        Captions(a.path, a.model, a.beam, [_caption_text(c) for c in a.captions]) for a in answers
    ]
    labels = [query_label(q, i) for i, q in enumerate(queries)]
    return _in_order(labels, sources, found, failures)


def _caption_text(c: Candidate) -> CaptionText:
    return CaptionText(c.text, c.logprob, c.score)


def _in_order(
    labels: Sequence[str],
    sources: Sequence[str],
    answers: list[T],
    failures: list[QueryFailure],
) -> list[T | Failure]:
    """Each query's answer or failure (matched by the use case's label), renamed to its
    source."""
    by_label: dict[str, T | Failure] = {a.source: a for a in answers}
    by_label |= {f.path: Failure(f.path, f.error) for f in failures}
    return [
        replace(by_label[label], source=source)
        for label, source in zip(labels, sources, strict=True)
    ]


def _label(c: LabelScore) -> Match:
    return Match(c.label, c.score, role=c.role)


def _classification(p: Prediction) -> Classification:
    return Classification(
        source=p.path,
        label=p.label,
        confidence=p.confidence,
        k=p.k,
        runner_up=p.runner_up,
        runner_up_share=p.runner_up_share,
        tallies=dict(p.tallies),
        neighbours=[Match(n.label, n.score, n.image_id, n.path) for n in p.neighbours],
        notes=list(p.notes),
        best_label=p.best_label,
        method=p.method,
        probabilities=dict(p.probabilities),
    )
