"""The ``metric`` recipe end to end: each loss trains, registers and embeds; the unseen-class
experiment; the full evaluation with its HTML report and recorded metrics.

One module-scoped catalog: the tiny Fashion-MNIST tree (8 seen classes, sandal and shirt
unseen in the ``test`` split), a seeded tiny CNN at 32 px, the exact index.
"""

import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from embplat.catalog import repo
from embplat.config import load_settings
from embplat.errors import ConfigError, NotFoundError
from embplat.models import training
from embplat.models.encoders import get_backbone
from embplat.models.metric import MetricConfig
from embplat.models.recipes import get_recipe
from embplat.pipelines.embed import run_embed_batch
from embplat.pipelines.evaluate import EvaluationRequest, evaluate
from embplat.pipelines.experiment import (
    EXPERIMENT_SPLIT,
    held_out,
    unseen_experiment,
)
from embplat.pipelines.ingest import enrol_class, ingest_tree
from embplat.pipelines.train import train_recipe
from embplat.pipelines.train_data import catalog_samples, make_datasets
from embplat.workers.context import build_context

COMMON = {
    "encoder": "tiny_cnn",
    "image_size": 32,
    "batch_size": 8,
    "m_per_class": 2,
    "dim": 16,
    "lr": 1e-2,
    "device": "cpu",
    "freeze_epochs": 3,
    "unfreeze_epochs": 1,
}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, fmnist_root):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add contention on a busy machine
    settings = load_settings(
        **{
            "home": tmp_path_factory.mktemp("metric") / "home",
            "index.backend": "exact",
            "embed.encoder": "tiny_cnn",
            "embed.num_workers": 0,
            "ingest.valid_fraction": 0.3,
        }
    )
    settings.catalog.url = None
    context = build_context(settings)
    ingest_tree(context, fmnist_root)  # embedded with the frozen (seeded) tiny CNN too
    yield context
    context.close()
    torch.set_num_threads(threads)


def _config(ctx, name):
    with ctx.sessions() as session:
        record = repo.get_model(session=session, name=name)
        return record.kind, record.dim, record.config


@pytest.mark.parametrize(
    ("loss", "optimizer", "expected"),
    [
        ("triplet-epshn", "sgd", torch.optim.SGD),
        ("proxynca", "adam", torch.optim.AdamW),
        ("arcface", "sgd", torch.optim.SGD),
        ("subcenter-arcface", "adam", torch.optim.AdamW),
    ],
)
def test_each_loss_trains_registers_and_embeds(ctx, monkeypatch, loss, optimizer, expected):
    built = []
    real = training._optimizer

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        built.append(type(out[0]))
        return out

    monkeypatch.setattr(training, "_optimizer", spy)
    config = {**COMMON, "loss": loss, "optimizer": optimizer, "name": f"m-{loss}"}
    name = train_recipe(ctx, "metric", config)

    assert built == [expected, expected]  # one optimiser per phase, the configured kind
    kind, dim, config = _config(ctx, name)
    assert (kind, dim) == ("metric", 16)
    losses = [e["loss"] for e in config["epochs"]]
    assert min(losses[1:]) < losses[0]  # the loss falls
    assert config["train_config"]["loss"] == loss and config["metric"] == "valid_precision_at_1"
    assert (ctx.home / config["checkpoint"]).is_file()
    space = ctx.spaces.space(name)
    with ctx.sessions() as session:
        total = repo.count_images(session=session)
    assert space.encoder.dim == 16 and space.index.count({"kind": "image"}) == total


def test_metric_recipe_uses_its_own_transforms(ctx):
    config = MetricConfig.from_dict({**COMMON, "loss": "proxynca"})
    data = catalog_samples(ctx, config)
    built = get_recipe("metric").build(config, data.classes, home=ctx.home)
    tdata = make_datasets(ctx, get_backbone("tiny_cnn"), 32, data, built.transforms)
    assert any(isinstance(t, T.RandomCrop) for t in tdata.train.transform.transforms)
    assert tdata.train[0][0].shape == (3, 32, 32)


def test_held_out_classes_are_chosen_and_checked():
    classes = ["a", "b", "c", "d"]
    assert held_out(classes, holdout=2, unseen=()) == ["c", "d"]
    assert held_out(classes, holdout=None, unseen=["d", "a"]) == ["a", "d"]
    for holdout, unseen in ((None, ()), (1, ["a"]), (3, ()), (None, ["zebra"])):
        with pytest.raises(ConfigError):
            held_out(classes, holdout=holdout, unseen=unseen)


