"""The classifier's parts without a catalog: which checkpoints hold a softmax head, frozen
BatchNorm statistics while fine-tuning, the head's metrics and what ``models list`` says."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from embplat.cli.models import registered_as
from embplat.evaluation.softmax import evaluate_probabilities, mistakes_figure, worst_mistakes
from embplat.models.recipes import make_config
from embplat.models.recipes.classifier import Classifier, ClassifierRecipe
from embplat.models.softmax import has_softmax_head
from embplat.models.training import LoopOptions, Phase, RecipeNet, TrainData, fit
from embplat.progress import NoProgress


@pytest.mark.parametrize(
    ("head", "classes", "expected"),
    [
        ({"out_dim": 3, "bn": False, "export": False}, ["a", "b", "c"], True),
        ({"out_dim": 50, "bn": False, "export": True}, ["a", "b", "c"], False),  # DeViSE
        ({"out_dim": 128, "bn": True, "export": True}, ["a", "b"], False),  # metric
        ({"out_dim": 4, "bn": False, "export": False}, ["a", "b", "c"], False),
        (None, ["a", "b"], False),  # matching, captioning
    ],
)
def test_only_a_classifier_head_over_its_classes_is_a_softmax_head(head, classes, expected):
    assert has_softmax_head({"head": head, "classes": classes}) is expected


class _Images(Dataset):
    """Random (3, 16, 16) images of 2 classes (the class shifts the mean)."""

    def __init__(self, n: int, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.labels = [i % 2 for i in range(n)]
        self.x = (
            torch.randn(n, 3, 16, 16, generator=gen)
            + torch.tensor(self.labels)[:, None, None, None]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], self.labels[i]


def _bn_backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_fine_tuning_keeps_batchnorm_statistics_only_when_asked(tmp_path, freeze_bn):
    backbone = _bn_backbone()
    bn = backbone[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.weight.detach().clone())
    recipe = ClassifierRecipe(2, freeze_bn=freeze_bn)
    net = RecipeNet(backbone, 8, recipe)
    train = _Images(32, 0)
    data = TrainData(train, train, _Images(8, 1))  # type: ignore[arg-type]
    opts = LoopOptions(batch_size=8, lr=1e-2, backbone_lr_mult=1.0, cache_frozen=False)
    fit(
        net,
        recipe,
        data,
        [Phase("unfrozen", 2, freeze_backbone=False)],
        opts,
        out_dir=tmp_path,
        meta={},
        progress=NoProgress(),
    )
    same_stats = torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert same_stats is freeze_bn
    assert not torch.equal(bn.weight.detach(), before[2])  # its affine part trains either way


def test_the_recipe_freezes_batchnorm_by_default():
    built = Classifier().build(make_config("classifier", None), ["a", "b"], home=".")  # type: ignore[arg-type]
    assert built.recipe.freeze_bn is True  # type: ignore[attr-defined]
    off = make_config("classifier", {"freeze_bn": False})
    assert Classifier().build(off, ["a", "b"], home=".").recipe.freeze_bn is False  # type: ignore[arg-type, attr-defined]


def test_head_metrics_report_and_worst_mistakes(tmp_path, imagefactory):
    probs = np.array(
        [
            [0.9, 0.05, 0.05],  # right
            [0.2, 0.7, 0.1],  # wrong (true 0), 0.7
            [0.1, 0.1, 0.8],  # right
            [0.05, 0.9, 0.05],  # wrong (true 2), 0.9
            [0.4, 0.35, 0.25],  # wrong (true 1), 0.4
        ]
    )
    labels = np.array([0, 0, 2, 2, 1])
    assert worst_mistakes(probs, labels).tolist() == [3, 1, 4]
    assert worst_mistakes(probs, labels, 2).tolist() == [3, 1]
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"{i}.png"))
        imagefactory.photo("coffee", 20, 20).save(paths[-1])
    out = evaluate_probabilities(probs, labels, ["coat", "bag", "shirt"], paths, worst=2)
    assert out["accuracy"] == pytest.approx(0.4) and out["images"] == 5
    assert out["confusion"] == {
        "labels": ["coat", "bag", "shirt"],
        "matrix": [[1, 1, 0], [1, 0, 0], [0, 1, 1]],
    }
    assert out["per_class"]["shirt"]["recall"] == pytest.approx(0.5)
    assert "coat" in out["classification_report"] and "macro avg" in out["classification_report"]
    assert out["worst"] == [
        {"path": paths[3], "true": "shirt", "predicted": "bag", "confidence": 0.9},
        {"path": paths[1], "true": "coat", "predicted": "bag", "confidence": 0.7},
    ]
    fig = mistakes_figure(out["worst"], columns=2)
    assert sum(bool(ax.images) for ax in fig.axes) == 2


def _epochs(*phases):
    return [{"epoch": i, "phase": p} for i, p in enumerate(phases, 1)]


def test_models_list_says_whether_the_backbone_was_trained():
    frozen_best = {"kind": "classifier", "best_epoch": 2}
    frozen_best["epochs"] = _epochs("frozen", "frozen", "unfrozen", "unfrozen")
    assert registered_as(frozen_best) == "softmax head on the frozen backbone, epoch 2 (frozen)"
    tuned = {**frozen_best, "best_epoch": 4}
    assert registered_as(tuned) == "softmax head + fine-tuned backbone, epoch 4 (unfrozen)"
    devise = {"kind": "devise", "best_epoch": 3, "epochs": _epochs("stage1", "frozen", "frozen")}
    assert registered_as(devise) == "head + fine-tuned backbone, epoch 3 (frozen)"
    ridge = {"kind": "devise", "best_epoch": 1, "epochs": _epochs("ridge", "unfrozen")}
    assert registered_as(ridge) == "head on the frozen backbone, epoch 1 (ridge)"
    assert (
        registered_as({**ridge, "best_epoch": 2})
        == "head + fine-tuned backbone, epoch 2 (unfrozen)"
    )
    assert registered_as({"kind": "encoder"}) == ""
