import pytest

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import NotFoundError


@pytest.fixture
def job_id(sessions) -> int:
    """A job cut into three batches: [1, 2], [3, 4], [5]."""
    with transaction(sessions) as s:
        job = repo.create_job(session=s, kind="embed", params={})
        assert repo.add_batches(session=s, job_id=job.id, items=[[1, 2], [3, 4], [5]]) == 3
        return job.id


def test_planning_again_adds_nothing(sessions, job_id):
    with transaction(sessions) as s:
        assert repo.add_batches(session=s, job_id=job_id, items=[[9], [9], [9], [6]]) == 1
    with sessions() as s:
        batches = repo.job_batches(session=s, job_id=job_id)
        assert [(b.seq, b.items, b.state) for b in batches] == [
            (0, [1, 2], "queued"),
            (1, [3, 4], "queued"),
            (2, [5], "queued"),
            (3, [6], "queued"),
        ]
        assert repo.count_batches(session=s, job_id=job_id) == 4
        assert repo.count_batches(session=s, job_id=job_id + 1) == 0


def test_batch_outcomes_and_requeue(sessions, job_id):
    with transaction(sessions) as s:
        assert repo.start_batch(session=s, job_id=job_id, seq=0) == [1, 2]
        repo.finish_batch(session=s, job_id=job_id, seq=0, done=1, failed=[("/x/2.jpg", "bad")])
        repo.start_batch(session=s, job_id=job_id, seq=1)
        repo.fail_batch(session=s, job_id=job_id, seq=1, error="disk full")
    with sessions() as s:
        first, second, _ = repo.job_batches(session=s, job_id=job_id)
        assert (first.state, first.attempts, first.done) == ("done", 1, 1)
        assert (second.state, second.error) == ("failed", "disk full")
        assert repo.unfinished_batches(session=s, job_id=job_id) == [1, 2]
        assert repo.batch_failures(session=s, job_id=job_id) == [("/x/2.jpg", "bad")]
    with transaction(sessions) as s:
        repo.requeue_batches(session=s, job_id=job_id, seqs=[1])
    with sessions() as s:
        batch = repo.get_batch(session=s, job_id=job_id, seq=1)
        assert (batch.state, batch.error, batch.attempts) == ("queued", None, 1)


def test_unknown_batch_names_job_and_seq(sessions, job_id):
    with sessions() as s, pytest.raises(NotFoundError, match=f"job {job_id} has no batch 7"):
        repo.get_batch(session=s, job_id=job_id, seq=7)
