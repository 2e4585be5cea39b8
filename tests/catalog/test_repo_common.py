"""The dialect-aware inserts every repository module writes through, and racing writers."""

from __future__ import annotations

import threading

import pytest

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import ClassLabel, MetricValue
from embplat.catalog.repo._common import chunks, insert_ignore, upsert


def test_insert_ignore_counts_only_new_rows(sessions):
    rows = [{"name": "cat", "role": "seen"}, {"name": "dog", "role": "unseen"}]
    with transaction(sessions) as s:
        assert insert_ignore(session=s, model=ClassLabel, rows=rows, keys=["name"]) == 2
        again = [{"name": "dog", "role": "seen"}, {"name": "owl", "role": "seen"}]
        assert insert_ignore(session=s, model=ClassLabel, rows=again, keys=["name"]) == 1
        assert insert_ignore(session=s, model=ClassLabel, rows=[], keys=["name"]) == 0
        assert repo.get_class(session=s, name="dog").role == "unseen"  # first write wins


def test_upsert_overwrites_only_the_named_columns(sessions, model_id):
    def row(value: float, name: str = "acc") -> dict:
        return {"model_id": model_id, "split": "test", "name": name, "value": value}

    keys, update = ["model_id", "split", "name"], ["value"]
    with transaction(sessions) as s:
        assert upsert(session=s, model=MetricValue, rows=[row(0.1)], keys=keys, update=update) == 1
        written = upsert(
            session=s, model=MetricValue, rows=[row(0.2), row(0.3, "f1")], keys=keys, update=update
        )
        assert written == 2
        assert upsert(session=s, model=MetricValue, rows=[], keys=keys, update=update) == 0
    with sessions() as s:
        metrics = repo.model_metrics(session=s, names=["m"], split="test")
    assert metrics == {"m": {"acc": 0.2, "f1": 0.3}}


@pytest.mark.parametrize(("n", "size", "lengths"), [(0, 3, []), (7, 3, [3, 3, 1]), (6, 3, [3, 3])])
def test_chunks_cover_the_items_in_order(n, size, lengths):
    parts = list(chunks(list(range(n)), size))
    assert [len(p) for p in parts] == lengths
    assert [x for p in parts for x in p] == list(range(n))


@pytest.mark.reliability
def test_concurrent_writers_neither_deadlock_nor_duplicate(sessions, image_row, model_id):
    """Two writers racing over the same classes, images and embeddings (as two workers do)."""
    with transaction(sessions) as s:
        coll_id = repo.ensure_collection(
            session=s, name="c", model_id=model_id, backend="exact", dim=4
        ).id
    errors, barrier = [], threading.Barrier(2)
    shas = [f"{i:064x}" for i in range(60)]

    def writer(order):
        try:
            barrier.wait()
            for chunk in range(0, 60, 10):
                with transaction(sessions) as s:
                    cid = repo.ensure_classes(session=s, names=["a", "b"][::order])["a"]
                    repo.add_images(
                        session=s,
                        records=[image_row(h, cid) for h in shas[chunk : chunk + 10][::order]],
                    )
                with transaction(sessions) as s:
                    ids = repo.images_by_hash(session=s, hashes=shas[chunk : chunk + 10])
                    repo.add_embeddings(
                        session=s,
                        collection_id=coll_id,
                        points=[(i.id, i.sha256[:8]) for i in ids.values()],
                    )
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(o,)) for o in (1, -1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with sessions() as s:
        assert repo.count_images(session=s) == 60
        assert repo.count_embeddings(session=s, collection_id=coll_id) == 60
        assert len(repo.class_counts(session=s)) == 2
