"""The generic training loop, the recipes' losses and configs, checkpoints as encoders."""

import functools
import json
import math

import numpy as np
import pytest
import torch

from embplat.errors import ConfigError
from embplat.ingest.fashion_mnist import DEFAULT_FMNIST_DIR, build_fashion_mnist
from embplat.ingest.images import load_rgb
from embplat.models.checkpoints import load_checkpoint, load_trained_encoder
from embplat.models.encoders import get_backbone
from embplat.models.recipes import make_config
from embplat.models.recipes.classifier import ClassifierRecipe
from embplat.models.recipes.devise import CosineLoss, DeviseConfig, DeviseRecipe, HingeRankLoss
from embplat.models.samples import ImageSamples, Sample, TrainData, eval_transform, train_transform
from embplat.models.training import EpochResult, LoopOptions, Phase, RecipeNet, best_epoch, fit
from embplat.progress import NoProgress

CLASSES = ["trouser", "bag", "sneaker"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """16 train + 6 valid Fashion-MNIST images of 3 classes, as (path, label) samples."""
    if not (DEFAULT_FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    root = build_fashion_mnist(tmp_path_factory.mktemp("fm3"), per_class=22, classes=CLASSES)
    train, valid = [], []
    for label, name in enumerate(CLASSES):
        files = sorted((root / name).iterdir())
        train += [Sample(str(p), label) for p in files[:16]]
        valid += [Sample(str(p), label) for p in files[16:]]
    backbone = get_backbone("tiny_cnn")
    loader = functools.partial(load_rgb, max_pixels=10_000_000)
    plain = eval_transform(32, backbone.mean, backbone.std)
    return TrainData(
        ImageSamples(train, train_transform(32, backbone.mean, backbone.std), loader),
        ImageSamples(train, plain, loader),
        ImageSamples(valid, plain, loader),
    )


def _fit(recipe, data, tmp_path, phases, **opts):
    backbone = get_backbone("tiny_cnn")
    torch.manual_seed(0)
    net = RecipeNet(backbone.module, backbone.dim, recipe)
    meta = {
        "model": "m",
        "recipe": recipe.name,
        "config": {},
        "classes": CLASSES,
        "head": recipe.head.__dict__,
        "encoder": {
            "name": "tiny_cnn",
            "weights": "random",
            "image_size": 32,
            "dim": backbone.dim,
            "mean": list(backbone.mean),
            "std": list(backbone.std),
        },
    }
    options = LoopOptions(batch_size=8, lr=1e-2, backbone_lr_mult=0.3, **opts)
    history = fit(
        net, recipe, data, phases, options, out_dir=tmp_path, meta=meta, progress=NoProgress()
    )
    return net, history


def test_classifier_loss_falls_and_beats_the_untrained_head(tiny_data, tmp_path):
    phases = [Phase("frozen", 3, True), Phase("unfrozen", 3, False)]
    _, history = _fit(ClassifierRecipe(3), tiny_data, tmp_path, phases)
    losses = [r.loss for r in history.epochs]
    assert [r.epoch for r in history.epochs] == [1, 2, 3, 4, 5, 6]
    assert losses[-1] < losses[0]
    best = best_epoch(history.epochs)
    assert best.metric > history.baseline + 0.2  # learned beats untrained on valid accuracy
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pt")) == [
        f"epoch_{n}.pt" for n in range(1, 7)
    ]
    ckpt = load_checkpoint(best.checkpoint)
    assert ckpt["epoch"] == best.epoch and ckpt["metrics"]["metric"] == best.metric


def test_devise_projection_learns_and_exports_a_semantic_encoder(tiny_data, tmp_path):
    from embplat.models.wordvectors import VectorSource, label_matrix, open_vectors

    vectors = label_matrix(open_vectors(VectorSource()), CLASSES)
    recipe = DeviseRecipe(vectors)
    phases = [Phase("frozen", 3, True), Phase("unfrozen", 2, False)]
    net, history = _fit(recipe, tiny_data, tmp_path, phases, cache_frozen=False)
    assert history.epochs[-1].loss < history.epochs[0].loss
    assert best_epoch(history.epochs).metric > history.baseline
    encoder = load_trained_encoder(history.epochs[-1].checkpoint, name="dv", device="cpu")
    assert encoder.key == "dv" and encoder.dim == 50 and encoder.image_size == 32
    batch = torch.stack([tiny_data.valid[i][0] for i in range(4)])
    net.eval()
    with torch.no_grad():
        expected = torch.nn.functional.normalize(net(batch), dim=1).numpy()
    assert np.allclose(encoder.encode_images(batch), expected, atol=1e-5)


def test_a_closed_form_phase_sets_the_projection_by_ridge_then_fine_tuning_goes_on(
    tiny_data, tmp_path
):
    from embplat.models.wordvectors import VectorSource, label_matrix, open_vectors

    vectors = label_matrix(open_vectors(VectorSource()), CLASSES)
    recipe = DeviseRecipe(vectors, ridge_alpha=0.1)
    phases = [Phase("ridge", 1, True, closed_form=True), Phase("unfrozen", 1, False)]
    _, history = _fit(recipe, tiny_data, tmp_path, phases)
    first, second = history.epochs
    assert (first.epoch, first.phase, second.phase) == (1, "ridge", "unfrozen")
    assert recipe.projection["method"] == "ridge" and recipe.projection["alpha"] == 0.1
    assert first.metric > history.baseline  # the fit itself, before any SGD step
    # the ridge epoch's checkpoint holds the closed-form head: the least-squares map itself
    state = load_checkpoint(first.checkpoint)["state_dict"]
    from embplat.models.ridge_head import fit_ridge_head

    backbone = get_backbone("tiny_cnn")
    torch.manual_seed(0)
    fresh = RecipeNet(backbone.module, backbone.dim, DeviseRecipe(vectors))
    fresh.load_state_dict(state)
    fresh.eval()
    with torch.no_grad():
        feats = torch.cat([fresh.backbone(tiny_data.train_plain[i][0][None]) for i in range(48)])
    labels = np.array([tiny_data.train_plain[i][1] for i in range(48)])
    weight, bias = fit_ridge_head(feats.numpy(), labels, recipe.vectors.numpy(), alpha=0.1).linear()
    np.testing.assert_allclose(fresh.head.linear.weight.detach().numpy(), weight, atol=1e-4)
    np.testing.assert_allclose(fresh.head.linear.bias.detach().numpy(), bias, atol=1e-4)


def test_a_closed_form_phase_needs_a_recipe_that_fits_its_head(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="fit_head"):
        _fit(ClassifierRecipe(3), tiny_data, tmp_path, [Phase("ridge", 1, True, closed_form=True)])


def test_losses_are_zero_exactly_when_they_should_be():
    targets = torch.eye(3)
    labels = torch.tensor([0, 1, 2])
    assert CosineLoss(targets)(targets * 5, labels).item() == pytest.approx(0.0, abs=1e-6)
    hinge = HingeRankLoss(targets, margin=0.1)
    assert hinge(targets, labels).item() == 0.0  # true score 1, others 0: margin met
    wrong = targets[[1, 2, 0]]
    # per image: the label it points at (0.1 + 1) and the third label (0.1 + 0)
    assert hinge(wrong, labels).item() == pytest.approx(1.2)


def test_best_epoch_prefers_the_later_of_ties_and_ignores_nan():
    rows = [EpochResult(i, "p", 1.0, m, 1.0, 1.0) for i, m in enumerate([0.5, 0.7, 0.7, math.nan])]
    assert best_epoch(rows).epoch == 2


def test_configs_are_frozen_json_round_trips_and_refuse_unknown_keys():
    cfg = make_config("devise", {"loss": "hinge", "classes": ["bag", "coat"], "stage1_epochs": 0})
    assert isinstance(cfg, DeviseConfig) and cfg.classes == ("bag", "coat")
    data = json.loads(json.dumps(cfg.as_dict()))
    assert make_config("devise", data) == cfg
    with pytest.raises(AttributeError):
        cfg.lr = 1.0  # type: ignore[misc]
    with pytest.raises(ConfigError, match="unknown DeviseConfig keys"):
        make_config("devise", {"epochs": 3})
    with pytest.raises(ConfigError, match="cosine, hinge"):
        make_config("devise", {"loss": "l2"})
    with pytest.raises(ConfigError, match="trained, ridge"):
        make_config("devise", {"projection": "lasso"})
    with pytest.raises(ConfigError, match=r"-0\.5"):
        make_config("devise", {"projection": "ridge", "ridge_alpha": -0.5})
    ridge = make_config("devise", {"projection": "ridge", "freeze_epochs": 0, "unfreeze_epochs": 0})
    assert [(p.name, p.epochs, p.closed_form) for p in ridge.phases()] == [
        ("ridge", 1, True),
        ("unfrozen", 0, False),
    ]
    with pytest.raises(ConfigError, match="at least one epoch"):
        make_config("devise", {"freeze_epochs": 0, "unfreeze_epochs": 0})
    with pytest.raises(ConfigError, match="unknown recipe"):
        make_config("gan", None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_with_mixed_precision(tiny_data, tmp_path):
    phases = [Phase("frozen", 1, True), Phase("unfrozen", 1, False)]
    net, history = _fit(ClassifierRecipe(3), tiny_data, tmp_path, phases, device="cuda", amp=True)
    assert next(net.parameters()).is_cuda
    assert all(math.isfinite(r.loss) for r in history.epochs)
    encoder = load_trained_encoder(history.epochs[-1].checkpoint, name="gpu", device="cuda")
    assert encoder.encode_images(tiny_data.valid[0][0][None]).shape == (1, 64)
