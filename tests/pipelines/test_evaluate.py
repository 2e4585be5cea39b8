"""``platform evaluate``'s use case: one path for the kNN evaluation (the index's neighbours)
and the full one (exact search beside the index, recorded metrics), on real ingested images."""

import pytest

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import ConfigError, DataError
from embplat.pipelines.evaluate import EvaluationRequest, evaluate
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.stored_vectors import open_space

SEEN = {"t-shirt", "trouser", "pullover", "dress", "coat", "sneaker", "bag", "ankle+boot"}


@pytest.fixture
def tiny(context_factory, fmnist_root):
    """The tiny seeded encoder over the exact index: the index's neighbours are exact."""
    ctx = context_factory("exact", encoder="tiny_cnn")
    ingest_tree(ctx, fmnist_root)
    return ctx


def _recorded(ctx, name):
    with ctx.sessions() as session:
        return repo.model_metrics(session=session, names=[name]).get(name, {})


@pytest.mark.parametrize(("split", "reference"), [("valid", None), ("test", "test")])
def test_knn_and_full_evaluations_agree_on_the_same_space(tiny, split, reference):
    knn = evaluate(tiny, EvaluationRequest(split=split, reference=reference, k=5))
    key = knn["model"]
    assert _recorded(tiny, key) == {}  # the kNN evaluation records nothing
    full = evaluate(tiny, EvaluationRequest(split=split, reference=reference, k=5, full=True))
    by_name = evaluate(tiny, EvaluationRequest(split=split, reference=reference, k=5, model=key))

    m = full["metrics"]
    assert knn["accuracy"] == pytest.approx(m["knn_accuracy@5"])
    for name in ("precision_at_1", "r_precision", "mean_average_precision_at_r"):
        assert knn[name] == pytest.approx(m[name])
        assert full["ann"]["delta"][name] == pytest.approx(0.0, abs=1e-9)
    assert knn["confusion"] == full["confusion"]
    for name, row in knn["per_class"].items():
        assert {c: full["per_class"][name][c] for c in row} == pytest.approx(row)
    assert (knn["queries"], knn["references"]) == (full["queries"], full["references"])
    assert by_name["metrics"] == pytest.approx(m)
    recorded = _recorded(tiny, key)
    assert recorded[f"{split}/precision_at_1"] == pytest.approx(m["precision_at_1"])
    assert full["recorded"] == len([n for n in recorded if n.startswith(f"{split}/")])


def test_the_knn_evaluation_reports_the_vote_and_recall(tiny):
    m = evaluate(tiny, EvaluationRequest(split="valid", k=5))
    assert (m["split"], m["reference"], m["k"], m["weighted"]) == ("valid", "train", 5, False)
    assert {"recall@1", "recall@5", "recall@10"} <= set(m) and "metrics" not in m
    assert m["recall@1"] == pytest.approx(m["precision_at_1"])
    assert m["recall@1"] <= m["recall@5"] <= m["recall@10"]
    assert set(m["per_class"]) <= SEEN
    unseen = evaluate(tiny, EvaluationRequest(split="test", k=3))  # test → itself
    assert unseen["reference"] == "test" and set(unseen["per_class"]) <= {"sandal", "shirt"}


def test_evaluating_the_active_encoder_builds_no_encoder(tiny, context_factory):
    evaluate(tiny, EvaluationRequest(k=3))  # registers the encoder's rows
    again = context_factory("exact", encoder="tiny_cnn", home=tiny.home)

    def no_encoder():
        raise AssertionError("the encoder was built")

    again.spaces.make_encoder = no_encoder
    space = open_space(again)
    assert space.key == evaluate(again, EvaluationRequest(k=3, full=True))["model"]
    assert space.index.count({"kind": "image"}) == 120


def test_requests_that_cannot_be_evaluated_name_the_problem(tiny):
    with pytest.raises(DataError, match="--reference must be one of"):
        evaluate(tiny, EvaluationRequest(reference="trian"))
    with pytest.raises(ConfigError, match="zebra"):
        evaluate(tiny, EvaluationRequest(unknown=("zebra",)))
    with transaction(tiny.sessions) as session:  # a pretrained encoder, not the active one
        repo.ensure_model(
            session=session,
            name="resnet18-imagenet",
            kind="encoder",
            encoder="resnet18",
            weights="imagenet",
            dim=512,
            image_size=224,
            config={},
        )
    with pytest.raises(ConfigError, match="pretrained encoder that is not the active one"):
        evaluate(tiny, EvaluationRequest(model="resnet18-imagenet"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["exact", "nmslib", "qdrant"])
def test_evaluate_through_each_backend(context_factory, fmnist_root, backend):
    ctx = context_factory(backend)
    ingest_tree(ctx, fmnist_root)
    m = evaluate(ctx, EvaluationRequest(split="valid", k=5))
    assert m["queries"] > 0 and m["references"] > m["queries"]
    assert m["accuracy"] > 0.5 and m["precision_at_1"] > 0.5  # 8 seen classes: chance 0.125
    assert (
        0 < m["mean_average_precision_at_r"] <= m["r_precision"] + 1e-9
        or m["mean_average_precision_at_r"] <= 1
    )
    assert set(m["per_class"]) <= SEEN
    unseen = evaluate(ctx, EvaluationRequest(split="test", reference="test", k=3))
    assert set(unseen["per_class"]) <= {"sandal", "shirt"} and unseen["queries"] == 24
