"""Use case: evaluate one model's space in full, exact and through its index, with a report.

``evaluate_model`` reads the stored vectors of the query and reference splits back from the
model's collection (``VectorIndex.get``, chunked), so exact search and the index's own
(approximate) search run over the very same vectors. It reports precision@1, R-precision,
MAP@R, NMI/AMI, kNN accuracy@1/@10, per-class tables and the confusion matrix
(``evaluation.retrieval_eval``), the index-vs-exact deltas, and an open-set
accuracy/coverage curve where unseen-class images (the ``test`` split) should be answered
``unknown``. Scalar metrics are recorded in the catalog (``repo.record_metrics``); with
``report`` a self-contained HTML report is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import ConfigError, DataError
from embplat.evaluation.neighbours import Neighbours, index_neighbours
from embplat.evaluation.open_set import per_class_precision_at_1
from embplat.evaluation.report import project_2d, write_report
from embplat.evaluation.retrieval_eval import (
    RetrievalEvaluation,
    describe_queries,
    evaluate_retrieval,
    required_depth,
    worst_queries,
)
from embplat.pipelines.context import Context, Space
from embplat.pipelines.open_set import hold_out, open_set_curve
from embplat.pipelines.progress import NoProgress, ProgressSink


@dataclass(frozen=True)
class SplitVectors:
    """The embedded images of some splits: point ids, class names, paths, (N, D) vectors."""

    ids: list[str]
    classes: list[str]
    paths: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def labels(self, names: Sequence[str]) -> np.ndarray:
        """(N,) int labels: positions of the class names in ``names``."""
        pos = {n: i for i, n in enumerate(names)}
        return np.array([pos[c] for c in self.classes], dtype=np.int64)

    def where(self, keep: np.ndarray) -> SplitVectors:
        """The rows where the (N,) bool mask ``keep`` is True."""
        rows = np.flatnonzero(keep)
        return SplitVectors(
            [self.ids[i] for i in rows],
            [self.classes[i] for i in rows],
            [self.paths[i] for i in rows],
            self.vectors[rows],
        )

    def __add__(self, other: SplitVectors) -> SplitVectors:
        return SplitVectors(
            self.ids + other.ids,
            self.classes + other.classes,
            self.paths + other.paths,
            np.concatenate([self.vectors, other.vectors]),
        )


def resolve_space(ctx: Context, model: str | None) -> Space:
    """A trained model's space, or the active encoder's (``model`` None or its key).

    Raises:
        NotFoundError: no such model.
        ConfigError: a pretrained encoder other than the active one.
    """
    if model is None:
        return ctx.space()
    with ctx.sessions() as session:
        kind = repo.get_model(session=session, name=model).kind
    if kind != "encoder":
        return ctx.space(model)
    if ctx.registered()[0].key != model:
        raise ConfigError(
            f"{model!r} is a pretrained encoder that is not the active one; evaluate it with "
            "`platform --encoder NAME [--image-size S] evaluate`"
        )
    return ctx.space()


def split_vectors(
    ctx: Context, space: Space, splits: Sequence[str], *, chunk: int = 1024
) -> SplitVectors:
    """Every image of ``splits`` stored in the space's collection, vectors read back from
    the index in chunks of ``chunk`` (catalog order)."""
    with ctx.sessions() as session:
        rows = repo.embedded_images(
            session=session, collection_id=space.collection_id, splits=list(splits)
        )
    ids = [r[3] for r in rows]
    parts, paths = [], []
    for start in range(0, len(ids), chunk):
        vectors, payloads = space.index.get(ids[start : start + chunk])
        parts.append(np.asarray(vectors, dtype=np.float32))
        paths += [str(p.get("path", "")) for p in payloads]
    dim = space.index.dim
    vectors = np.concatenate(parts) if parts else np.empty((0, dim), dtype=np.float32)
    return SplitVectors(ids, [r[2] for r in rows], paths, vectors)


def evaluate_space(
    space: Space,
    queries: SplitVectors,
    refs: SplitVectors,
    *,
    reference_split: str,
    ks: Sequence[int] = (1, 10),
    weighted: bool = False,
    leave_out: bool = False,
    classes: Sequence[str] | None = None,
) -> tuple[RetrievalEvaluation, list[str], Neighbours]:
    """Exact evaluation of ``queries`` against ``refs``, compared with the index's search.

    ``classes``: the index's search is restricted to these classes (``refs`` must hold
    only them too); None searches every class of the reference split.

    Returns:
        The evaluation (``ann`` = through the index), the class names of its int labels,
        and the index's neighbours.
    """
    names = sorted(set(queries.classes) | set(refs.classes))
    q_labels, r_labels = queries.labels(names), refs.labels(names)
    depth = required_depth(r_labels, max(ks), exclude_self=leave_out)
    ann = index_neighbours(
        space.index,
        queries.vectors,
        refs.ids,
        depth,
        flt={
            "kind": "image",
            "split": reference_split,
            **({"class": list(classes)} if classes is not None else {}),
        },
        query_ids=queries.ids if leave_out else None,
    )
    result = evaluate_retrieval(
        queries.vectors,
        q_labels,
        refs.vectors,
        r_labels,
        class_names=names,
        ks=ks,
        ann=ann,
        exclude_self=leave_out,
        weighted=weighted,
    )
    return result, names, ann


def scalar_metrics(result: RetrievalEvaluation) -> dict[str, float]:
    """Flat ``name -> value``: exact metrics as they are, the index's as ``index/<name>``,
    its difference from exact as ``index_minus_exact/<name>``, and the agreement with exact
    search (``index/recall@k``, ``index/top1_identical``)."""
    out = {k: float(v) for k, v in result.metrics.items()}
    if result.ann is not None:
        out.update({f"index/{k}": float(v) for k, v in result.ann["metrics"].items()})
        out.update({f"index_minus_exact/{k}": float(v) for k, v in result.ann["delta"].items()})
        out.update({f"index/{k}": float(v) for k, v in result.ann["agreement"].items()})
    out["queries"], out["references"] = result.info["queries"], result.info["references"]
    return out


def per_class_p1(
    nb: Neighbours, q_labels: np.ndarray, r_labels: np.ndarray, names: Sequence[str]
) -> dict[str, float]:
    """precision@1 of each query class from (exact or index) neighbours."""
    return per_class_precision_at_1(q_labels, nb.labels(r_labels)[:, 0], names)


def evaluate_model(
    ctx: Context,
    *,
    model: str | None = None,
    split: str = "valid",
    reference: str = "train",
    ks: Sequence[int] = (1, 10),
    weighted: bool = False,
    report: Path | None = None,
    unseen_split: str = "test",
    projection: str = "auto",
    unknown: Sequence[str] = (),
    progress: ProgressSink | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (default: the active encoder) on ``split`` against ``reference``.

    ``reference == split`` leaves each query out of its own neighbours. Scalar metrics are
    recorded for the model under ``split``; ``report``: write the HTML report there
    (``projection``: auto, pca or umap). ``unknown``: classes treated as never enrolled —
    left out of the references and of the evaluated queries, their queries join the
    open-set curve as images to be answered ``unknown`` (metrics are then recorded under
    ``<split>-unknown:<classes>``).

    Raises:
        DataError: the split or the reference holds no embedded images of the model.
        ConfigError: an ``unknown`` class has no query in the split, or none would be left.
    """
    space = resolve_space(ctx, model)
    advance = (progress or NoProgress()).task(f"evaluating {space.key}", 3)
    queries, refs = _query_and_reference(ctx, space, split, reference)
    queries, refs, held = hold_out(queries, refs, unknown)
    advance(1)
    leave_out = reference == split
    result, names, _ = evaluate_space(
        space,
        queries,
        refs,
        reference_split=reference,
        ks=ks,
        weighted=weighted,
        leave_out=leave_out,
        classes=sorted(set(refs.classes)) if unknown else None,
    )
    q_labels = queries.labels(names)
    p1 = per_class_p1(result.neighbours, q_labels, refs.labels(names), names)
    for name, row in result.per_class.items():
        row["precision_at_1"] = p1.get(name, 0.0)
    curve: list[dict[str, Any]] = []
    if unseen_split not in (split, reference):
        held = held + split_vectors(ctx, space, [unseen_split])
    if len(held):
        curve = open_set_curve(result, q_labels, names, held, refs, k=max(ks), weighted=weighted)
    advance(1)
    recorded_as = f"{split}-unknown:{','.join(sorted(unknown))}" if unknown else split
    with transaction(ctx.sessions) as session:
        recorded = repo.record_metrics(
            session=session,
            model_id=space.model_id,
            split=recorded_as,
            values=scalar_metrics(result),
        )
    out = {
        "model": space.key,
        "index": space.index.name,
        "split": split,
        "reference": reference,
        "unknown": sorted(unknown),
        "recorded_as": recorded_as,
        "weighted": weighted,
        **result.summary(),
        "open_set": curve,
        "recorded": recorded,
        "report": None,
    }
    if report is not None:
        out["report"] = str(_write(report, out, result, names, queries, refs, projection))
    advance(1)
    return out


