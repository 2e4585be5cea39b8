"""A generic training loop over (image path, class) samples: freeze/unfreeze, one-cycle LR.

Recipes plug into it through a small interface (``Recipe``):

- ``name`` (str) and ``metric_name`` (str, e.g. ``valid_accuracy``);
- ``head: HeadSpec``: the layer put on the backbone's (B, D) features: ``Head(D, spec)`` maps
  them to (B, ``out_dim``). ``export=True`` makes the exported encoder ``backbone + head``
  (a projection or embedding layer); ``export=False`` exports the backbone's features only
  (a softmax classifier's penultimate layer);
- ``build_loss() -> nn.Module``: ``loss(outputs (B, out_dim), labels (B,)) -> scalar``. Its
  parameters (proxies, class weights) are trained too, at ``LoopOptions.loss_lr`` when set;
- ``metric(outputs (N, out_dim), labels (N,)) -> float``: higher is better, computed on the
  valid split after every epoch (and once before training, as the untrained baseline);
- ``sampler(labels) -> Sampler | None``: batches to draw (e.g. m-per-class), None = shuffle;
- optionally ``freeze_bn: bool`` (default False): keep the backbone's BatchNorm layers in
  eval mode (running statistics frozen, affine parameters still trained) while it is
  fine-tuned, so small or off-domain batches do not shift the features the head learned;
- optionally ``fine_tune: FineTune | None`` (default None): how unfrozen phases start from
  the head the frozen phases trained (lower head LR, warm-up then cosine decay;
  ``models.fine_tune``). None keeps a one-cycle schedule per phase;
- optionally ``fit_head(head, features (N, D), labels (N,)) -> None``: sets the head in
  closed form from the frozen backbone's features of the plain train images; a phase with
  ``closed_form=True`` calls it once instead of running SGD epochs (DeViSE's ridge
  projection, ``models.ridge_head``).

Data comes as ``samples.TrainData`` (augmented and plain train images, valid images).
``fit`` runs a list of ``Phase`` s (epochs, backbone frozen or not) with a fresh optimiser and
schedule per phase (one-cycle, or the recipe's ``fine_tune`` in unfrozen phases), writes
``epoch_N.pt`` after every epoch (``checkpoints`` module) and returns the history;
``best_epoch`` picks the epoch to register. While the backbone is frozen its features are
computed once (without augmentation, in eval mode) and the head trains on them, which makes
frozen epochs nearly free on a CPU. AMP (float16) runs on CUDA only.

A recipe module in ``models/recipes/`` builds such an object and registers itself (see
``embplat.models.recipes``); ``pipelines.train.train_recipe`` runs any registered recipe.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from embplat.errors import ConfigError
from embplat.models.checkpoints import save_checkpoint
from embplat.models.fine_tune import FineTune, warmup_cosine
from embplat.models.heads import Head, HeadSpec, Recipe, RecipeNet  # re-exported
from embplat.models.samples import (  # re-exported: recipes build their data from here too
    ImageSamples,
    Sample,
    TrainData,
    eval_transform,
    train_transform,
)
from embplat.models.train_config import LoopOptions, Phase  # re-exported
from embplat.progress import ProgressSink, show_status

__all__ = [
    "EpochResult",
    "Head",
    "HeadSpec",
    "History",
    "ImageSamples",
    "LoopOptions",
    "Phase",
    "Recipe",
    "RecipeNet",
    "Sample",
    "TrainData",
    "best_epoch",
    "eval_transform",
    "fit",
    "train_transform",
]
log = logging.getLogger(__name__)


@dataclass
class EpochResult:
    """One epoch's numbers, as stored in checkpoints and the catalog."""

    epoch: int
    phase: str
    loss: float
    metric: float
    images_per_s: float
    seconds: float
    checkpoint: str = ""


@dataclass
class History:
    """The untrained baseline metric and every epoch, in order."""

    baseline: float
    epochs: list[EpochResult] = field(default_factory=list)


