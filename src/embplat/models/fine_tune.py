"""How an unfrozen phase starts from a head already trained on the frozen backbone.

A fresh one-cycle schedule per phase restarts at a high peak: fine for a head trained from
scratch, harmful to a pretrained backbone whose head fits it already (the first fine-tuned
epoch of the ``classifier`` recipe lost 0.05 to 0.08 valid accuracy, README). A recipe that
sets ``fine_tune`` (``models.training``) gets instead, in its unfrozen phases: the head and
the loss parameters at ``head_lr_mult`` x their frozen-phase LR, the backbone at
``lr x backbone_lr_mult`` as before, and a linear warm-up from ``warmup_start`` x those LRs
over ``warmup_epochs`` epochs, then a cosine decay to 0 (``torch.optim.lr_scheduler``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim import lr_scheduler


@dataclass(frozen=True)
class FineTune:
    """The unfrozen phase's learning rates and warm-up (see the module docstring)."""

    head_lr_mult: float = 0.1
    warmup_epochs: float = 1.0
    warmup_start: float = 0.01


def warmup_cosine(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int, start: float
) -> lr_scheduler.LRScheduler:
    """Linear warm-up from ``start`` x each group's LR over ``warmup_steps``, then cosine to 0.

    ``warmup_steps`` is clipped to ``total_steps - 1`` so the decay has at least one step;
    0 gives the cosine decay alone.
    """
    total_steps = max(total_steps, 1)
    warmup_steps = min(max(warmup_steps, 0), total_steps - 1)
    if warmup_steps == 0:
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    warm = lr_scheduler.LinearLR(optimizer, start_factor=start, total_iters=warmup_steps)
    decay = lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps - warmup_steps)
    return lr_scheduler.SequentialLR(optimizer, [warm, decay], milestones=[warmup_steps])
