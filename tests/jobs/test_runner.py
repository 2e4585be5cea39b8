"""The job runner: recorded jobs, tasks run here or queued, a job that goes on on workers."""

from __future__ import annotations

import pytest

from embplat.catalog import repo
from embplat.catalog.db import ensure_schema, make_engine, session_factory
from embplat.jobs.identity import this_runner
from embplat.jobs.runner import InProcessRunner, JobHandle, Task


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    ensure_schema(engine, auto_upgrade=True)
    return session_factory(engine)


def _job(sessions, job_id):
    with sessions() as s:
        return repo.get_job(session=s, job_id=job_id)


def test_in_process_runner_runs_tasks_here_in_order(sessions):
    order: list[int] = []

    def task(n: int) -> Task:
        return Task("embplat.x", (n,), lambda: order.append(n) or {"n": n})

    out = InProcessRunner(sessions).submit([task(3), task(1), task(2)])
    assert order == [3, 1, 2] and [r["n"] for r in out.results] == [3, 1, 2]
    assert out.queued == []


def test_a_recorded_job_succeeds_with_its_result_and_records_its_runner(sessions):
    seen = {}

    def work(handle: JobHandle):
        seen.update(_job(sessions, handle.job_id).params["runner"])
        handle.set_total(4)
        handle.advance(3, failed=1)
        return {"ok": True}

    job_id, result = InProcessRunner(sessions).run(kind="x", params={"a": 1}, work=work)
    job = _job(sessions, job_id)
    assert result == {"ok": True} and seen == this_runner()
    assert (job.state, job.result, job.total, job.done, job.failed) == (
        "succeeded",
        {"ok": True},
        4,
        3,
        1,
    )


def test_a_failing_job_is_marked_failed_with_the_error(sessions):
    def work(handle: JobHandle):
        raise ValueError("bad pixel")

    with pytest.raises(ValueError):
        InProcessRunner(sessions).run(kind="x", params={}, work=work)
    [job] = _list(sessions)
    assert job.state == "failed" and job.error == "ValueError: bad pixel"


def test_a_job_whose_tasks_went_to_workers_stays_running_without_a_runner(sessions, workers):
    workers.sessions = sessions

    def work(handle: JobHandle):
        handle.submit([Task("embplat.x", (1,), lambda: {"ran": "here"})])
        return {"batches": 1}

    job_id, _ = workers.run(kind="x", params={"a": 1}, work=work)
    job = _job(sessions, job_id)
    assert job.state == "running" and job.params == {"a": 1, "queued": {"batches": 1}}
    assert [t.args for t in workers.tasks] == [(1,)]


def test_claim_records_this_process_here_and_drops_it_for_workers(sessions, workers):
    with sessions() as s:
        job_id = repo.create_job(session=s, kind="x", params={"runner": {"pid": 1}}).id
        s.commit()
    InProcessRunner(sessions).claim(job_id)
    assert _job(sessions, job_id).params["runner"] == this_runner()
    workers.sessions = sessions
    workers.claim(job_id)
    assert "runner" not in _job(sessions, job_id).params


def test_submitting_from_a_handle_without_runner_is_an_error(sessions):
    with pytest.raises(RuntimeError, match="no runner"):
        JobHandle(1, sessions).submit([])


def _list(sessions):
    with sessions() as s:
        return repo.list_jobs(session=s)