def fit(
    net: RecipeNet,
    recipe: Recipe,
    data: TrainData,
    phases: Sequence[Phase],
    opts: LoopOptions,
    *,
    out_dir: Path,
    meta: dict[str, Any],
    progress: ProgressSink,
    first_epoch: int = 1,
) -> History:
    """Train ``net`` through ``phases``; save ``out_dir/epoch_N.pt`` after every epoch.

    Args:
        meta: JSON-like fields written into every checkpoint (config, encoder, classes...).
        progress: one bar per epoch; a sink with a status line also shows loss and speed.

    Returns:
        The untrained baseline metric and one ``EpochResult`` per epoch.
    """
    device = torch.device(opts.device)
    net.to(device)
    torch.manual_seed(opts.seed)
    outputs, labels = _valid_outputs(net, data.valid, opts, None)
    history = History(baseline=recipe.metric(outputs, labels))
    log.info("%s untrained %s=%.4f", recipe.name, recipe.metric_name, history.baseline)
    epoch = first_epoch
    for phase in phases:
        if phase.epochs < 1:
            continue
        _set_frozen(net, phase.freeze_backbone)
        if phase.closed_form:
            result = _closed_form(net, recipe, data, opts, phase, epoch, progress)
            history.epochs.append(_saved(result, net, out_dir, meta))
            epoch += 1
            continue
        cached = phase.freeze_backbone and opts.cache_frozen
        train_feats, valid_feats = _cache(net, data, opts) if cached else (None, None)
        loader = _train_loader(data.train, recipe, opts, train_feats)
        tune: FineTune | None = getattr(recipe, "fine_tune", None)
        steps = phase.epochs * len(loader)
        optimizer, schedule = _optimizer(net, opts, phase, steps, tune=tune, epoch=len(loader))
        bn_frozen = bool(getattr(recipe, "freeze_bn", False))
        for _ in range(phase.epochs):
            task = progress.task(f"epoch {epoch} {recipe.name}:{phase.name}", _size(loader))
            loss, ips, secs = _train_epoch(
                net, loader, optimizer, schedule, opts, task, progress, bn_frozen=bn_frozen
            )
            outputs, labels = _valid_outputs(net, data.valid, opts, valid_feats)
            result = EpochResult(epoch, phase.name, loss, recipe.metric(outputs, labels), ips, secs)
            show_status(
                progress,
                f"loss {loss:.4f} · {recipe.metric_name} {result.metric:.4f} · {ips:.1f} img/s",
            )
            history.epochs.append(_saved(result, net, out_dir, meta))
            epoch += 1
    return history


def _saved(result: EpochResult, net: RecipeNet, out_dir: Path, meta: dict[str, Any]) -> EpochResult:
    """``result`` with its epoch's checkpoint written (``out_dir/epoch_N.pt``)."""
    path = out_dir / f"epoch_{result.epoch}.pt"
    save_checkpoint(path, net, {**meta, "epoch": result.epoch, "metrics": result.__dict__})
    result.checkpoint = str(path)
    return result


def best_epoch(results: Sequence[EpochResult]) -> EpochResult:
    """The epoch with the highest metric; among ties the later one (it trained longer)."""
    if not results:
        raise ValueError("no epochs were run")
    return max(reversed(results), key=lambda r: -math.inf if math.isnan(r.metric) else r.metric)


