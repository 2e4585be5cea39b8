"""DeViSE end to end on a tiny real set: train both recipes, zero-shot, text search, GZSL.

One module-scoped run trains a classifier and a DeViSE model (seeded tiny CNN at 32 px) on
three seen Fashion-MNIST classes, with sandal unseen; the tests then check what was recorded
and exercise the semantic use cases against the real index.
"""

import json

import numpy as np
import pytest

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.config import load_settings
from embplat.errors import ConfigError, DataError, NotFoundError
from embplat.ingest.fashion_mnist import DEFAULT_FMNIST_DIR, build_fashion_mnist
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.semantic import label_images, search_by_text
from embplat.pipelines.train import train_recipe
from embplat.pipelines.zero_shot_classes import add_zero_shot_class
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
    cal = config["gzsl_calibration"]  # chosen from the 3 seen classes: 3 splits, 1 held out
    assert cal["method"] == "class-split-cv" and cal["holdout"] == 1
    assert len(cal["fold_gammas"]) == len(cal["fold_h"]) <= 3
    assert min(cal["fold_gammas"]) <= cal["gamma"] <= max(cal["fold_gammas"])
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
    stored = r["stored_calibration"]  # the training-time gamma, on all held-out images
    assert stored["gamma"] == _record(ctx, devise)[2]["gzsl_calibration"]["gamma"]
    assert stored["method"] == "class-split-cv" and stored["notes"] == []
    assert set(stored) >= {"seen", "unseen", "H"} and 0 <= stored["H"] <= 1
    assert all(p.endswith(".png") for p in r["plots"]) and len(r["plots"]) == 3
    hub = r["hubness"]  # labels rescored against the space's images, as classify does
    assert set(hub) == {"csls", "isoftmax"} and hub["isoftmax"]["zsl_top1"] == 1.0
    assert hub["isoftmax"]["zsl_per_class_top1"] == {"sandal": 1.0}
    assert all(0 <= h["gzsl"]["H"] <= 1 for h in hub.values())
    # a label near every image is demoted: the unseen label wins more of its images
    assert hub["isoftmax"]["gzsl"]["unseen"] >= g["unseen"]


def _scores(pred):
    return {c.label: c.score for c in pred.candidates}


def test_classification_applies_the_stored_gamma_unless_told_otherwise(trained):
    ctx, root, _, devise = trained
    gamma = _record(ctx, devise)[2]["gzsl_calibration"]["gamma"]
    sandal = sorted((root / "sandal").iterdir())[1]
    [raw] = label_images(ctx, [sandal], k=10, gamma=0.0)
    [default] = label_images(ctx, [sandal], k=10)
    assert default.gamma == gamma and raw.gamma == 0.0 and default.notes == []
    for label, score in _scores(default).items():  # seen labels lose exactly gamma
        shift = gamma if label in SEEN else 0.0
        assert score == pytest.approx(_scores(raw)[label] - shift, abs=2e-6)
    assert default.label == max(_scores(default), key=_scores(default).get)
    [forced] = label_images(ctx, [sandal], k=10, gamma=3.0)  # an explicit value wins
    assert forced.gamma == 3.0 and forced.role == "unseen" and forced.label not in SEEN
    assert default.as_dict()["gamma"] == gamma  # reported in the JSON-ready form


def test_a_model_without_stored_calibration_gets_gamma_0_and_a_note(trained):
    ctx, root, _, devise = trained
    with transaction(ctx.sessions) as session:
        record = repo.get_model(session=session, name=devise)
        kept = dict(record.config)
        record.config = {k: v for k, v in kept.items() if k != "gzsl_calibration"}
    try:
        [pred] = label_images(ctx, [sorted((root / "sandal").iterdir())[0]])
        assert pred.gamma == 0.0 and "no stored GZSL calibration" in pred.notes[0]
        assert evaluate_zero_shot(ctx, plots=False)["stored_calibration"]["gamma"] == 0.0
    finally:
        with transaction(ctx.sessions) as session:
            repo.get_model(session=session, name=devise).config = kept


def test_hubness_correction_rescores_classification_and_text_search(trained):
    ctx, root, _, devise = trained
    sandal = sorted((root / "sandal").iterdir())[0]
    [csls] = label_images(ctx, [sandal], k=3, hubness="csls")
    assert csls.hubness == "csls" and csls.gamma == 0.0 and "not applied" in csls.notes[0]
    [explicit] = label_images(ctx, [sandal], k=3, hubness="isoftmax", gamma=0.1)
    assert explicit.gamma == 0.1 and explicit.notes == [] and len(explicit.candidates) == 3
    default, _ = search_by_text(ctx, "bag", k=5)  # text search corrects hubs by default
    assert default == search_by_text(ctx, "bag", k=5, hubness="isoftmax")[0]
    plain, _ = search_by_text(ctx, "bag", k=5, hubness="none")  # the index's own top-k
    assert len(plain) == 5 and plain[0].score >= plain[-1].score
    fixed, used = search_by_text(ctx, "bag", k=5, hubness="csls")
    assert used == devise and len(fixed) == 5 and all(h.path.endswith(".jpg") for h in fixed)
    assert [h.score for h in fixed] == sorted((h.score for h in fixed), reverse=True)
    test_only, _ = search_by_text(ctx, "bag", k=50, hubness="isoftmax", flt={"split": "test"})
    assert {h.label for h in test_only} == {"sandal"}  # the filter holds on the scan path
    with pytest.raises(ConfigError, match="unknown hubness"):
        label_images(ctx, [sandal], hubness="zca")


def test_query_expansion_searches_again_from_the_best_images(trained):
    from embplat.pipelines.semantic import label_space
    from embplat.pipelines.semantic_scores import image_points, label_points, text_scores

    ctx, _, _, devise = trained
    space, images = ctx.spaces.space(devise), {"kind": "image"}
    label = label_space(ctx, devise).vector("sandal")
    [best] = space.index.search(label[None, :], 1, images)[0]
    # expanding from the one best image is an image search with that image's vector
    [vector], _ = space.index.get([best.id])
    expected = space.index.search(vector[None, :], 5, images)[0]
    again, _ = search_by_text(ctx, "sandal", k=5, hubness="none", expand=1)
    assert [h.image_id for h in again] == [h.payload["image_id"] for h in expected]
    assert again[0].image_id == best.payload["image_id"] and again[0].score > 0.99
    assert again != search_by_text(ctx, "sandal", k=5, hubness="none")[0]
    # with the hubness scan the query is the unit mean of the best images, scored against
    # the label set without the text's own label
    scanned, _ = search_by_text(ctx, "sandal", k=3, hubness="isoftmax")
    points = image_points(ctx, space, images)
    ids = [p["image_id"] for p in points.payloads]
    query = points.vectors[[ids.index(h.image_id) for h in scanned]].mean(0)
    labels = label_points(space, {"kind": "label"}).vectors
    others = labels[labels @ label < 0.9999]
    scores = text_scores(query / np.linalg.norm(query), points.vectors, others, "isoftmax")
    expanded, _ = search_by_text(ctx, "sandal", k=3, expand=3)
    assert [h.image_id for h in expanded] == [ids[i] for i in np.argsort(-scores)[:3]]
    assert len(others) == len(labels) - 1 and expanded != scanned
    assert search_by_text(ctx, "sandal", k=3, expand=0)[0] == scanned
    with pytest.raises(DataError, match="--expand"):
        search_by_text(ctx, "sandal", expand=-1)
