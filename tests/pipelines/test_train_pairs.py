"""Training a recipe that learns from captions (``matching``) through the training use case:
the recorded job, checkpoints, lineage, the model's image and caption points, server mode."""

from __future__ import annotations

import numpy as np
import pytest

from embplat.catalog import repo
from embplat.errors import ConfigError, DataError
from embplat.jobs.runner import TRAIN, InProcessRunner
from embplat.models.recipes import get_recipe
from embplat.pipelines.crossmodal import caption_point_id
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.query_images import embed_query_images
from embplat.pipelines.train import train_recipe
from embplat.pipelines.training_jobs import submit_training, train_queued
from embplat.retrieval import collection_name, point_id


def test_matching_is_a_registered_caption_recipe():
    spec = get_recipe("matching")
    assert spec.data == "captions" and get_recipe("metric").data == "classes"


def test_training_registers_the_model_and_writes_image_and_caption_points(matching_trained):
    ctx = matching_trained
    with ctx.sessions() as session:
        record = repo.get_model(session=session, name="m")
        jobs = [j for j in repo.list_jobs(session=session) if j.kind == "train"]
        images = {i.id: i for i in repo.get_images(session=session, ids=range(1, 61))}
    config = record.config
    assert (record.kind, record.dim) == ("matching", 64)
    assert config["data"]["train_images"] == 48 and config["data"]["train_captions"] == 240
    assert config["data"]["valid_captions"] == 30
    assert len(config["epochs"]) == 30 and config["metric"] == "rsum"
    best = config["epochs"][config["best_epoch"] - 1]
    assert best["metric"] == max(e["metric"] for e in config["epochs"])
    assert best["metric"] > config["baseline"]  # it learnt something on the valid split
    assert (ctx.home / config["checkpoint"]).is_file()
    assert jobs[0].state == "succeeded" and jobs[0].params["recipe"] == "matching"

    index = ctx.spaces.index(collection_name("m"), 64)
    assert index.count({"kind": "image"}) == 60 and index.count({"kind": "caption"}) == 300
    first = images[1]
    vectors, payloads = index.get([caption_point_id(first.sha256, 0, "m")])
    assert payloads[0]["kind"] == "caption" and payloads[0]["image_id"] == first.id
    assert payloads[0]["path"] == first.path and payloads[0]["ordinal"] == 0
    assert payloads[0]["text"] and payloads[0]["split"] == first.split
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)
    _, image_payloads = index.get([point_id(first.sha256, "m")])
    assert image_payloads[0]["kind"] == "image" and image_payloads[0]["class"] == "unlabelled"


def test_the_models_image_encoder_gives_its_stored_image_points(matching_trained):
    """New files are embedded by the active encoder + the image tower: the same vectors as
    the tower over the cached features."""
    ctx = matching_trained
    space = ctx.spaces.space("m")
    with ctx.sessions() as session:
        images = repo.get_images(session=session, ids=[1, 2, 3])
    fresh = embed_query_images(space, [i.path for i in images], max_pixels=10**7)
    stored, _ = space.index.get([point_id(i.sha256, "m") for i in images])
    np.testing.assert_allclose(fresh, stored, atol=1e-4)


def test_keep_best_checkpoint_and_refusals(context_factory, scenes_root, matching_config):
    ctx = context_factory("exact", encoder="tiny_cnn")
    with pytest.raises(DataError, match="no captioned images in the train split"):
        train_recipe(ctx, "matching", {**matching_config, "freeze_epochs": 1})
    ingest_tree(ctx, scenes_root)
    with pytest.raises(ConfigError, match="unfreeze_epochs must be 0"):
        train_recipe(ctx, "matching", {**matching_config, "unfreeze_epochs": 1})
    config = {**matching_config, "freeze_epochs": 3, "keep_checkpoints": "best", "embed": False}
    name = train_recipe(ctx, "matching", {**config, "text_encoder": "gru", "loss": "order"})
    assert name == "matching-1"
    with ctx.sessions() as session:
        record = repo.get_model(session=session, name=name)
    kept = sorted(p.name for p in (ctx.home / "models" / name).glob("epoch_*.pt"))
    assert kept == [f"epoch_{record.config['best_epoch']}.pt"]
    assert sum(bool(e["checkpoint"]) for e in record.config["epochs"]) == 1
    assert ctx.spaces.index(collection_name(name), 64).count() == 0  # --no-embed


def test_server_mode_sends_the_training_to_a_workers_train_task(
    context_factory, scenes_root, workers, matching_config
):
    ctx = context_factory("exact", encoder="tiny_cnn")
    ingest_tree(ctx, scenes_root, embed=False)
    workers.attach(ctx)
    out = submit_training(ctx, "matching", {**matching_config, "freeze_epochs": 1})
    assert out["queued"] == "task-1" and out["model"] == "matching-1"
    [(recipe, config)] = workers.trainings
    assert recipe == "matching" and config["name"] == "matching-1"
    assert [t.name for t in workers.tasks] == [TRAIN]
    with ctx.sessions() as session:
        assert [m.name for m in repo.list_models(session=session, kinds=["matching"])] == []
    # the worker's task: the same use case (it embeds the pending images itself)
    ctx.runner = InProcessRunner(ctx.sessions)
    assert train_queued(ctx, recipe, config) == {"model": "matching-1", "existing": False}
    with ctx.sessions() as session:
        job = repo.get_job(session=session, job_id=out["job"])
    assert job.state == "succeeded"


def test_images_ingested_later_enter_the_matching_collection(
    context_factory, scenes_root, matching_config, tmp_path
):
    from embplat.ingest.scenes import build_scenes

    ctx = context_factory("exact", encoder="tiny_cnn")
    ingest_tree(ctx, scenes_root)
    name = train_recipe(ctx, "matching", {**matching_config, "freeze_epochs": 1})
    index = ctx.spaces.index(collection_name(name), 64)
    assert index.count({"kind": "image"}) == 60
    ingest_tree(ctx, build_scenes(tmp_path / "more", images=10, seed=1, size=64))
    assert index.count({"kind": "image"}) == 70
    assert index.count({"kind": "caption"}) == 300  # new captions wait for a retraining