def _closed_form(
    net: RecipeNet,
    recipe: Recipe,
    data: TrainData,
    opts: LoopOptions,
    phase: Phase,
    epoch: int,
    progress: ProgressSink,
) -> EpochResult:
    """A ``closed_form`` phase: the head set by ``recipe.fit_head`` from the frozen backbone's
    features; recorded as one epoch (loss on the train features, valid metric).

    Raises:
        ConfigError: the recipe has no ``fit_head`` or the phase does not freeze the backbone.
    """
    fit_head = getattr(recipe, "fit_head", None)
    if fit_head is None or not phase.freeze_backbone:
        raise ConfigError(
            f"phase {phase.name!r}: a closed-form fit needs a frozen backbone and a recipe "
            f"with fit_head ({recipe.name} has none)"
        )
    start = time.perf_counter()
    task = progress.task(f"epoch {epoch} {recipe.name}:{phase.name}", len(data.train_plain))
    train_feats, valid_feats = _cache(net, data, opts)
    feats, labels = train_feats.tensors
    fit_head(net.head, feats, labels)
    task(len(labels))
    with torch.no_grad():
        net.eval()
        loss = float(net.loss(net.head(feats.to(opts.device)).float(), labels.to(opts.device)))
    outputs, valid_labels = _valid_outputs(net, data.valid, opts, valid_feats)
    secs = time.perf_counter() - start
    result = EpochResult(
        epoch, phase.name, loss, recipe.metric(outputs, valid_labels), len(labels) / secs, secs
    )
    show_status(progress, f"loss {loss:.4f} · {recipe.metric_name} {result.metric:.4f}")
    return result


def _size(loader: DataLoader) -> int:
    """Images one epoch of ``loader`` trains on (after drop_last)."""
    if loader.drop_last and loader.batch_size:
        return len(loader) * loader.batch_size
    return len(loader.dataset)  # type: ignore[arg-type]


def _set_frozen(net: RecipeNet, frozen: bool) -> None:
    for p in net.backbone.parameters():
        p.requires_grad_(not frozen)


def _cache(
    net: RecipeNet, data: TrainData, opts: LoopOptions
) -> tuple[TensorDataset, TensorDataset]:
    """Backbone features of the plain train images and of the valid images (frozen phases)."""
    return _features(net, data.train_plain, opts), _features(net, data.valid, opts)


@torch.no_grad()
def _features(net: RecipeNet, ds: ImageSamples, opts: LoopOptions) -> TensorDataset:
    net.backbone.eval()
    feats, labels = [], []
    for images, y in _loader(ds, opts, shuffle=False):
        with _autocast(opts):
            feats.append(net.backbone(images.to(opts.device)).float().cpu())
        labels.append(y)
    if not feats:  # e.g. no valid images: an empty set with the right shape
        dim = net.head.linear.in_features
        return TensorDataset(torch.empty(0, dim), torch.empty(0, dtype=torch.long))
    return TensorDataset(torch.cat(feats), torch.cat(labels))


def _loader(ds: Dataset, opts: LoopOptions, *, shuffle: bool, **kw: Any) -> DataLoader:
    # a Celery (prefork) child is a daemon process, which may not start DataLoader workers
    small = len(ds) <= opts.batch_size  # type: ignore[arg-type]
    workers = 0 if small or multiprocessing.current_process().daemon else opts.num_workers
    return DataLoader(ds, batch_size=opts.batch_size, shuffle=shuffle, num_workers=workers, **kw)


def _train_loader(
    ds: ImageSamples, recipe: Recipe, opts: LoopOptions, cached: TensorDataset | None
) -> DataLoader:
    source: Dataset = cached if cached is not None else ds
    sampler = recipe.sampler(ds.labels)
    if sampler is not None:
        return _loader(source, opts, shuffle=False, sampler=sampler)
    gen = torch.Generator().manual_seed(opts.seed)
    # a last batch of one breaks BatchNorm in training mode, so drop the remainder
    return _loader(source, opts, shuffle=True, generator=gen, drop_last=len(ds) > opts.batch_size)


