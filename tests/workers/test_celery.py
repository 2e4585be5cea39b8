"""Server mode with real services: a real `celery worker` process on the real Redis, the
catalog on PostgreSQL, the Qdrant backend in qdrant-client's local mode (opened by the
worker; read here once the worker has stopped), or the Qdrant server at
``EMBPLAT_TEST_QDRANT_URL`` when it is set (CI)."""

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from embplat.catalog.db import make_engine, session_factory, upgrade
from embplat.catalog.models import Embedding, Job, JobBatch
from embplat.config import load_settings
from embplat.pipelines.ingest import ingest_tree
from embplat.retrieval import collection_name
from embplat.workers.context import build_context

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def server_env(tmp_path, pg_database, redis_url, qdrant, monkeypatch):
    env = {
        "EMBPLAT_HOME": str(tmp_path / "home"),
        "EMBPLAT_CATALOG_URL": pg_database,
        "EMBPLAT_BROKER_URL": redis_url,
        "EMBPLAT_INDEX_BACKEND": "qdrant",
        **qdrant.env,
        "EMBPLAT_EMBED_IMAGE_SIZE": "64",
        "EMBPLAT_EMBED_NUM_WORKERS": "0",
        "EMBPLAT_INGEST_BATCH_SIZE": "16",
        # short, so a killed worker's batch comes back soon; every time limit stays below it
        "EMBPLAT_CELERY_VISIBILITY_TIMEOUT": "20",
        "EMBPLAT_CELERY_TASK_TIME_LIMIT": "18",
        "EMBPLAT_CELERY_TASK_SOFT_TIME_LIMIT": "15",
        "EMBPLAT_CELERY_TRAIN_TIME_LIMIT": "18",
        "EMBPLAT_CELERY_TRAIN_SOFT_TIME_LIMIT": "15",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    engine = make_engine(pg_database)
    upgrade(engine)
    engine.dispose()
    return env


class Worker:
    """A `platform worker` subprocess (solo pool: one process to kill)."""

    def __init__(self, env, log_path, extra_env=None):
        self.log = open(log_path, "ab")  # noqa: SIM115 (lives as long as the worker)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "embplat", "worker", "--pool", "solo", "--queues", "gpu,cpu"],
            env={**os.environ, **env, **(extra_env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)
        self.log.close()


def _job(sessions, job_id):
    with sessions() as s:
        return s.get(Job, job_id)


def _wait(sessions, job_id, until, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _job(sessions, job_id)
        if until(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} stuck: {job.state} {job.done}/{job.total}")


def _counts(sessions, qdrant, model_key):
    with sessions() as s:
        rows = s.scalar(select(func.count()).select_from(Embedding))
        distinct = s.scalar(select(func.count(func.distinct(Embedding.image_id))))
    client = qdrant.client()
    points = client.count(collection_name(model_key), exact=True).count
    client.close()
    return rows, distinct, points


def test_worker_ingests_into_postgres_and_qdrant(server_env, fmnist_root, tmp_path, qdrant):
    ctx = build_context(load_settings())
    assert not ctx.runner.in_process  # the workers run the batches
    worker = Worker(server_env, tmp_path / "worker.log")
    try:
        result = ingest_tree(ctx, fmnist_root)
        assert result.queued == result.added == 120 and result.embedded == 0
        job = _wait(ctx.sessions, result.job_id, lambda j: j.state != "running")
    finally:
        worker.stop()
    assert (job.state, job.done, job.total, job.failed) == ("succeeded", 120, 120, 0)
    key = ctx.spaces.registered()[0].key
    assert _counts(ctx.sessions, qdrant, key) == (120, 120, 120)
    again = ingest_tree(ctx, fmnist_root)  # nothing new: no batches, job finishes at once
    assert again.queued == 0 and _job(ctx.sessions, again.job_id).state == "succeeded"


@pytest.mark.reliability
def test_killed_worker_job_finishes_with_exact_counts(server_env, fmnist_root, tmp_path, qdrant):
    ctx = build_context(load_settings())
    slow = {"EMBPLAT_EMBED_IMAGE_SIZE": "64", "EMBPLAT_EMBED_BATCH_SIZE": "2"}
    ctx_key = ctx.spaces.registered()[0].key
    first = Worker(server_env, tmp_path / "w1.log", slow)
    result = ingest_tree(ctx, fmnist_root)

    def mid_batch(job):
        with ctx.sessions() as s:
            running = s.scalars(
                select(JobBatch.seq).where(JobBatch.job_id == job.id, JobBatch.state == "running")
            ).all()
        return 16 <= job.done < 120 and bool(running)

    _wait(ctx.sessions, result.job_id, mid_batch)
    first.stop(signal.SIGKILL)  # mid-job: a batch is in flight, unacknowledged
    killed = _job(ctx.sessions, result.job_id)
    assert killed.state == "running" and killed.done < 120
    second = Worker(server_env, tmp_path / "w2.log")
    try:
        job = _wait(ctx.sessions, result.job_id, lambda j: j.state != "running")
    finally:
        second.stop()
    assert (job.state, job.done, job.failed) == ("succeeded", 120, 0)
    assert _counts(ctx.sessions, qdrant, ctx_key) == (120, 120, 120)
    with ctx.sessions() as s:
        attempts = s.scalars(select(JobBatch.attempts).where(JobBatch.job_id == job.id)).all()
    assert max(attempts) >= 2  # the interrupted batch really ran again


@pytest.mark.reliability
def test_unreachable_broker_is_named_and_nothing_is_written(server_env, fmnist_root, monkeypatch):
    monkeypatch.setenv("EMBPLAT_BROKER_URL", "redis://:hunter2@127.0.0.1:1/0")
    from embplat.errors import ServiceUnavailableError

    ctx = build_context(load_settings())
    with pytest.raises(ServiceUnavailableError) as err:
        ingest_tree(ctx, fmnist_root)
    assert "127.0.0.1:1" in str(err.value) and "hunter2" not in str(err.value)
    sessions = session_factory(make_engine(server_env["EMBPLAT_CATALOG_URL"]))
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


@pytest.mark.reliability
def test_training_runs_in_a_worker_once(server_env, fmnist_root, tmp_path, monkeypatch):
    from embplat.catalog import repo
    from embplat.pipelines.training_jobs import submit_training, train_queued

    monkeypatch.setenv("EMBPLAT_BROKER_URL", "")  # register the images in-process first
    local = build_context(load_settings())
    ingest_tree(local, fmnist_root, embed=False)
    monkeypatch.setenv("EMBPLAT_BROKER_URL", server_env["EMBPLAT_BROKER_URL"])
    ctx = build_context(load_settings())
    config = {
        "encoder": "tiny_cnn",
        "freeze_epochs": 0,
        "unfreeze_epochs": 1,
        "max_per_class": 4,
        "plots": False,
        "embed": False,
    }
    out = submit_training(ctx, "classifier", config)
    assert out["model"] == "classifier-1" and out["queued"]
    assert _job(ctx.sessions, out["job"]).state == "queued"  # `platform jobs` shows it now
    worker = Worker(server_env, tmp_path / "worker.log")
    try:
        job = _wait(ctx.sessions, out["job"], lambda j: j.state not in {"queued", "running"})
    finally:
        worker.stop()
    assert job.state == "succeeded", (tmp_path / "worker.log").read_text()[-2000:]
    with ctx.sessions() as s:
        assert repo.get_model(session=s, name="classifier-1").kind == "classifier"
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == "train")) == 1
    # the same message delivered again (a redelivery): the model is found, not trained again
    (sent,) = [j.params["config"] for j in [job]]
    assert train_queued(ctx, "classifier", sent) == {"model": "classifier-1", "existing": True}
    with ctx.sessions() as s:
        assert [m.name for m in repo.list_models(session=s, kinds=["classifier"])] == [
            "classifier-1"
        ]
