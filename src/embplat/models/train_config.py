"""What every training recipe shares: the frozen config base, the loop's options, phases.

Torch-free, so a config can be built and checked (e.g. before a training is queued for a
worker) without loading a model. A recipe's config subclasses :class:`TrainConfig`; the
frozen dataclass is saved in every checkpoint and in the catalog, so a model can always be
rebuilt and its lineage shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from embplat.errors import ConfigError

#: ``all``: every epoch's checkpoint stays; ``best``: only the registered epoch's.
KEEP_CHECKPOINTS = ("all", "best")
C = TypeVar("C", bound="TrainConfig")


@dataclass(frozen=True)
class Phase:
    """Consecutive epochs sharing one optimiser, schedule and frozen/unfrozen backbone.

    ``closed_form``: instead of SGD epochs, the recipe's ``fit_head`` sets the head once from
    the frozen backbone's features (recorded as one epoch; ``epochs`` > 0 turns it on).
    """

    name: str
    epochs: int
    freeze_backbone: bool
    closed_form: bool = False


def frozen_phase(name: str) -> bool:
    """Whether epochs of the phase ``name`` left the backbone as it was: ``frozen``,
    ``stage1-frozen``, DeViSE's closed-form ``ridge`` (not ``unfrozen``, ``stage1``,
    ``fine-tune``)."""
    return name in ("frozen", "ridge") or name.endswith("-frozen")


@dataclass(frozen=True)
class LoopOptions:
    """How ``fit`` trains: batches, learning rates (head ``lr``; backbone ``lr x mult``; loss
    parameters ``loss_lr``, default ``lr``), optimiser (``adamw`` or ``sgd``), device."""

    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1
    loss_lr: float | None = None
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    momentum: float = 0.9
    device: str = "cpu"
    amp: bool = True
    num_workers: int = 0
    cache_frozen: bool = True
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """What every recipe shares. ``classes`` empty = every seen class of the catalog;
    ``keep_checkpoints`` (``KEEP_CHECKPOINTS``): which epoch files stay after training."""

    name: str | None = None
    encoder: str = "efficientnet_lite0"
    weights: str | None = None
    image_size: int | None = None
    classes: tuple[str, ...] = ()
    max_per_class: int | None = None
    freeze_epochs: int = 2
    unfreeze_epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    cache_frozen: bool = True
    embed: bool = True
    plots: bool = True
    keep_checkpoints: str = "all"

    def __post_init__(self) -> None:
        if self.keep_checkpoints not in KEEP_CHECKPOINTS:
            raise ConfigError(
                f"keep_checkpoints must be one of {', '.join(KEEP_CHECKPOINTS)}, "
                f"got {self.keep_checkpoints!r}"
            )
        for key in ("freeze_epochs", "unfreeze_epochs", "num_workers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be 0 or more, got {getattr(self, key)}")
        if self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"batch size ({self.batch_size}) and lr ({self.lr}) must be positive")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ConfigError(f"max_per_class must be at least 1, got {self.max_per_class}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in checkpoints, jobs and the catalog."""
        out = asdict(self)
        out["classes"] = list(self.classes)
        return out

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Rebuild from :meth:`as_dict` output (or a user's dict).

        Raises:
            ConfigError: an unknown key; the message lists the known ones.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "classes" in values:
            values["classes"] = tuple(values["classes"] or ())
        return cls(**values)

    def loop_options(self, device: str) -> LoopOptions:
        """The training-loop settings of this config on a resolved device."""
        return LoopOptions(
            batch_size=self.batch_size,
            lr=self.lr,
            backbone_lr_mult=self.backbone_lr_mult,
            weight_decay=self.weight_decay,
            device=device,
            amp=self.amp,
            num_workers=self.num_workers,
            cache_frozen=self.cache_frozen,
            seed=self.seed,
        )

    def phases(self) -> list[Phase]:
        """Frozen backbone (head only), then unfrozen (everything, backbone at a lower LR)."""
        return [
            Phase("frozen", self.freeze_epochs, freeze_backbone=True),
            Phase("unfrozen", self.unfreeze_epochs, freeze_backbone=False),
        ]

    def check_epochs(self) -> None:
        """Refuse a config that trains no epoch at all.

        Raises:
            ConfigError: ``freeze_epochs + unfreeze_epochs`` is 0.
        """
        if self.freeze_epochs + self.unfreeze_epochs < 1:
            raise ConfigError("train for at least one epoch (--freeze-epochs/--unfreeze-epochs)")