def _query_and_reference(
    ctx: Context, space: Space, split: str, reference: str
) -> tuple[SplitVectors, SplitVectors]:
    queries = split_vectors(ctx, space, [split])
    refs = queries if reference == split else split_vectors(ctx, space, [reference])
    for what, part, name in (("split", queries, split), ("reference split", refs, reference)):
        if not len(part):
            raise DataError(
                f"{what} {name!r} holds no images embedded in {space.index.name}; embed them "
                f"first (`platform models embed {space.key}` for a trained model, "
                "`platform ingest` for the active encoder)"
            )
    return queries, refs


def _write(
    path: Path,
    out: dict[str, Any],
    result: RetrievalEvaluation,
    names: Sequence[str],
    queries: SplitVectors,
    refs: SplitVectors,
    projection: str,
) -> Path:
    """The HTML report: metrics, confusion, per class, 2-D projection, curve, and the
    misclassified queries of the worst classes with their 10 neighbours and the vote."""
    q_labels = queries.labels(names)
    worst = describe_queries(
        result,
        worst_queries(q_labels, result.predictions),
        query_labels=q_labels,
        reference_labels=refs.labels(names),
        query_paths=queries.paths,
        reference_paths=refs.paths,
        class_names=names,
    )
    coords, method = project_2d(queries.vectors, projection)
    metrics = {"exact": result.metrics, "index": result.ann or {}, **result.info}
    tables = {}
    if out["open_set"]:
        tables["Open set: accuracy / coverage (unseen classes answered unknown)"] = out["open_set"]
    return write_report(
        path,
        metrics,
        projection=coords,
        projection_labels=queries.classes,
        projection_method=method,
        confusion=result.confusion,
        per_class=result.per_class,
        worst=worst,
        tables=tables,
        title=f"{out['model']} · {out['split']} vs {out['reference']}",
    )
