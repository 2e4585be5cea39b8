"""Zero-shot with class attributes end to end: ingest stores the AwA2 predicate matrix the
Fashion-MNIST sample writes, DeViSE trains onto it (``--vectors attributes``), and the
semantic use cases answer by class rows and by predicate texts."""

import pytest

from embplat.ingest.fashion_mnist import DEFAULT_FMNIST_DIR, build_fashion_mnist
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.semantic import label_images, search_by_text
from embplat.pipelines.train import train_recipe

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
    with pytest.raises(Exception, match="neither a class"):
        search_by_text(ctx, "qxzvwk", k=5, model=name)


def test_a_malformed_matrix_is_reported_and_the_images_still_ingested(home, tmp_path):
    ctx, _, _ = home
    copy = build_fashion_mnist(tmp_path / "more", per_class=2, classes=["bag"], offset=40)
    (copy.parent / "predicate-matrix-continuous.txt").write_text("1 2 3\n", encoding="utf-8")
    result = ingest_tree(ctx, copy, embed=False)
    assert result.added == 2 and not result.attributes
    assert any("class attributes not loaded" in w and "3 values" in w for w in result.warnings)
