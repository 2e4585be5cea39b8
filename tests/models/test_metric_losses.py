import numpy as np
import pytest
import torch
from PIL import Image

from embplat.errors import ConfigError
from embplat.models.checkpoints import load_checkpoint
from embplat.models.encoders import IMAGENET_MEAN, IMAGENET_STD, get_encoder
from embplat.models.heads import Head, HeadSpec
from embplat.models.metric import (
    LOSSES,
    MetricConfig,
    MinedLoss,
    build_loss,
    make_sampler,
    make_transforms,
)
from embplat.models.recipes.metric import MetricRecipe, precision_at_1
from embplat.models.training import (
    ImageSamples,
    Phase,
    RecipeNet,
    Sample,
    TrainData,
    _optimizer,
    fit,
)
from embplat.progress import NoProgress

N_CLASSES, PER_CLASS, FEATURES = 4, 8, 32


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: extra threads only contend on a shared CPU (30x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _features(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed class-structured vectors: a random centre per class plus strong noise."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(N_CLASSES, FEATURES, generator=gen)
    labels = torch.arange(N_CLASSES).repeat_interleave(PER_CLASS)
    x = centres[labels] + 1.5 * torch.randn(len(labels), FEATURES, generator=gen)
    return x, labels


def _train(cfg: MetricConfig, head, x, labels, steps: int) -> list[float]:
    """A few full-batch steps of ``head`` and the loss's own parameters (the product loop,
    with its frozen-feature cache and schedules, is ``models.training.fit``)."""
    torch.manual_seed(cfg.seed)
    loss_fn = MinedLoss(*build_loss(cfg, N_CLASSES))
    opt = torch.optim.Adam([*head.parameters(), *loss_fn.parameters()], lr=cfg.lr)
    history = []
    head.train()
    for _ in range(steps):
        loss = loss_fn(head(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history


def _leave_one_out_p1(model, x, labels) -> float:
    model.eval()
    with torch.no_grad():
        emb = torch.nn.functional.normalize(model(x), dim=1)
    model.train()
    sims = emb @ emb.T
    sims.fill_diagonal_(-2.0)
    return (labels[sims.argmax(dim=1)] == labels).float().mean().item()


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_each_loss_falls_on_class_structured_features(loss, distance):
    if loss.endswith("arcface") and distance == "euclidean":
        with pytest.raises(ConfigError, match="cosine"):
            MetricConfig(loss=loss, distance=distance)
        return
    margin = 0.2 if loss == "triplet-epshn" else None
    cfg = MetricConfig(
        loss=loss, distance=distance, dim=16, bn=True, optimizer="adam", lr=0.01, margin=margin
    )
    torch.manual_seed(0)
    head = Head(FEATURES, HeadSpec(cfg.dim, bn=cfg.bn))
    x, labels = _features()
    before = _leave_one_out_p1(head, x, labels)
    history = _train(cfg, head, x, labels, steps=30)
    assert all(np.isfinite(history))
    assert np.mean(history[-5:]) < 0.7 * np.mean(history[:5]), history
    # EPSHN's loss reaches 0 once each anchor's easiest positive beats the next negative by
    # the margin, so also check what it optimises: the nearest neighbour's class
    assert _leave_one_out_p1(head, x, labels) >= max(before, 0.9)


@pytest.mark.parametrize("loss", ["proxynca", "arcface", "subcenter-arcface"])
def test_loss_parameters_are_optimised_and_saved(loss):
    cfg = MetricConfig(loss=loss, dim=8, loss_lr=0.05)
    loss_fn, miner = build_loss(cfg, N_CLASSES)
    assert miner is None
    recipe = MetricRecipe(cfg, N_CLASSES)
    net = RecipeNet(torch.nn.Identity(), FEATURES, recipe)
    opt, _ = _optimizer(net, cfg.loop_options("cpu"), Phase("frozen", 1, True), steps=10)
    assert len(opt.param_groups) == 2  # head, then the loss's own parameters
    loss_group = opt.param_groups[1]
    assert loss_group["max_lr"] == 0.05 and loss_group["weight_decay"] == 0.0
    (param,) = list(net.loss.parameters())
    assert param is loss_group["params"][0]
    expected_rows = N_CLASSES * (3 if loss == "subcenter-arcface" else 1)
    assert expected_rows in param.shape
    state = loss_fn.state_dict()
    assert len(state) == 1 and next(iter(state.values())).shape == param.shape

    before = param.detach().clone()
    x, labels = _features()
    _train(cfg, Head(FEATURES, HeadSpec(cfg.dim)), x, labels, steps=2)
    # build_loss reseeds, so the same config initialises the same parameters
    again, _ = build_loss(cfg, N_CLASSES)
    assert torch.equal(next(iter(again.parameters())).detach(), before)


def test_triplet_miner_picks_easy_positive_semihard_negative():
    cfg = MetricConfig(loss="triplet-epshn", margin=0.2)
    loss_fn, miner = build_loss(cfg, N_CLASSES)
    assert loss_fn.margin == 0.2 and list(loss_fn.parameters()) == []
    # anchor 0: positives at distance 0.1 (easy) and 0.5; negatives at 0.3 and 0.8.
    # semi-hard w.r.t. the easiest positive: the closest negative farther than 0.1 → 0.3
    emb = torch.tensor([[1.0, 0.0], [0.995, 0.0998], [0.877, 0.479], [0.955, 0.296], [0.7, 0.714]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    a, p, a2, n = miner(emb, labels)
    first = (a == 0).nonzero().item()
    assert (p[first].item(), n[first].item()) == (1, 3)
    assert torch.equal(a, a2)


def test_sampler_gives_m_per_class_batches():
    labels = np.repeat(np.arange(5), 6)
    np.random.seed(3)  # MPerClassSampler draws from NumPy's global generator
    sampler = make_sampler(labels, m=3, batch_size=9)
    order = list(sampler)
    assert len(order) == 27  # one pass ≈ the data, in whole batches
    for start in range(0, len(order), 9):
        counts = np.bincount(labels[order[start : start + 9]], minlength=5)
        assert sorted(counts[counts > 0].tolist()) == [3, 3, 3]
    with pytest.raises(ConfigError, match="needs 4 classes"):
        make_sampler(np.repeat(np.arange(3), 6), m=2, batch_size=8)


def test_config_validates_and_round_trips():
    cfg = MetricConfig(loss="proxynca", dim=64, scale=9.0, loss_lr=0.1, classes=("a", "b"))
    assert MetricConfig.from_dict(cfg.as_dict()) == cfg
    assert cfg.loop_options("cpu").loss_lr == 0.1
    with pytest.raises(ConfigError, match="unknown loss"):
        MetricConfig(loss="contrastive")
    with pytest.raises(ConfigError, match="multiple of m_per_class"):
        MetricConfig(batch_size=30, m_per_class=4)
    with pytest.raises(ConfigError, match="unknown MetricConfig keys"):
        MetricConfig.from_dict({"loss": "arcface", "lr_scheduler": "cos"})


def test_transforms_crop_to_the_image_size_and_test_matches_the_encoder():
    train_tf, test_tf = make_transforms(32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    img = Image.new("RGB", (50, 40), (120, 30, 200))
    img.paste((10, 200, 30), (0, 0, 25, 40))
    assert train_tf(img).shape == test_tf(img).shape == (3, 32, 32)
    encoder = get_encoder("tiny_cnn", image_size=32, device="cpu")
    assert torch.equal(test_tf(img), encoder.transform(img))


@pytest.mark.parametrize("loss", LOSSES)
def test_metric_recipe_trains_in_the_shared_loop(loss, fmnist_root, tmp_path):
    classes = sorted(p.name for p in fmnist_root.iterdir())[:4]
    train, valid = [], []
    for label, name in enumerate(classes):
        files = sorted((fmnist_root / name).iterdir())
        train += [Sample(str(p), label) for p in files[:8]]
        valid += [Sample(str(p), label) for p in files[8:12]]
    train_tf, test_tf = make_transforms(32, mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def load(path):
        return Image.open(path).convert("RGB")

    data = TrainData(
        ImageSamples(train, train_tf, load),
        ImageSamples(train, test_tf, load),
        ImageSamples(valid, test_tf, load),
    )
    cfg = MetricConfig(
        loss=loss,
        encoder="tiny_cnn",
        image_size=32,
        dim=16,
        batch_size=16,
        lr=0.01,
        freeze_epochs=6,
        unfreeze_epochs=0,
        margin=0.2 if loss == "triplet-epshn" else None,
    )
    recipe = MetricRecipe(cfg, len(classes))
    net = RecipeNet(get_encoder("tiny_cnn", device="cpu").module, 64, recipe)
    history = fit(
        net,
        recipe,
        data,
        cfg.phases(),
        cfg.loop_options("cpu"),
        out_dir=tmp_path,
        meta={"config": cfg.as_dict()},
        progress=NoProgress(),
    )
    losses = [e.loss for e in history.epochs]
    assert len(losses) == 6 and losses[-1] < losses[0], losses
    assert all(0.0 <= e.metric <= 1.0 for e in history.epochs)
    saved = load_checkpoint(tmp_path / "epoch_6.pt")["state_dict"]
    loss_keys = sorted(k for k in saved if k.startswith("loss."))
    expected = {"triplet-epshn": [], "proxynca": ["loss.loss.proxies"]}.get(loss, ["loss.loss.W"])
    assert loss_keys == expected
    for key in loss_keys:  # the trained proxies / class weights, not their initial values
        assert torch.equal(saved[key], net.state_dict()[key].cpu())
        assert not torch.equal(saved[key], recipe.build_loss().state_dict()[key[5:]])


def test_precision_at_1_by_hand():
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 1.0], [0.8, 0.3]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    # angles 0°, 6.3°, 90°, 78.7°, 20.6°: nearest others 0→1 ✓, 1→0 ✓, 2→3 ✓, 3→2 ✓, 4→1 ✗
    assert precision_at_1(emb, labels, chunk=2) == pytest.approx(4 / 5)
    assert precision_at_1(emb[:1], labels[:1]) != precision_at_1(emb[:1], labels[:1])  # NaN
