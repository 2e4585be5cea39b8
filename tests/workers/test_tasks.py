"""Celery tasks and app configuration without a broker: retries that give up, time limits,
events, the app built from Settings, worker refusals, queued trainings run at most once."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.config import load_settings
from embplat.errors import ConfigError, ServiceUnavailableError
from embplat.ingest.batches import plan_batches
from embplat.jobs.runner import EMBED_BATCH, TRAIN
from embplat.workers import tasks
from embplat.workers.celery_app import check_worker, make_celery
from embplat.workers.context import build_context


@pytest.fixture
def local(tmp_path, monkeypatch):
    for key, value in {
        "EMBPLAT_HOME": str(tmp_path / "home"),
        "EMBPLAT_BROKER_URL": "",
        "EMBPLAT_CATALOG_URL": "",
        "EMBPLAT_INDEX_BACKEND": "exact",
        "EMBPLAT_EMBED_ENCODER": "tiny_cnn",
    }.items():
        monkeypatch.setenv(key, value)
    return build_context(load_settings())


# --- settings -> app ------------------------------------------------------------------------


def test_time_limits_stay_below_the_visibility_timeout(monkeypatch):
    monkeypatch.setenv("EMBPLAT_CELERY_VISIBILITY_TIMEOUT", "3000")
    with pytest.raises(ConfigError, match=r"TRAIN_TIME_LIMIT=3300 must be below.*=3000"):
        load_settings()
    monkeypatch.setenv("EMBPLAT_CELERY_VISIBILITY_TIMEOUT", "20000")
    monkeypatch.setenv("EMBPLAT_CELERY_TRAIN_TIME_LIMIT", "18000")
    monkeypatch.setenv("EMBPLAT_CELERY_TRAIN_SOFT_TIME_LIMIT", "18000")
    with pytest.raises(ConfigError, match="TRAIN_SOFT_TIME_LIMIT=18000 must be below"):
        load_settings()
    monkeypatch.setenv("EMBPLAT_CELERY_TRAIN_SOFT_TIME_LIMIT", "17000")
    c = load_settings().celery
    assert (c.train_soft_time_limit, c.train_time_limit, c.visibility_timeout) == (
        17000,
        18000,
        20000,
    )


def test_app_is_built_from_the_given_settings(monkeypatch):
    monkeypatch.setenv("EMBPLAT_BROKER_URL", "redis://env-host:6379/0")
    settings = load_settings(**{"celery.broker_url": "redis://flag-host:6379/3"})
    settings.celery = settings.celery.model_copy(update={"task_time_limit": 77})
    app = make_celery(settings)
    conf = app.conf
    assert conf.broker_url == "redis://flag-host:6379/3"
    assert conf.worker_send_task_events and conf.task_send_sent_event
    assert (conf.task_time_limit, conf.task_soft_time_limit) == (77, 900)
    app.loader.import_default_modules()
    train, embed = app.tasks[TRAIN], app.tasks[EMBED_BATCH]
    assert (train.soft_time_limit, train.time_limit) == (3000, 3300)
    assert (embed.soft_time_limit, embed.time_limit) == (900, 77)
    from embplat.workers.celery_runner import CeleryRunner

    assert CeleryRunner(None, settings).app.conf.broker_url == "redis://flag-host:6379/3"


def test_importing_the_app_module_reads_no_configuration():
    """Bad environment: the task names still import; only `celery -A`'s `app` reads it."""
    code = (
        "import embplat.workers.celery_app as m, embplat.workers.tasks\n"
        "try:\n    m.app\nexcept Exception as e:\n    print(type(e).__name__)\n"
    )
    env = {"EMBPLAT_CELERY_VISIBILITY_TIMEOUT": "5", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ConfigError"


def test_worker_refuses_two_writers_on_local_qdrant(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBPLAT_INDEX_BACKEND", "qdrant")
    monkeypatch.setenv("EMBPLAT_QDRANT_PATH", str(tmp_path / "q"))
    settings = load_settings()
    with pytest.raises(ConfigError, match=r"one writer.*EMBPLAT_CELERY_CONCURRENCY=1"):
        check_worker(settings, concurrency=2, pool="prefork")
    check_worker(settings, concurrency=1, pool="prefork")
    check_worker(settings, concurrency=4, pool="solo")  # solo runs one task at a time
    monkeypatch.setenv("EMBPLAT_QDRANT_URL", "http://qdrant:6333")
    check_worker(load_settings(), concurrency=8, pool="prefork")  # a server takes many
    monkeypatch.delenv("EMBPLAT_QDRANT_URL")
    monkeypatch.setenv("EMBPLAT_INDEX_BACKEND", "nmslib")  # made safe by a file lock
    check_worker(load_settings(), concurrency=8, pool="prefork")


def test_platform_worker_refuses_before_starting(tmp_path, monkeypatch):
    from embplat.cli.app import app

    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMBPLAT_BROKER_URL", "redis://127.0.0.1:1/0")  # never reached
    monkeypatch.setenv("EMBPLAT_INDEX_BACKEND", "qdrant")
    monkeypatch.setenv("EMBPLAT_QDRANT_PATH", str(tmp_path / "q"))
    monkeypatch.setenv("EMBPLAT_CELERY_CONCURRENCY", "3")
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "Qdrant local mode" in result.output and len(result.output.strip().splitlines()) == 1


# --- embed batches that run out of retries ---------------------------------------------------


class _Down:
    """Embedding in a worker whose catalog/index is down (``tasks.run_embed_batch``)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, ctx, job_id, seq):
        self.calls += 1
        raise ServiceUnavailableError("qdrant at http://q:6333 is unreachable")


def _two_batches(ctx):
    with transaction(ctx.sessions) as s:
        job_id = repo.create_job(session=s, kind="ingest", params={}).id
    plan_batches(sessions=ctx.sessions, job_id=job_id, image_ids=[1, 2, 3], batch_size=2)
    return job_id


def test_embed_batch_out_of_retries_fails_the_batch_and_job(local, monkeypatch):
    app = make_celery(load_settings())
    job_id = _two_batches(local)
    down = _Down()
    monkeypatch.setattr(tasks, "_context", local)
    monkeypatch.setattr(tasks, "run_embed_batch", down)
    task = app.tasks[EMBED_BATCH]
    result = task.apply(args=[job_id, 0])  # eager: every retry runs at once
    assert isinstance(result.result, ServiceUnavailableError)
    assert down.calls == task.max_retries + 1
    with local.sessions() as s:
        job = repo.get_job(session=s, job_id=job_id)
    assert job.state == "running"  # batch 1 still to come
    task.apply(args=[job_id, 1], retries=task.max_retries)  # the last attempt
    with local.sessions() as s:
        job = repo.get_job(session=s, job_id=job_id)
    assert job.state == "failed"
    assert "batch 0: gave up after 8 retries" in job.error and "unreachable" in job.error


def test_embed_batch_with_retries_left_leaves_the_batch_queued(local, monkeypatch):
    job_id = _two_batches(local)
    monkeypatch.setattr(tasks, "_context", local)
    monkeypatch.setattr(tasks, "run_embed_batch", _Down())
    tasks.embed_batch.push_request(retries=2)
    try:
        with pytest.raises(ServiceUnavailableError):
            tasks.embed_batch.run(job_id, 0)
    finally:
        tasks.embed_batch.pop_request()
    from embplat.ingest.batches import unfinished_batches

    assert unfinished_batches(sessions=local.sessions, job_id=job_id) == [0, 1]
    with local.sessions() as s:
        assert repo.get_job(session=s, job_id=job_id).error is None


# --- trainings: a fixed name, a queued job, at most one model per name ---------------------


def test_submit_training_fixes_the_name_and_records_a_queued_job(local, workers):
    from embplat.pipelines.training_jobs import submit_training

    workers.attach(local)
    config = {"encoder": "tiny_cnn", "unfreeze_epochs": 1}
    first = submit_training(local, "classifier", config)
    second = submit_training(local, "classifier", config)
    assert (first["model"], second["model"]) == ("classifier-1", "classifier-2")
    sent = workers.trainings
    assert [c["name"] for _, c in sent] == ["classifier-1", "classifier-2"]
    with local.sessions() as s:
        job = repo.get_job(session=s, job_id=first["job"])
    assert (job.kind, job.state) == ("train", "queued")
    assert job.params["model"] == "classifier-1" and job.params["task"] == "task-1"
    with pytest.raises(ConfigError, match="queued already"):
        submit_training(local, "classifier", {**config, "name": "classifier-2"})


def test_a_training_delivered_again_returns_the_existing_model(local, workers):
    from embplat.pipelines.training_jobs import submit_training, train_queued

    workers.attach(local)
    out = submit_training(local, "classifier", {"encoder": "tiny_cnn", "name": "clf"})
    with transaction(local.sessions) as s:  # the first delivery registered it, then died
        repo.ensure_model(
            session=s,
            name="clf",
            kind="classifier",
            encoder="tiny_cnn",
            weights="x",
            dim=8,
            image_size=32,
            config={},
        )
    ((recipe, config),) = workers.trainings
    again = train_queued(local, recipe, config)
    assert again == {"model": "clf", "existing": True}
    with local.sessions() as s:
        assert len(repo.list_models(session=s, kinds=["classifier"])) == 1
        assert repo.get_job(session=s, job_id=out["job"]).state == "succeeded"


def test_a_queued_training_refused_by_its_data_fails_its_job(local, workers):
    from embplat.errors import DataError
    from embplat.pipelines.training_jobs import submit_training, train_queued

    workers.attach(local)
    out = submit_training(local, "classifier", {"encoder": "tiny_cnn"})
    ((recipe, config),) = workers.trainings
    with pytest.raises(DataError):  # an empty catalog: nothing to train on
        train_queued(local, recipe, config)
    with local.sessions() as s:
        job = repo.get_job(session=s, job_id=out["job"])
        jobs = repo.list_jobs(session=s)
    assert job.state == "failed" and "DataError" in job.error and len(jobs) == 1
