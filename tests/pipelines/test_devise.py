"""DeViSE end to end on a tiny real set: train both recipes, zero-shot, text search, GZSL.

One module-scoped run trains a classifier and a DeViSE model (seeded tiny CNN at 32 px) on
three seen Fashion-MNIST classes, with sandal unseen; the tests then check what was recorded
and exercise the semantic use cases against the real index.
"""

import json

import numpy as np
import pytest

from embplat.catalog import repo
from embplat.config import load_settings
from embplat.errors import DataError, NotFoundError
from embplat.ingest.fashion_mnist import DEFAULT_FMNIST_DIR, build_fashion_mnist
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.semantic import add_zero_shot_class, label_images, search_by_text
from embplat.pipelines.train import train_recipe
from embplat.pipelines.zeroshot import evaluate_zero_shot
from embplat.workers.context import build_context

SEEN = ["trouser", "bag", "sneaker"]
COMMON = {"encoder": "tiny_cnn", "image_size": 32, "batch_size": 8, "lr": 1e-2, "device": "cpu"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A catalog with 3 seen + 1 unseen class, a classifier and a DeViSE model trained on it."""
    if not (DEFAULT_FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    base = tmp_path_factory.mktemp("devise")
    root = build_fashion_mnist(
        base / "data", per_class=24, classes=[*SEEN, "sandal"], unseen=["sandal"]
    )
    settings = load_settings(
        **{
            "home": base / "home",
            "index.backend": "exact",
            "embed.encoder": "tiny_cnn",
            "embed.num_workers": 0,
            "ingest.valid_fraction": 0.3,
        }
    )
    settings.catalog.url = None
    ctx = build_context(settings)
    ingest_tree(ctx, root, embed=False)
    classifier = train_recipe(
        ctx, "classifier", {**COMMON, "freeze_epochs": 2, "unfreeze_epochs": 2}
    )
    config = {**COMMON, "stage1_epochs": 1, "freeze_epochs": 3, "unfreeze_epochs": 2}
    devise = train_recipe(ctx, "devise", config)
    yield ctx, root, classifier, devise
    ctx.close()


def _record(ctx, name):
    with ctx.sessions() as session:
        m = repo.get_model(session=session, name=name)
        return m.kind, m.dim, m.config


def test_both_recipes_learn_and_record_their_lineage(trained):
    ctx, _, classifier, devise = trained
    assert (classifier, devise) == ("classifier-1", "devise-1")
    for name, kind, dim in ((classifier, "classifier", 64), (devise, "devise", 50)):
        got_kind, got_dim, config = _record(ctx, name)
        assert (got_kind, got_dim) == (kind, dim)
        main = [e for e in config["epochs"] if not e["phase"].startswith("stage1")]
        assert main[-1]["loss"] < main[0]["loss"]  # the loss falls...
        best = next(e for e in config["epochs"] if e["epoch"] == config["best_epoch"])
        assert best["metric"] > config["baseline"]  # ...and it beats the untrained model
        assert config["data"]["classes"] == sorted(SEEN)
        assert config["data"]["train_images"] > 30 and config["data"]["valid_images"] > 5
        assert config["collection"] == f"embplat_{name.replace('-', '_')}"
        assert (ctx.home / config["checkpoint"]).is_file()
        json.dumps(config)  # JSON all the way down (works on PostgreSQL too)
    _, _, config = _record(ctx, devise)
    phases = [e["phase"] for e in config["epochs"]]
    assert phases == ["stage1-frozen"] * 3 + ["stage1"] + ["frozen"] * 3 + ["unfrozen"] * 2
    assert len(config["label_center"]) == 50
    assert config["vectors"]["origin"] == "glove-6B-50d"
    assert (ctx.home / config["plots"][0]).stat().st_size > 10_000  # the PCA plot
    with ctx.sessions() as session:
        jobs = [j for j in repo.list_jobs(session=session) if j.kind == "train"]
    assert [j.state for j in jobs] == ["succeeded", "succeeded"]


def test_trained_models_have_their_own_space_and_the_default_is_unchanged(trained):
    ctx, _, classifier, devise = trained
    space = ctx.spaces.space(devise)
    assert space.key == devise and space.index.name == "embplat_devise_1"
    assert space.index.count({"kind": "image"}) == 96
    assert space.index.count({"kind": "label"}) >= 4
    _, payloads = space.index.get(
        [space.index.search(np.ones((1, 50)), 1, {"kind": "label"})[0][0].id]
    )
    assert payloads[0]["source"] == "glove-6B-50d" and payloads[0]["role"] in {"seen", "unseen"}
    assert (
        ctx.spaces.space().key == "tiny_cnn-random"
        and ctx.spaces.space(classifier).encoder.dim == 64
    )


def test_zero_shot_classification_text_search_and_late_labels(trained):
    ctx, root, _, devise = trained
    sandal = sorted((root / "sandal").iterdir())[0]
    [pred] = label_images(ctx, [sandal], k=4)
    assert pred.model == devise and {c.label for c in pred.candidates} == {*SEEN, "sandal"}
    [unseen_only] = label_images(ctx, [sandal], roles=["unseen"])
    assert unseen_only.label == "sandal" and unseen_only.role == "unseen"

    hits, used = search_by_text(ctx, "trousers", k=5)
    assert used == devise and len(hits) == 5 and all(h.path.endswith(".jpg") for h in hits)

    added = add_zero_shot_class(ctx, "killer+whale")  # no images needed
    assert added == {"class": "killer+whale", "role": "unseen", "models": [devise]}
    [pred] = label_images(ctx, [sandal], k=10)
    assert "killer+whale" in {c.label for c in pred.candidates}
    with pytest.raises(DataError, match="qxzvwk"):
        add_zero_shot_class(ctx, "qxzvwk")
    with pytest.raises(NotFoundError, match="not a visual-semantic model"):
        label_images(ctx, [sandal], model="classifier-1")


def test_zero_shot_evaluation_reports_zsl_and_gzsl_with_and_without_calibration(trained):
    ctx, _, _, devise = trained
    r = evaluate_zero_shot(ctx)
    assert r["model"] == devise and r["seen_classes"] == sorted(SEEN)
    assert r["unseen_classes"] == ["sandal"]  # the image-less zero-shot label is not scored
    assert r["zsl"]["top1"] == 1.0  # a single unseen label: ZSL among unseen is trivial
    g = r["gzsl"]
    assert g["unseen_images"] == 24 and g["seen_images"] > 5
    assert 0 <= g["seen"] <= 1 and 0 <= g["unseen"] <= 1
    c = r["calibrated"]
    assert c["calibration_images"] + c["eval_images"] == g["seen_images"] + g["unseen_images"]
    assert c["with"]["H"] >= 0 and set(c["without"]) == {"seen", "unseen", "H"}
    assert all(p.endswith(".png") for p in r["plots"]) and len(r["plots"]) == 2
