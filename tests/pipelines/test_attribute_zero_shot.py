"""Zero-shot with class attributes end to end: ingest stores the AwA2 predicate matrix the
Fashion-MNIST sample writes, DeViSE trains onto it (``--vectors attributes``), and the
semantic use cases answer by class rows and by predicate texts."""

import numpy as np
import pytest
import torch

from embplat.catalog import repo
from embplat.errors import DataError
from embplat.ingest.fashion_mnist import (
    DEFAULT_FMNIST_DIR,
    FASHION_MNIST_ATTRIBUTES,
    FASHION_MNIST_PREDICATES,
    build_fashion_mnist,
)
from embplat.ingest.images import load_rgb
from embplat.models.checkpoints import load_checkpoint, load_trained_encoder
from embplat.models.wordvectors import VectorSource, open_vectors, resolve_source
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.semantic import label_images, search_by_text
from embplat.pipelines.train import train_recipe
from embplat.pipelines.zero_shot_classes import add_zero_shot_class

SEEN = ["trouser", "bag", "sneaker"]


@pytest.fixture
def home(tmp_path, context_factory):
    if not (DEFAULT_FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    root = build_fashion_mnist(
        tmp_path / "data", per_class=16, classes=[*SEEN, "sandal"], unseen=["sandal"]
    )
    ctx = context_factory("exact", encoder="tiny_cnn", **{"ingest.valid_fraction": 0.3})
    return ctx, root, ingest_tree(ctx, root, embed=False)


def test_ingest_keeps_the_predicate_matrix_and_devise_trains_onto_it(home):
    ctx, root, result = home
    assert result.attributes.startswith("attributes (23 predicates")
    config = {"encoder": "tiny_cnn", "image_size": 32, "batch_size": 8, "lr": 1e-2}
    config |= {"device": "cpu", "vectors": "attributes", "plots": False}
    name = train_recipe(ctx, "devise", {**config, "freeze_epochs": 2, "unfreeze_epochs": 1})
    space = ctx.spaces.space(name)
    assert space.encoder.dim == 23  # regressed onto the 23 predicates
    labels = space.index.count({"kind": "label"})
    assert labels == 4  # the unseen sandal has its row too

    sandal = sorted((root / "sandal").iterdir())[0]
    [pred] = label_images(ctx, [sandal], k=4, model=name)
    assert {c.label for c in pred.candidates} == {*SEEN, "sandal"}
    hits, used = search_by_text(ctx, "sandal", k=5, model=name)
    assert used == name and len(hits) == 5
    by_predicates, _ = search_by_text(ctx, "footwear open straps", k=5, model=name)
    assert len(by_predicates) == 5
    with pytest.raises(DataError, match="neither a class"):
        search_by_text(ctx, "qxzvwk", k=5, model=name)

    # a new zero-shot class by its attributes: in the model's table and the home's current
    with pytest.raises(DataError, match="--zero-shot --attributes"):
        add_zero_shot_class(ctx, "coat")
    before = _vectors(ctx, name)
    coat = dict(zip(FASHION_MNIST_PREDICATES, FASHION_MNIST_ATTRIBUTES["coat"], strict=True))
    added = add_zero_shot_class(ctx, "coat", {k: v for k, v in coat.items() if v})
    assert added == {"class": "coat", "role": "unseen", "models": [name]}
    after = _vectors(ctx, name)
    assert (
        after["path"] != before["path"]
        and resolve_source("attributes", ctx.home).as_dict() == after
    )
    old = open_vectors(VectorSource.from_dict(before))
    assert old.vector("coat") is None and old.vector("sandal") is not None  # left as it was
    new = open_vectors(VectorSource.from_dict(after))
    assert new.vector("coat").tolist() == [float(v) for v in FASHION_MNIST_ATTRIBUTES["coat"]]
    assert space.index.count({"kind": "label"}) == 5
    [pred] = label_images(ctx, [sandal], k=5, model=name)
    assert "coat" in {c.label for c in pred.candidates}
    with pytest.raises(DataError, match="already has other attributes"):
        add_zero_shot_class(ctx, "coat", {"footwear": 100})
    assert _vectors(ctx, name) == after  # a refused row changes nothing


def _vectors(ctx, model):
    with ctx.sessions() as session:
        return repo.get_model(session=session, name=model).config["vectors"]


def test_a_malformed_matrix_is_reported_and_the_images_still_ingested(home, tmp_path):
    ctx, _, _ = home
    copy = build_fashion_mnist(tmp_path / "more", per_class=2, classes=["bag"], offset=40)
    (copy.parent / "predicate-matrix-continuous.txt").write_text("1 2 3\n", encoding="utf-8")
    result = ingest_tree(ctx, copy, embed=False)
    assert result.added == 2 and not result.attributes
    assert any("class attributes not loaded" in w and "3 values" in w for w in result.warnings)


def test_a_ridge_projection_onto_attributes_is_fitted_in_closed_form(tmp_path, context_factory):
    """``train devise --projection ridge``: one closed-form epoch, alpha chosen over splits of
    the 5 seen classes, recorded with the model; the zero-shot use cases answer with it."""
    if not (DEFAULT_FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    seen = ["trouser", "bag", "sneaker", "dress", "pullover"]
    root = build_fashion_mnist(
        tmp_path / "data", per_class=12, classes=[*seen, "sandal"], unseen=["sandal"]
    )
    ctx = context_factory("exact", encoder="tiny_cnn", **{"ingest.valid_fraction": 0.3})
    ingest_tree(ctx, root, embed=False)
    config = {"encoder": "tiny_cnn", "image_size": 32, "device": "cpu", "plots": False}
    config |= {"vectors": "attributes", "projection": "ridge", "stage1_epochs": 0}
    name = train_recipe(ctx, "devise", {**config, "unfreeze_epochs": 0})
    record = _record(ctx, name)
    assert [e["phase"] for e in record["epochs"]] == ["ridge"]
    projection = record["projection"]
    assert projection["method"] == "ridge" and projection["chosen"] == "cv"
    assert projection["alpha"] in {float(a) for a in projection["cv_scores"]}
    assert projection["cv_scores"][f"{projection['alpha']:g}"] == max(
        projection["cv_scores"].values()
    )
    assert record["gzsl_calibration"]["gamma"] is not None
    sandal = sorted((root / "sandal").iterdir())[0]
    [pred] = label_images(ctx, [sandal], k=6, model=name)
    assert {c.label for c in pred.candidates} == {*seen, "sandal"}

    given = train_recipe(ctx, "devise", {**config, "ridge_alpha": 0.5, "unfreeze_epochs": 1})
    record = _record(ctx, given)
    assert [e["phase"] for e in record["epochs"]] == ["ridge", "unfrozen"]
    assert (record["projection"]["chosen"], record["projection"]["alpha"]) == ("given", 0.5)

    # multilevel features: the projection reads resnet18's pooled layer2-4 maps (128 + 256 +
    # 512 channels); the checkpoint rebuilds them, and the index holds what it encodes
    multi = {**config, "encoder": "resnet18", "weights": "random", "features": "multilevel"}
    name = train_recipe(ctx, "devise", {**multi, "unfreeze_epochs": 0})
    record = _record(ctx, name)
    checkpoint = ctx.home / record["checkpoint"]
    assert load_checkpoint(checkpoint)["encoder"]["features"] == "multilevel"
    assert load_checkpoint(checkpoint)["encoder"]["dim"] == 512 + 256 + 128
    encoder = load_trained_encoder(checkpoint, device="cpu")
    assert encoder.dim == 23
    space = ctx.spaces.space(name)
    with ctx.sessions() as session:
        paths = {i: p for i, p, _, _ in repo.labelled_images(session=session, splits=["test"])}
        rows = repo.embedded_images(
            session=session, collection_id=space.collection_id, splits=["test"]
        )
    image_id, point = rows[0][0], rows[0][3]
    stored = np.asarray(space.index.get([point])[0], np.float32)[0]
    batch = torch.stack([encoder.prepare(load_rgb(paths[image_id], max_pixels=10**7))])
    np.testing.assert_allclose(encoder.encode_uint8(batch)[0], stored, atol=1e-4)


def _record(ctx, model):
    with ctx.sessions() as session:
        return repo.get_model(session=session, name=model).config
