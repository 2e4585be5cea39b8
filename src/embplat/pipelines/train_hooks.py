"""Post-training steps a recipe asks for by name (``RecipeSpec.hooks``).

A hook runs either after fitting (``fit``: before checkpoints are pruned; what it returns is
recorded in the model's lineage) or after the catalog is embedded with the new model
(``embed``: only when the config embeds; what it returns goes into the job's result). A
hook must never lose a finished training run: a failing ``fit`` hook is logged and skipped.

Adding a hook: a function ``(Trained) -> dict`` and one entry in :data:`HOOKS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from embplat.errors import ConfigError
from embplat.models.recipes import Built
from embplat.models.train_config import TrainConfig
from embplat.models.training import EpochResult, best_epoch
from embplat.pipelines.context import Context
from embplat.pipelines.semantic import publish_label_vectors
from embplat.pipelines.train_data import home_relative

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trained:
    """What a hook sees: the run's model name, config, classes, recipe and epochs.

    ``epochs`` are the registered stage's (e.g. DeViSE's projection, not its stage 1).
    """

    ctx: Context
    model: str
    cfg: TrainConfig
    classes: list[str]
    built: Built
    epochs: list[EpochResult]


@dataclass(frozen=True)
class TrainHook:
    """A post-training step and when it runs."""

    after: Literal["fit", "embed"]
    run: Callable[[Trained], dict[str, Any]]


def pca_plot(run: Trained) -> dict[str, Any]:
    """``plots``: the PCA plot of images and label vectors, frozen vs unfrozen (``plots``
    config flag; recipes with a label space only)."""
    labels = run.built.labels
    if not run.cfg.plots or labels is None:
        return {"plots": []}
    from embplat.pipelines.train_plots import devise_pca_plot  # matplotlib: only when plotting

    out = devise_pca_plot(run.ctx, run.model, run.epochs, run.classes, labels)
    return {"plots": [home_relative(run.ctx, str(out))] if out else []}


def gzsl_calibration(run: Trained) -> dict[str, Any]:
    """``gzsl_calibration``: calibrated stacking's gamma for the registered epoch, chosen by
    cross-validation over splits of the seen classes (no unseen image); ``label_images``
    applies it by default. Recipes with a label space only."""
    labels = run.built.labels
    if labels is None or not run.epochs:
        return {}
    from embplat.pipelines.calibration import calibrate_checkpoint  # torch: only when training

    checkpoint = best_epoch(run.epochs).checkpoint
    found = calibrate_checkpoint(run.ctx, checkpoint, run.classes, labels.matrix(run.classes))
    return {"gzsl_calibration": found.as_dict()}


def label_vectors(run: Trained) -> dict[str, Any]:
    """``labels``: how many label points were published into the model's collection."""
    return {"labels": len(publish_label_vectors(run.ctx, run.model))}


#: Hook name → hook. Recipes name the ones they need in ``RecipeSpec.hooks``.
HOOKS: dict[str, TrainHook] = {
    "pca_plot": TrainHook("fit", pca_plot),
    "gzsl_calibration": TrainHook("fit", gzsl_calibration),
    "label_vectors": TrainHook("embed", label_vectors),
}


def check_hooks(names: Iterable[str]) -> None:
    """Fail fast, before training, on a hook name nothing implements.

    Raises:
        ConfigError: an unknown hook name; the message lists the known ones.
    """
    unknown = sorted(set(names) - set(HOOKS))
    if unknown:
        raise ConfigError(f"unknown training hooks {unknown}; known: {sorted(HOOKS)}")


def run_hooks(names: Iterable[str], after: str, run: Trained) -> dict[str, Any]:
    """Run the hooks among ``names`` that run ``after`` this step; their merged results."""
    out: dict[str, Any] = {}
    for name in names:
        hook = HOOKS[name]
        if hook.after != after:
            continue
        if after == "embed":
            out.update(hook.run(run))
            continue
        try:
            out.update(hook.run(run))
        except Exception as exc:  # a plot must never lose a finished training run
            log.warning("%s of %s failed: %s", name, run.model, exc)
    return out