def _optimizer(
    net: RecipeNet,
    opts: LoopOptions,
    phase: Phase,
    steps: int,
    *,
    tune: FineTune | None = None,
    epoch: int = 1,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """A fresh optimiser over the phase's parameter groups and its LR schedule over
    ``steps`` optimiser steps (``epoch`` of them per epoch: the warm-up's unit)."""
    tune = None if phase.freeze_backbone else tune
    head_lr = opts.lr * (tune.head_lr_mult if tune else 1.0)
    groups: list[dict[str, Any]] = [{"params": list(net.head.parameters()), "lr": head_lr}]
    loss_params = list(net.loss.parameters())
    if loss_params:
        loss_lr = (opts.loss_lr or opts.lr) * (tune.head_lr_mult if tune else 1.0)
        groups.append({"params": loss_params, "lr": loss_lr, "weight_decay": 0.0})
    if not phase.freeze_backbone:
        groups.append(
            {"params": list(net.backbone.parameters()), "lr": opts.lr * opts.backbone_lr_mult}
        )
    optimizer: torch.optim.Optimizer
    if opts.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, momentum=opts.momentum, weight_decay=opts.weight_decay)
    else:
        optimizer = torch.optim.AdamW(groups, weight_decay=opts.weight_decay)
    steps = max(steps, 1)
    if tune is not None:
        warmup = round(tune.warmup_epochs * epoch)
        return optimizer, warmup_cosine(
            optimizer, total_steps=steps, warmup_steps=warmup, start=tune.warmup_start
        )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=0.3
    )
    return optimizer, schedule


def _amp(opts: LoopOptions) -> bool:
    """Mixed precision only on CUDA (CPU float16 autocast is slow and unsupported by ops)."""
    return opts.amp and torch.device(opts.device).type == "cuda"


def _autocast(opts: LoopOptions) -> torch.autocast:
    on_gpu = _amp(opts)
    return torch.autocast("cuda" if on_gpu else "cpu", dtype=torch.float16, enabled=on_gpu)


def _train_epoch(
    net: RecipeNet,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    opts: LoopOptions,
    advance: Callable[[int], None],
    progress: ProgressSink,
    *,
    bn_frozen: bool = False,
) -> tuple[float, float, float]:
    """One pass; returns (mean loss, images per second, seconds)."""
    frozen = not next(net.backbone.parameters()).requires_grad
    net.train()
    if frozen:
        net.backbone.eval()  # keep BatchNorm statistics of a frozen backbone
    elif bn_frozen:
        for module in net.backbone.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    scaler = torch.amp.GradScaler("cuda", enabled=_amp(opts))
    total, seen, start = 0.0, 0, time.perf_counter()
    for step, (x, y) in enumerate(loader, 1):
        x, y = x.to(opts.device, non_blocking=True), y.to(opts.device, non_blocking=True)
        with _autocast(opts):
            feats = x if x.dim() == 2 else net.backbone(x)
            loss = net.loss(net.head(feats).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        total, seen = total + float(loss.detach()) * len(y), seen + len(y)
        advance(len(y))
        rate = seen / max(time.perf_counter() - start, 1e-9)
        if step % 5 == 0 or step == len(loader):
            show_status(progress, f"loss {total / seen:.4f} · {rate:.1f} img/s")
    secs = time.perf_counter() - start
    return (total / seen if seen else math.nan), seen / max(secs, 1e-9), secs


@torch.no_grad()
def _valid_outputs(
    net: RecipeNet, valid: ImageSamples, opts: LoopOptions, cached: TensorDataset | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Head outputs (N, out_dim) and labels (N,) of the valid split, on the CPU."""
    net.eval()
    outs, labels = [], []
    source: Dataset = cached if cached is not None else valid
    for x, y in _loader(source, opts, shuffle=False):
        with _autocast(opts):
            feats = x.to(opts.device) if x.dim() == 2 else net.backbone(x.to(opts.device))
            outs.append(net.head(feats).float().cpu())
        labels.append(y)
    if not outs:
        return torch.empty(0, net.head.linear.out_features), torch.empty(0, dtype=torch.long)
    return torch.cat(outs), torch.cat(labels)
