"""Use case behind ``platform evaluate``: kNN classification and retrieval of one split.

One path for every option. The query and reference images of a space (a trained model's or
the active encoder's; no encoder is built) are read back from its index, and the queries'
neighbours are searched through the index. The kNN evaluation scores those neighbours
(kNN accuracy, precision@1, R-precision, MAP@R, recall@k, per class). The full evaluation
(``EvaluationRequest.complete``) scores exact neighbours and sets the index's beside them,
adds NMI/AMI, an open-set accuracy/coverage curve where images of never-enrolled classes
should be answered ``unknown``, records the scalars in the catalog and can write an HTML
report. A zero-shot request is a visual-semantic model's ZSL/GZSL evaluation instead; a
model trained on captions (matching) gets the cross-modal evaluation
(``pipelines.evaluate_matching``, test split unless another split than ``valid`` is asked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import DataError
from embplat.evaluation.metrics import PML_METRICS, recall_at_k
from embplat.evaluation.neighbours import index_neighbours
from embplat.evaluation.open_set import open_set_curve, per_class_precision_at_1
from embplat.evaluation.report import write_evaluation_report
from embplat.evaluation.retrieval_eval import (
    RetrievalEvaluation,
    evaluate_neighbours,
    evaluate_retrieval,
    required_depth,
)
from embplat.evaluation.vectors import SplitVectors, hold_out
from embplat.pipelines.context import Context
from embplat.pipelines.query import check_split
from embplat.pipelines.stored_vectors import IndexedSpace, open_space, split_vectors
from embplat.progress import NoProgress, ProgressSink


@dataclass(frozen=True)
class EvaluationRequest:
    """What ``platform evaluate`` is asked.

    Attributes:
        split: the queries' split; reference: the searched split (default ``train``, or
            ``test`` for test queries). ``reference == split`` leaves each query out of
            its own neighbours.
        k: neighbours in the vote; weighted: similarity-weighted votes.
        model: a trained model (``platform models list``); None: the active encoder.
        unknown: classes treated as never enrolled (full evaluation).
        full: the full evaluation even without model, report or unknown classes.
        report: write the HTML report there; projection: its 2-D map (auto, pca, umap).
        unseen_split: images of this split join the open-set curve as unknowns.
        zero_shot, calibrate, plots: a visual-semantic model's ZSL/GZSL evaluation.
        beams: a captioning model's beam widths (BLEU at each).
    """

    split: str = "valid"
    reference: str | None = None
    k: int = 10
    weighted: bool = False
    model: str | None = None
    unknown: tuple[str, ...] = ()
    full: bool = False
    report: Path | None = None
    projection: str = "auto"
    unseen_split: str = "test"
    zero_shot: bool = False
    calibrate: bool = True
    plots: bool = True
    beams: tuple[int, ...] = (1, 3, 5)

    @property
    def reference_split(self) -> str:
        """The searched split."""
        return self.reference or ("test" if self.split == "test" else "train")

    @property
    def complete(self) -> bool:
        """The full evaluation: asked for, or implied by a model, a report or unknowns."""
        return self.full or self.model is not None or self.report is not None or bool(self.unknown)

    @property
    def ks(self) -> tuple[int, ...]:
        """Vote sizes scored: 1 and ``k``."""
        return (1, self.k) if self.k > 1 else (1,)


def evaluate(
    ctx: Context, request: EvaluationRequest, progress: ProgressSink | None = None
) -> dict[str, Any]:
    """Evaluate one split of a space against another (see the module docstring).

    Returns:
        JSON-ready: the kNN evaluation's metrics, or the full evaluation's (``metrics``,
        ``ann``, ``open_set``, ``recorded``...), or the zero-shot report.

    Raises:
        DataError: a bad split name, or a split holds no embedded images of the space.
        ConfigError: a pretrained encoder other than the active one; an ``unknown`` class
            without queries, or one that leaves nothing known.
        NotFoundError: no such model.
    """
    from embplat.pipelines.captioning import is_captioner
    from embplat.pipelines.crossmodal import is_caption_model

    if is_captioner(ctx, request.model):
        from embplat.pipelines.evaluate_captioner import evaluate_captioner

        assert request.model is not None
        split = "test" if request.split == "valid" else request.split  # as for matching
        return evaluate_captioner(ctx, request.model, split, request.beams)
    if is_caption_model(ctx, request.model) and not request.zero_shot:
        from embplat.pipelines.evaluate_matching import evaluate_matching

        assert request.model is not None
        return evaluate_matching(
            ctx, request.model, "test" if request.split == "valid" else request.split
        )
    if request.zero_shot:
        from embplat.pipelines.zeroshot import evaluate_zero_shot

        return evaluate_zero_shot(
            ctx,
            model=request.model,
            calibrate=request.calibrate,
            plots=request.plots,
            progress=progress,
        )
    check_split(request.split)
    check_split(request.reference, "--reference")
    space = open_space(ctx, request.model)
    queries, refs = _query_and_reference(ctx, space, request)
    queries, refs, held = hold_out(queries, refs, request.unknown)
    result, names = evaluate_vectors(
        space,
        queries,
        refs,
        reference=request.reference_split,
        ks=request.ks,
        weighted=request.weighted,
        leave_out=request.reference_split == request.split,
        exact=request.complete,
        classes=sorted(set(refs.classes)) if request.unknown else None,
        progress=progress,
    )
    if not request.complete:
        return _knn_summary(space, request, result, queries.labels(names), refs.labels(names))
    if request.unseen_split not in (request.split, request.reference_split):
        held = held + split_vectors(ctx, space, [request.unseen_split])
    head = None
    if request.model is not None:  # a trained classifier's softmax head, beside the kNN
        from embplat.pipelines.evaluate_softmax import evaluate_head

        head = evaluate_head(ctx, request.model, queries)
    return _full_summary(ctx, space, request, result, names, queries, refs, held, head)


def evaluate_vectors(
    space: IndexedSpace,
    queries: SplitVectors,
    refs: SplitVectors,
    *,
    reference: str,
    ks: Sequence[int] = (1, 10),
    weighted: bool = False,
    leave_out: bool = False,
    exact: bool = True,
    classes: Sequence[str] | None = None,
    progress: ProgressSink | None = None,
) -> tuple[RetrievalEvaluation, list[str]]:
    """Score ``queries`` against ``refs`` from their neighbours through the index.

    Args:
        reference: the references' split (the index's search filter).
        leave_out: the queries are the references; each is left out of its own neighbours.
        exact: score exact neighbours (``refs`` need vectors) with the index's beside them
            (``ann``); False: score the index's neighbours.
        classes: restrict the index's search to these classes (``refs`` hold only them).

    Returns:
        The evaluation and the class names of its int labels.
    """
    names = sorted(set(queries.classes) | set(refs.classes))
    q_labels, r_labels = queries.labels(names), refs.labels(names)
    advance = (progress or NoProgress()).task(f"evaluating {space.key}", len(queries))
    found = index_neighbours(
        space.index,
        queries.vectors,
        refs.ids,
        required_depth(r_labels, max(ks), exclude_self=leave_out),
        flt={
            "kind": "image",
            "split": reference,
            **({"class": list(classes)} if classes is not None else {}),
        },
        query_ids=queries.ids if leave_out else None,
        advance=advance,
    )
    common: dict[str, Any] = {"class_names": names, "ks": ks, "weighted": weighted}
    if not exact:
        nb = evaluate_neighbours(q_labels, r_labels, found, exclude_self=leave_out, **common)
        return nb, names
    result = evaluate_retrieval(
        queries.vectors,
        q_labels,
        refs.vectors,
        r_labels,
        ann=found,
        exclude_self=leave_out,
        **common,
    )
    return result, names


def _query_and_reference(
    ctx: Context, space: IndexedSpace, request: EvaluationRequest
) -> tuple[SplitVectors, SplitVectors]:
    split, reference = request.split, request.reference_split
    queries = split_vectors(ctx, space, [split])
    refs = (
        queries
        if reference == split
        else split_vectors(ctx, space, [reference], vectors=request.complete)
    )
    for what, part, name in (("split", queries, split), ("reference split", refs, reference)):
        if not len(part):
            raise DataError(
                f"{what} {name!r} holds no images embedded in {space.index.name}; embed them "
                f"first (`platform models embed {space.key}` for a trained model, "
                "`platform ingest` for the active encoder)"
            )
    return queries, refs


def _knn_summary(
    space: IndexedSpace,
    request: EvaluationRequest,
    result: RetrievalEvaluation,
    q_labels: np.ndarray,
    r_labels: np.ndarray,
) -> dict[str, Any]:
    """The kNN evaluation's JSON: the index's neighbours scored with a ``k``-vote."""
    leave_out = request.reference_split == request.split
    k = min(request.k, len(r_labels) - int(leave_out))
    knn_labels = result.neighbours.labels(r_labels)
    return {
        "model": space.key,
        "index": space.index.name,
        "split": request.split,
        "reference": request.reference_split,
        "weighted": request.weighted,
        "queries": len(q_labels),
        "references": len(r_labels),
        "k": k,
        "accuracy": result.metrics[f"knn_accuracy@{request.k}"],
        **{m: result.metrics[m] for m in PML_METRICS},
        **recall_at_k(q_labels, knn_labels, sorted({1, 5, 10, k})),
        "per_class": result.per_class,
        "confusion": result.confusion,
    }


def _full_summary(
    ctx: Context,
    space: IndexedSpace,
    request: EvaluationRequest,
    result: RetrievalEvaluation,
    names: list[str],
    queries: SplitVectors,
    refs: SplitVectors,
    held: SplitVectors,
    head: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The full evaluation's JSON; scalars recorded under the split (``<split>-unknown:<classes>``
    with unknown classes), per-class precision@1 added, the report written. ``head``: the
    softmax head's evaluation (``pipelines.evaluate_softmax``), reported as ``softmax`` and
    its accuracy recorded as ``softmax_accuracy``."""
    q_labels = queries.labels(names)
    top1 = result.neighbours.labels(refs.labels(names))[:, 0]
    p1 = per_class_precision_at_1(q_labels, top1, names)
    for name, row in result.per_class.items():
        row["precision_at_1"] = p1.get(name, 0.0)
    curve = open_set_curve(
        result, q_labels, names, held, refs, k=max(request.ks), weighted=request.weighted
    )
    unknown = sorted(request.unknown)
    recorded_as = f"{request.split}-unknown:{','.join(unknown)}" if unknown else request.split
    values = dict(result.scalars())
    if head is not None:
        values["softmax_accuracy"] = head["accuracy"]
    with transaction(ctx.sessions) as session:
        recorded = repo.record_metrics(
            session=session, model_id=space.model_id, split=recorded_as, values=values
        )
    out = {
        "model": space.key,
        "index": space.index.name,
        "split": request.split,
        "reference": request.reference_split,
        "unknown": unknown,
        "recorded_as": recorded_as,
        "weighted": request.weighted,
        **result.summary(),
        "open_set": curve,
        "recorded": recorded,
        "softmax": head,
        "report": None,
    }
    if request.report is not None:
        written = write_evaluation_report(
            request.report, out, result, names, queries, refs, request.projection
        )
        out["report"] = str(written)
    return out
