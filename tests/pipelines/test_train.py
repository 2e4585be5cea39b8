"""The generic training use case: a recipe registered from any module trains through
``train_recipe`` with no other module edited (its stages, its hooks, its lineage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from embplat.catalog import repo
from embplat.errors import ConfigError
from embplat.models.checkpoints import load_checkpoint
from embplat.models.heads import HeadSpec
from embplat.models.recipes import Built, RecipeSpec, Stage, register_recipe
from embplat.models.train_config import Phase, TrainConfig
from embplat.pipelines import train_hooks
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.train import train_recipe

CLASSES = ("trouser", "bag", "sneaker")


@dataclass(frozen=True)
class WarmConfig(TrainConfig):
    """The test recipe's config: warm-up epochs before the usual phases."""

    warmup_epochs: int = 1


class _Softmax:
    """An exported softmax head: the model's vectors are its class scores."""

    name = "warm-softmax"
    metric_name = "valid_accuracy"

    def __init__(self, num_classes: int):
        self.head = HeadSpec(out_dim=num_classes, export=True)

    def build_loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def metric(self, outputs: torch.Tensor, labels: torch.Tensor) -> float:
        return float((outputs.argmax(dim=1) == labels).float().mean())

    def sampler(self, labels: Sequence[int]) -> None:
        return None


@register_recipe
class WarmSoftmax(RecipeSpec[WarmConfig]):
    """Declared here only: config, build, stages and hooks."""

    name = "warm-softmax"
    config = WarmConfig
    hooks = ("note",)

    def build(self, cfg: WarmConfig, classes: list[str], *, home: Path) -> Built:
        return Built(_Softmax(len(classes)), extras={"made_by": "test"}, lineage={"warm": 1})

    def stages(self, cfg: WarmConfig, built: Built, classes: list[str]) -> list[Stage]:
        warm = Stage("warmup", _Softmax(len(classes)), [Phase("warm", cfg.warmup_epochs, True)])
        return [warm, *super().stages(cfg, built, classes)]


@pytest.fixture
def ctx(context_factory, fmnist_root):
    context = context_factory("exact", encoder="tiny_cnn", **{"ingest.valid_fraction": 0.3})
    ingest_tree(context, fmnist_root, embed=False)
    return context


def test_a_recipe_registered_elsewhere_trains_with_its_stages_and_hooks(ctx, monkeypatch):
    seen = []

    def note(run: train_hooks.Trained) -> dict:
        seen.append((run.model, [e.phase for e in run.epochs]))
        return {"noted": True}

    monkeypatch.setitem(train_hooks.HOOKS, "note", train_hooks.TrainHook("embed", note))
    config = {
        "encoder": "tiny_cnn",
        "image_size": 32,
        "batch_size": 8,
        "lr": 1e-2,
        "device": "cpu",
        "classes": list(CLASSES),
        "freeze_epochs": 1,
        "unfreeze_epochs": 1,
        "keep_checkpoints": "best",
    }
    name = train_recipe(ctx, "warm-softmax", config)

    assert name == "warm-softmax-1"
    with ctx.sessions() as session:
        record = repo.get_model(session=session, name=name)
        images = repo.count_images(session=session)
    assert (record.kind, record.dim) == ("warm-softmax", len(CLASSES))  # exported head
    lineage = record.config
    assert [e["phase"] for e in lineage["epochs"]] == ["warm", "frozen", "unfrozen"]
    assert lineage["best_epoch"] in (2, 3)  # chosen among the last stage's epochs
    assert lineage["warm"] == 1 and lineage["train_config"]["warmup_epochs"] == 1
    assert [bool(e["checkpoint"]) for e in lineage["epochs"]].count(True) == 1  # kept: best
    ckpt = load_checkpoint(ctx.home / lineage["checkpoint"])
    assert (ckpt["recipe"], ckpt["made_by"]) == ("warm-softmax", "test")
    assert seen == [(name, ["frozen", "unfrozen"])]  # the hook saw the registered stage
    assert ctx.spaces.space(name).index.count({"kind": "image"}) == images


def test_an_unknown_hook_is_refused_before_training(ctx, monkeypatch):
    monkeypatch.delitem(train_hooks.HOOKS, "note", raising=False)
    with pytest.raises(ConfigError, match="unknown training hooks \\['note'\\]"):
        train_recipe(ctx, "warm-softmax", {"encoder": "tiny_cnn", "device": "cpu"})
    with ctx.sessions() as session:
        assert repo.list_models(session=session) == []
