"""Use case: how much does metric learning lose on classes it never trained on?

``unseen_experiment`` trains the ``metric`` recipe twice with one config: on every seen
class (``<name>-all``), and without the held-out classes (``<name>-without``; the last
``holdout`` classes in training order, or the named ones). Both models embed the whole
catalog; the held-out classes are then *enrolled but never trained on*. Each model is
evaluated through its own index: queries = the ``valid`` split of all classes, reference =
the ``train`` split of all classes. Reported: per-class precision@1 of both models, the
mean drop over held-out classes, over the others and over all classes
(``evaluation.open_set.precision_drop``); everything is recorded in the catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import ConfigError
from embplat.evaluation.open_set import (
    hit_rate,
    open_set_without,
    per_class_precision_at_1,
    precision_drop,
)
from embplat.models.metric import MetricConfig, make_sampler
from embplat.pipelines.context import Context
from embplat.pipelines.evaluate import evaluate_vectors
from embplat.pipelines.stored_vectors import open_space, split_vectors
from embplat.pipelines.train import train_recipe
from embplat.pipelines.train_data import catalog_samples, model_name
from embplat.progress import ProgressSink

log = logging.getLogger(__name__)

#: The catalog split the drop metrics are recorded under (per-class precision@1 too).
EXPERIMENT_SPLIT = "unseen-experiment"


def held_out(classes: Sequence[str], *, holdout: int | None, unseen: Sequence[str]) -> list[str]:
    """The classes to hold out: ``unseen`` by name, or the last ``holdout`` of ``classes``.

    Raises:
        ConfigError: both or neither given, an unknown name, or fewer than 2 classes left.
    """
    if (holdout is None) == (not unseen):
        raise ConfigError("give either --holdout N or --unseen a,b (exactly one of them)")
    if unseen:
        unknown = [c for c in unseen if c not in classes]
        if unknown:
            raise ConfigError(
                f"held-out classes {unknown} are not trainable seen classes; choose among "
                f"{', '.join(classes)}"
            )
        chosen = [c for c in classes if c in set(unseen)]
    else:
        assert holdout is not None
        if holdout < 1:
            raise ConfigError(f"--holdout must be at least 1, got {holdout}")
        chosen = list(classes[-holdout:]) if holdout <= len(classes) else list(classes)
    if len(classes) - len(chosen) < 2:
        raise ConfigError(
            f"holding out {len(chosen)} of {len(classes)} classes leaves fewer than 2 to train on"
        )
    return chosen


def experiment_names(ctx: Context, wanted: str | None) -> tuple[str, str]:
    """Free model names ``<base>-all`` and ``<base>-without`` (base default ``unseen-N``).

    Raises:
        ConfigError: a wanted name is taken or malformed.
    """
    if wanted:
        return model_name(ctx, "metric", f"{wanted}-all"), model_name(
            ctx, "metric", f"{wanted}-without"
        )
    with ctx.sessions() as session:
        taken = {m.name for m in repo.list_models(session=session)}
    n = 1
    while f"unseen-{n}-all" in taken or f"unseen-{n}-without" in taken:
        n += 1
    return f"unseen-{n}-all", f"unseen-{n}-without"


def unseen_experiment(
    ctx: Context,
    config: Mapping[str, Any],
    *,
    holdout: int | None = None,
    unseen: Sequence[str] = (),
    progress: ProgressSink | None = None,
) -> dict[str, Any]:
    """Train with and without the held-out classes, evaluate both on all classes.

    Args:
        config: a ``MetricConfig`` dict (``name`` = the base of the two model names;
            ``classes`` = the classes of the full model, default every seen class).

    Returns:
        JSON-ready: held-out classes, both model names, each model's metrics, and
        ``drop`` (per class and the mean drops, see ``precision_drop``).

    Raises:
        ConfigError, DataError: a bad config or held-out set, too few classes.
    """
    base = MetricConfig.from_dict({**config, "embed": True})
    classes = catalog_samples(ctx, base).classes
    held = held_out(classes, holdout=holdout, unseen=unseen)
    kept = [c for c in classes if c not in held]
    make_sampler(range(len(kept)), base.m_per_class, base.batch_size)  # fail before training
    full_name, without_name = experiment_names(ctx, base.name)
    runs = {full_name: classes, without_name: kept}
    for name, train_classes in runs.items():
        log.info("training %s on %d classes", name, len(train_classes))
        settings = {**base.as_dict(), "name": name, "classes": train_classes}
        train_recipe(ctx, "metric", settings, progress)
    evaluated = {name: _evaluate(ctx, name, held) for name in runs}
    drop = precision_drop(evaluated[full_name]["p1"], evaluated[without_name]["p1"], held)
    _record(ctx, full_name, without_name, evaluated, drop)
    return {
        "loss": base.loss,
        "held_out": held,
        "classes": classes,
        "models": {"all": full_name, "without": without_name},
        "metrics": {name: e["metrics"] for name, e in evaluated.items()},
        "groups": {name: e["groups"] for name, e in evaluated.items()},
        "open_set": evaluated[without_name]["open_set"],
        "drop": drop,
    }


def _evaluate(ctx: Context, model: str, held: Sequence[str]) -> dict[str, Any]:
    """valid (all classes) vs train (all classes) through the model's index; the seen and
    held-out groups; the open-set case with the held-out classes not enrolled."""
    space = open_space(ctx, model)
    queries = split_vectors(ctx, space, ["valid"])
    refs = split_vectors(ctx, space, ["train"])
    result, names = evaluate_vectors(space, queries, refs, reference="train")
    q_labels, r_labels = queries.labels(names), refs.labels(names)
    index_nb = result.ann_neighbours or result.neighbours
    p1 = per_class_precision_at_1(q_labels, index_nb.labels(r_labels)[:, 0], names)
    top1 = result.neighbours.labels(r_labels)[:, 0]
    is_held = np.isin(queries.classes, list(held))
    groups = {
        group: {
            "queries": int(mask.sum()),
            "knn_accuracy@10": hit_rate(result.predictions[mask] == q_labels[mask]),
            "precision_at_1": hit_rate(top1[mask] == q_labels[mask]),
        }
        for group, mask in (("seen", ~is_held), ("held_out", is_held))
    }
    return {
        "model_id": space.model_id,
        "metrics": result.scalars(),
        "p1": p1,
        "groups": groups,
        "open_set": open_set_without(queries, refs, held),
    }


def _record(
    ctx: Context,
    full: str,
    without: str,
    evaluated: Mapping[str, dict[str, Any]],
    drop: Mapping[str, Any],
) -> None:
    """valid metrics of both models; per-class precision@1 and the drops (experiment split)."""
    with transaction(ctx.sessions) as session:
        for name, e in evaluated.items():
            repo.record_metrics(
                session=session, model_id=e["model_id"], split="valid", values=e["metrics"]
            )
            per_class = {f"precision_at_1/{c}": v for c, v in e["p1"].items()}
            per_class.update(
                {
                    f"{metric}/{group}": value
                    for group, values in e["groups"].items()
                    for metric, value in values.items()
                    if metric != "queries" and value is not None
                }
            )
            extra = {k: v for k, v in drop.items() if k.startswith("mean_drop")}
            extra.update(
                {
                    f"open_set/{k}": v
                    for k, v in e["open_set"].items()
                    if k != "curve" and v is not None
                }
            )
            repo.record_metrics(
                session=session,
                model_id=e["model_id"],
                split=EXPERIMENT_SPLIT,
                values={**per_class, **(extra if name == without else {})},
            )
    log.info("recorded the experiment %s vs %s", full, without)