def test_unseen_experiment_trains_twice_and_measures_the_drop(ctx):
    config = {**COMMON, "loss": "proxynca", "freeze_epochs": 2, "unfreeze_epochs": 1}
    result = unseen_experiment(ctx, config, holdout=1)

    classes, [held] = result["classes"], result["held_out"]
    assert held == classes[-1] and len(classes) == 8  # the eight seen classes
    full, without = result["models"]["all"], result["models"]["without"]
    assert (full, without) == ("unseen-1-all", "unseen-1-without")
    assert _config(ctx, full)[2]["data"]["classes"] == classes
    lineage = _config(ctx, without)[2]["data"]
    assert held not in lineage["classes"] and len(lineage["classes"]) == 7
    drop = result["drop"]
    assert drop["per_class"][held]["unseen"] and set(drop["per_class"]) <= set(classes)
    row = drop["per_class"][held]
    assert row["drop"] == pytest.approx(row["all_classes"] - row["without_unseen"])
    assert drop["mean_drop_unseen"] == pytest.approx(row["drop"])
    with ctx.sessions() as session:
        recorded = repo.model_metrics(session=session, names=[full, without])
    assert recorded[without][f"{EXPERIMENT_SPLIT}/mean_drop_all"] == pytest.approx(
        drop["mean_drop_all"]
    )
    assert f"{EXPERIMENT_SPLIT}/precision_at_1/{held}" in recorded[full]
    assert "valid/mean_average_precision_at_r" in recorded[without]

    groups = result["groups"][without]
    with ctx.sessions() as session:
        valid = {c.name: n.get("valid", 0) for c, n in repo.class_counts(session=session)}
    assert groups["held_out"]["queries"] == valid[held]
    assert groups["seen"]["queries"] == sum(valid.values()) - valid[held]
    for group in groups.values():
        assert 0.0 <= group["knn_accuracy@10"] <= 1.0 and 0.0 <= group["precision_at_1"] <= 1.0
    assert recorded[without][f"{EXPERIMENT_SPLIT}/knn_accuracy@10/seen"] == pytest.approx(
        groups["seen"]["knn_accuracy@10"]
    )
    open_set = result["open_set"]
    assert 0.0 <= open_set["auroc_share"] <= 1.0 and 0.0 <= open_set["auroc_score"] <= 1.0
    accept_all = open_set["curve"][0]  # the lowest threshold accepts every known query
    assert accept_all["coverage"] == 1.0 and accept_all["unknown_rate"] == 0.0
    assert open_set["seen_accuracy"] == pytest.approx(accept_all["accuracy"])
    assert recorded[without][f"{EXPERIMENT_SPLIT}/open_set/seen_accuracy"] == pytest.approx(
        open_set["seen_accuracy"]
    )


def test_keep_best_checkpoint_deletes_the_other_epochs(ctx):
    config = {**COMMON, "loss": "proxynca", "keep_checkpoints": "best", "embed": False}
    name = train_recipe(ctx, "metric", {**config, "name": "m-pruned"})

    config = _config(ctx, name)[2]
    assert [p.name for p in (ctx.home / "models" / name).glob("epoch_*.pt")] == [
        f"epoch_{config['best_epoch']}.pt"
    ]
    kept = [e for e in config["epochs"] if e["checkpoint"]]
    assert [e["epoch"] for e in kept] == [config["best_epoch"]] and len(config["epochs"]) == 4
    assert kept[0]["checkpoint"] == config["checkpoint"]
    assert ctx.spaces.space(name).encoder.dim == 16  # the registered checkpoint still loads
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        MetricConfig.from_dict({**COMMON, "keep_checkpoints": "last"})


