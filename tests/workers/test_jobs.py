"""Local jobs whose process died: recorded runner, `interrupted`, `jobs --watch`, resume."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Embedding, Job
from embplat.cli.app import app
from embplat.config import load_settings
from embplat.jobs.identity import process_start, runner_alive, this_runner
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.jobs import interrupt_dead_jobs
from embplat.workers.context import build_context

pytestmark = pytest.mark.reliability

#: A local job in its own process: plans the job's batches, embeds the first, then hangs
#: (as a long ingest would) until the test kills it.
HANGING_JOB = textwrap.dedent(
    """
    import sys, time
    from embplat.catalog import repo
    from embplat.config import load_settings
    from embplat.ingest.batches import plan_batches
    from embplat.workers.context import build_context
    from embplat.jobs.runner import InProcessRunner
    from embplat.pipelines.embed import run_embed_batch

    ctx = build_context(load_settings())

    def work(job):
        cid = ctx.spaces.collection_id()
        with ctx.sessions() as s:
            pending = repo.pending_image_ids(session=s, collection_id=cid)
        seqs = plan_batches(
            sessions=ctx.sessions, job_id=job.job_id, image_ids=pending, batch_size=40
        )
        run_embed_batch(ctx, job.job_id, seqs[0])
        print("READY", job.job_id, flush=True)
        time.sleep(600)

    InProcessRunner(ctx.sessions).run(kind="ingest", params={"root": "x"}, work=work)
    """
)


@pytest.fixture
def local_env(tmp_path, monkeypatch):
    env = {
        "EMBPLAT_HOME": str(tmp_path / "home"),
        "EMBPLAT_BROKER_URL": "",
        "EMBPLAT_CATALOG_URL": "",
        "EMBPLAT_INDEX_BACKEND": "exact",
        "EMBPLAT_EMBED_ENCODER": "tiny_cnn",
        "EMBPLAT_EMBED_NUM_WORKERS": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _job(sessions, job_id):
    with sessions() as s:
        return repo.get_job(session=s, job_id=job_id)


def _fake_job(sessions, runner, state="running"):
    with transaction(sessions) as s:
        job = repo.create_job(session=s, kind="ingest", params={"runner": runner})
        job.state = state
        return job.id


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: gone (reuse within the test is vanishingly unlikely)


def test_runner_identity_tells_live_dead_reused_and_foreign():
    me = this_runner()
    assert me["host"] == socket.gethostname() and me["pid"] == os.getpid()
    assert me["start"] == process_start(os.getpid()) is not None
    assert runner_alive(me) is True
    assert runner_alive({**me, "pid": _dead_pid()}) is False
    assert runner_alive({**me, "start": me["start"] - 1}) is False  # pid reused
    assert runner_alive({**me, "host": "elsewhere"}) is None  # unknown: left alone


def test_interrupt_dead_jobs_only_touches_dead_local_processes(local_env):
    ctx = build_context(load_settings())
    me = this_runner()
    dead = _fake_job(ctx.sessions, {**me, "pid": _dead_pid()})
    reused = _fake_job(ctx.sessions, {**me, "start": me["start"] - 100}, state="queued")
    alive = _fake_job(ctx.sessions, me)
    foreign = _fake_job(ctx.sessions, {**me, "host": "other-host", "pid": _dead_pid()})
    with transaction(ctx.sessions) as s:  # a worker's job: no runner recorded
        workers = repo.create_job(session=s, kind="ingest", params={"queued": {}}).id
        repo.update_job(session=s, job_id=workers, state="running")
    assert sorted(interrupt_dead_jobs(ctx.sessions)) == [dead, reused]
    states = {j: _job(ctx.sessions, j).state for j in (dead, reused, alive, foreign, workers)}
    assert states == {
        dead: "interrupted",
        reused: "interrupted",
        alive: "running",
        foreign: "running",
        workers: "running",
    }
    job = _job(ctx.sessions, dead)
    assert "is gone" in job.error and f"jobs resume {dead}" in job.error and job.finished_at
    assert interrupt_dead_jobs(ctx.sessions) == []  # idempotent


@pytest.mark.slow
def test_killed_local_ingest_is_interrupted_watch_ends_and_resume_finishes(
    local_env, fmnist_root, tmp_path
):
    settings = load_settings()
    ctx = build_context(settings)
    ingest_tree(ctx, fmnist_root, embed=False)  # 120 images registered, none embedded
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_JOB],
        env={**os.environ, **local_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), proc.stderr.read()
        job_id = int(line.split()[1])
        assert _job(ctx.sessions, job_id).state == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert _job(ctx.sessions, job_id).state == "running"  # nobody could record the kill
    watch = subprocess.run(
        [sys.executable, "-m", "embplat", "jobs", "--watch"],
        env={**os.environ, **local_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert watch.returncode == 0, watch.stderr
    job = _job(ctx.sessions, job_id)
    assert job.state == "interrupted" and str(proc.pid) in job.error
    result = CliRunner().invoke(app, ["jobs", "resume", str(job_id), "--json"])
    assert result.exit_code == 0, result.output
    job = _job(ctx.sessions, job_id)
    assert (job.state, job.done, job.total, job.failed) == ("succeeded", 120, 120, 0)
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Embedding)) == 120
        assert s.scalar(select(func.count()).select_from(Job).where(Job.state == "running")) == 0
