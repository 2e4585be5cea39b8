"""The classifier's fine-tuning phase: warm-up schedule, BatchNorm, cached vs live features."""

import functools

import pytest
import torch
from torch import nn

from embplat.errors import ConfigError
from embplat.ingest.images import load_rgb
from embplat.models.encoders import get_backbone
from embplat.models.fine_tune import FineTune, warmup_cosine
from embplat.models.recipes import get_recipe
from embplat.models.recipes.classifier import ClassifierConfig, ClassifierRecipe, light_transforms
from embplat.models.samples import ImageSamples, Sample, TrainData
from embplat.models.training import LoopOptions, Phase, RecipeNet, _features, _optimizer, fit
from embplat.progress import NoProgress

LR, MULT = 1e-2, 0.3


@pytest.fixture(scope="module")
def fm_data(fmnist_root):
    """The fixture tree's first 3 classes: 8 train and 4 valid images each, light transforms."""
    classes = sorted(p.name for p in fmnist_root.iterdir())[:3]
    train, valid = [], []
    for label, name in enumerate(classes):
        files = sorted((fmnist_root / name).iterdir())
        train += [Sample(str(p), label) for p in files[:8]]
        valid += [Sample(str(p), label) for p in files[8:]]
    loader = functools.partial(load_rgb, max_pixels=10_000_000)
    backbone = get_backbone("tiny_cnn")
    augment, plain = light_transforms(32, mean=backbone.mean, std=backbone.std)
    return TrainData(
        ImageSamples(train, augment, loader),
        ImageSamples(train, plain, loader),
        ImageSamples(valid, plain, loader),
    )


def _net(recipe, backbone=None):
    torch.manual_seed(0)
    backbone = backbone or get_backbone("tiny_cnn").module
    return RecipeNet(backbone, 64, recipe)


def _lrs(optimizer):
    return [g["lr"] for g in optimizer.param_groups]


def test_fine_tuning_starts_low_warms_up_to_its_peak_then_decays():
    net = _net(ClassifierRecipe(3, fine_tune=FineTune(head_lr_mult=0.1, warmup_epochs=1.0)))
    opts = LoopOptions(lr=LR, backbone_lr_mult=MULT)
    tune = FineTune(head_lr_mult=0.1, warmup_epochs=1.0, warmup_start=0.01)
    optimizer, schedule = _optimizer(net, opts, Phase("unfrozen", 3, False), 15, tune=tune, epoch=5)
    peak = [LR * 0.1, LR * MULT]  # head, backbone
    assert _lrs(optimizer) == pytest.approx([p * 0.01 for p in peak])  # the first step's LR
    seen = []
    for _ in range(15):
        seen.append(_lrs(optimizer))
        optimizer.step()
        schedule.step()
    assert seen[5] == pytest.approx(peak)  # warmed up after one epoch (5 steps)
    heads = [lr[0] for lr in seen]
    assert heads[:6] == sorted(heads[:6]) and heads[5:] == sorted(heads[5:], reverse=True)
    assert heads[-1] < 0.05 * peak[0]  # decayed nearly to 0 by the last step
    # the frozen phase keeps its one-cycle schedule at the full head LR
    optimizer, _ = _optimizer(net, opts, Phase("frozen", 3, True), 15, tune=tune, epoch=5)
    assert _lrs(optimizer) == pytest.approx([LR / 25])
    # no fine-tune settings: the unfrozen phase restarts a one-cycle schedule as before
    optimizer, _ = _optimizer(net, opts, Phase("unfrozen", 3, False), 15, epoch=5)
    assert _lrs(optimizer) == pytest.approx([LR / 25, LR * MULT / 25])


def test_warmup_is_clipped_so_that_short_phases_still_decay():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = warmup_cosine(optimizer, total_steps=2, warmup_steps=10, start=0.1)
    lrs = []
    for _ in range(2):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs == pytest.approx([0.1, 1.0])
    optimizer = torch.optim.SGD([param], lr=1.0)
    warmup_cosine(optimizer, total_steps=4, warmup_steps=0, start=0.1)
    assert optimizer.param_groups[0]["lr"] == 1.0  # no warm-up: the decay starts at the peak


def test_fine_tuning_keeps_batchnorm_statistics_and_trains_the_backbone(fm_data, tmp_path):
    torch.manual_seed(0)
    backbone = nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=4, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    recipe = ClassifierRecipe(3, freeze_bn=True, fine_tune=FineTune())
    net = _net(recipe, backbone)
    bn = backbone[1]
    stats = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    conv = backbone[0].weight.detach().clone()
    phases = [Phase("frozen", 1, True), Phase("unfrozen", 2, False)]
    opts = LoopOptions(batch_size=8, lr=LR, backbone_lr_mult=MULT)
    fit(net, recipe, fm_data, phases, opts, out_dir=tmp_path, meta={}, progress=NoProgress())
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert int(bn.num_batches_tracked) == stats[2]
    assert not torch.equal(backbone[0].weight, conv)  # the backbone was fine-tuned


def test_cached_features_and_the_live_path_give_the_same_logits(fm_data):
    net = _net(ClassifierRecipe(3))
    cached = _features(net, fm_data.train_plain, LoopOptions(batch_size=8))
    images = torch.stack([fm_data.train_plain[i][0] for i in range(len(fm_data.train_plain))])
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net.head(cached.tensors[0]), net(images), atol=1e-5)


def test_light_augmentation_is_the_plain_crop_or_its_mirror(fm_data):
    torch.manual_seed(0)
    flips = 0
    for i in range(len(fm_data.train)):
        plain, augmented = fm_data.train_plain[i][0], fm_data.train[i][0]
        mirrored = torch.flip(plain, dims=[2])
        assert torch.equal(augmented, plain) or torch.equal(augmented, mirrored)
        flips += int(torch.equal(augmented, mirrored) and not torch.equal(plain, mirrored))
    assert 0 < flips < len(fm_data.train)


def test_the_config_builds_the_fine_tuning_it_names():
    cfg = ClassifierConfig(fine_tune_lr_mult=0.2, warmup_epochs=0.5, augment="full")
    built = get_recipe("classifier").build(cfg, ["a", "b"], home=None)  # type: ignore[arg-type]
    assert built.recipe.fine_tune == FineTune(head_lr_mult=0.2, warmup_epochs=0.5)
    assert built.transforms is None  # full: the loop's own augmentation
    default = get_recipe("classifier").build(ClassifierConfig(), ["a", "b"], home=None)  # type: ignore[arg-type]
    assert default.transforms is light_transforms and default.recipe.freeze_bn
    with pytest.raises(ConfigError, match="light, full"):
        ClassifierConfig(augment="heavy")
    with pytest.raises(ConfigError, match="warmup_epochs"):
        ClassifierConfig(warmup_epochs=-1)