def test_enrolled_class_enters_every_trained_models_index(
    ctx, fmnist_queries, monkeypatch, workers
):
    name = train_recipe(ctx, "metric", {**COMMON, "loss": "proxynca", "name": "m-enrol"})
    train_recipe(ctx, "metric", {**COMMON, "loss": "arcface", "name": "m-noindex", "embed": False})
    with ctx.sessions() as session:
        with_index = repo.embedded_trained_models(session=session)
    assert name in with_index and "m-noindex" not in with_index
    before = ctx.spaces.space(name).index.count({"kind": "image"})
    with pytest.raises(NotFoundError):  # every name is checked before any work
        enrol_class(ctx, "handbag", fmnist_queries / "bag", models=[name, "nope"])

    result = enrol_class(ctx, "handbag", fmnist_queries / "bag")  # default: every such model

    assert result.added == 3 and set(result.models) == set(with_index)
    assert result.models[name]["embedded"] == 3 and result.models[name]["queued"] == 0
    space = ctx.spaces.space(name)
    assert space.index.count({"kind": "image"}) == before + 3
    assert space.index.count({"kind": "image", "class": "handbag"}) == 3
    with Image.open(sorted((fmnist_queries / "bag").iterdir())[0]) as img:
        query = space.encoder.encode_images(space.encoder.transform(img.convert("RGB"))[None])
    assert space.index.search(query, 1)[0][0].payload["class"] == "handbag"  # itself
    with ctx.sessions() as session:
        job = repo.get_job(session=session, job_id=result.models[name]["job_id"])
    assert (job.kind, job.state, job.params["model"]) == ("embed", "succeeded", name)

    # server mode: the model's batches go to the workers, who embed into the model's index
    workers.attach(ctx)
    active_before = ctx.spaces.space().index.count({"kind": "image"})
    queued = enrol_class(ctx, "tote", fmnist_queries / "trouser", models=[name])
    assert queued.models[name]["queued"] == 3 and len(workers.sent) == 2  # active + model
    for job_id, seqs in workers.sent:  # what the workers do
        for seq in seqs:
            run_embed_batch(ctx, job_id, seq)
    assert ctx.spaces.space(name).index.count({"kind": "image", "class": "tote"}) == 3
    assert ctx.spaces.space().index.count({"kind": "image"}) == active_before + 3
    with ctx.sessions() as session:
        job = repo.get_job(session=session, job_id=queued.models[name]["job_id"])
    assert job.state == "succeeded" and job.done == 3


def test_full_evaluation_writes_the_report_and_records_metrics(ctx, tmp_path):
    name = train_recipe(ctx, "metric", {**COMMON, "loss": "arcface", "unfreeze_epochs": 0})
    out = evaluate(ctx, EvaluationRequest(model=name, report=tmp_path / "r.html", projection="pca"))

    m = out["metrics"]
    assert {"precision_at_1", "mean_average_precision_at_r", "NMI", "AMI"} <= set(m)
    assert {"knn_accuracy@1", "knn_accuracy@10"} <= set(m)
    assert out["ann"]["agreement"]["top1_identical"] == 1.0  # the exact index is exact
    assert all(abs(d) < 1e-9 for d in out["ann"]["delta"].values())
    assert out["open_set"] and out["open_set"][0]["unknown_rate"] is not None
    page = (tmp_path / "r.html").read_text()
    assert "Open set" in page and "<table id='per-class'" in page and "data:image/png" in page
    with ctx.sessions() as session:
        recorded = repo.model_metrics(session=session, names=[name], split="valid")[name]
    assert out["recorded"] == len(recorded) > 15
    assert recorded["precision_at_1"] == pytest.approx(m["precision_at_1"])

    # bag treated as never enrolled (the test split's own unseen classes left out here)
    held = evaluate(ctx, EvaluationRequest(model=name, unknown=("bag",), unseen_split="train"))
    with ctx.sessions() as session:
        valid = {c.name: n.get("valid", 0) for c, n in repo.class_counts(session=session)}
    assert "bag" not in held["per_class"] and held["unknown"] == ["bag"]
    assert held["queries"] == out["queries"] - valid["bag"]
    assert held["ann"]["agreement"]["top1_identical"] == 1.0  # the index never returns a bag
    accept_all = held["open_set"][0]
    assert accept_all["coverage"] == 1.0 and accept_all["unknown_rate"] == 0.0
    assert accept_all["accuracy"] == pytest.approx(held["metrics"]["knn_accuracy@10"])
    assert held["recorded_as"] == "valid-unknown:bag"
    with ctx.sessions() as session:
        assert repo.model_metrics(session=session, names=[name], split="valid-unknown:bag")[name]
    with pytest.raises(ConfigError, match="zebra"):
        evaluate(ctx, EvaluationRequest(model=name, unknown=("zebra",)))

    frozen = evaluate(ctx, EvaluationRequest(full=True))  # the active (frozen) encoder
    assert frozen["model"] == ctx.spaces.space().key and frozen["report"] is None
