"""One suite over every backend, checked against ExactIndex (the reference).

Data: 3000 clustered 64-d unit vectors (30 Gaussian clusters, seeded) with class/split/kind
payloads; HNSW recall is only meaningful on clustered data, not uniform noise.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from embplat.errors import ConfigError, DataError, IndexEmptyError, NotFoundError
from embplat.retrieval import VectorIndex, collection_name, open_index, point_id
from embplat.retrieval.backends import BACKENDS as REGISTRY
from embplat.retrieval.backends import ExactOptions, NmslibOptions, QdrantOptions
from embplat.retrieval.base import l2_normalize, matches
from embplat.retrieval.exact import ExactIndex
from embplat.retrieval.nmslib_index import NmslibIndex
from embplat.retrieval.qdrant_index import QdrantIndex

BACKENDS = ["exact", "nmslib", "qdrant"]
PERSISTENT = BACKENDS  # exact with a path, nmslib, qdrant local mode with a path
DIM, N, N_CLUSTERS, N_QUERIES, K = 64, 3000, 30, 100, 10
#: Smaller load for persistence tests: qdrant local mode with a path commits to SQLite once
#: per point (a few hundred points/s here). The buffer limit still gives nmslib a graph.
N_SMALL, SMALL_BUFFER = 300, 128
#: Queries for filtered searches: qdrant local mode filters in Python (~60 ms per query).
N_FILTERED = 20
SELECTIVE = {"class": ["c03", "c17"]}  # ~7% of points: nmslib searches the subset exactly
BROAD = {"split": "train"}  # ~60%: nmslib over-fetches from the graph and filters

Opener = Callable[..., VectorIndex]


def _open(backend: str, path: Path, dim: int = DIM, **nmslib_kwargs: Any) -> VectorIndex:
    if backend == "exact":
        return ExactIndex("test", dim, path=path / "exact")
    if backend == "nmslib":
        return NmslibIndex("test", dim, path / "nmslib", **nmslib_kwargs)
    if backend == "qdrant_memory":
        client = QdrantClient(":memory:")
    else:
        client = QdrantClient(path=str(path / "qdrant"))
    return QdrantIndex("test", dim, client, owns_client=True)


@pytest.fixture
def opener(tmp_path: Path) -> Iterator[Opener]:
    """Open indexes under this test's tmp_path; all are closed at teardown."""
    opened: list[VectorIndex] = []

    def open_(backend: str, **options: Any) -> VectorIndex:  # dim=, or NmslibIndex options
        index = _open(backend, tmp_path, **options)
        opened.append(index)
        return index

    yield open_
    for index in opened:
        index.close()


@pytest.fixture(scope="module")
def data() -> SimpleNamespace:
    """Clustered vectors, payloads, UUID ids and noisy queries near stored points."""
    rng = np.random.default_rng(1234)
    centers = l2_normalize(rng.standard_normal((N_CLUSTERS, DIM)))
    labels = rng.integers(0, N_CLUSTERS, N)
    vectors = l2_normalize(centers[labels] + 0.12 * rng.standard_normal((N, DIM)))
    splits = rng.choice(["train", "val", "test"], size=N, p=[0.6, 0.2, 0.2])
    payloads = [
        {"class": f"c{lab:02d}", "split": str(s), "kind": "image"}
        for lab, s in zip(labels, splits, strict=True)
    ]
    ids = [point_id(f"{i:064x}", "test-model") for i in range(N)]
    picks = rng.choice(N, N_QUERIES, replace=False)
    queries = l2_normalize(vectors[picks] + 0.05 * rng.standard_normal((N_QUERIES, DIM)))
    reference = ExactIndex("reference", DIM)
    reference.upsert(ids, vectors, payloads)
    return SimpleNamespace(
        vectors=vectors, payloads=payloads, ids=ids, queries=queries, reference=reference
    )


def _load(index: VectorIndex, data: SimpleNamespace, n: int = N, batch: int = 1000) -> None:
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        index.upsert(data.ids[start:stop], data.vectors[start:stop], data.payloads[start:stop])


@pytest.fixture(scope="module", params=BACKENDS)
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, data: SimpleNamespace
) -> Iterator[tuple[str, VectorIndex]]:
    """Each backend holding the whole data set (nmslib: a graph built past buffer_limit).

    Qdrant runs in ``:memory:`` local mode here (same search code as a path, faster writes).
    """
    backend = "qdrant_memory" if request.param == "qdrant" else request.param
    index = _open(backend, tmp_path_factory.mktemp(request.param))
    _load(index, data)
    yield request.param, index
    index.close()


def _ids(results: list[list[Any]]) -> list[list[str]]:
    return [[hit.id for hit in hits] for hits in results]


def _small(n: int = 5, seed: int = 0) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    ids = [point_id(f"small{seed}-{i}", "test-model") for i in range(n)]
    payloads = [{"class": f"c{i % 2}", "split": "train", "kind": "image"} for i in range(n)]
    return ids, l2_normalize(rng.standard_normal((n, DIM))), payloads


# --- basic contract ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", [*BACKENDS, "qdrant_memory"])
def test_upsert_count_get_round_trip(opener: Opener, backend: str) -> None:
    index = opener(backend)
    ids, vectors, payloads = _small()
    index.upsert(ids, vectors * 3.0, payloads)  # stored normalised
    assert isinstance(index, VectorIndex)
    assert index.count() == 5
    assert index.count({"class": "c0"}) == 3
    got, got_payloads = index.get([ids[3], ids[0]])
    np.testing.assert_allclose(got, vectors[[3, 0]], atol=1e-5)
    assert got_payloads == [payloads[3], payloads[0]]
    with pytest.raises(NotFoundError):
        index.get([point_id("missing", "test-model")])


@pytest.mark.parametrize("backend", BACKENDS)
def test_reupsert_replaces_without_duplicating(opener: Opener, backend: str) -> None:
    index = opener(backend)
    ids, vectors, payloads = _small()
    index.upsert(ids, vectors, payloads)
    new_vectors = _small(seed=1)[1]
    index.upsert(ids[:2], new_vectors[:2], [{"class": "new"}, {"class": "new"}])
    assert index.count() == 5
    assert sorted(index.ids()) == sorted(ids)  # replaced, not duplicated
    assert index.count({"class": "new"}) == 2
    hits = index.search(new_vectors[:2], k=5)
    assert [h[0].id for h in hits] == ids[:2]
    assert all(h[0].score == pytest.approx(1.0, abs=1e-5) for h in hits)
    assert all(len({x.id for x in row}) == len(row) for row in hits)


@pytest.mark.parametrize("backend", BACKENDS)
def test_delete(opener: Opener, backend: str) -> None:
    index = opener(backend)
    ids, vectors, payloads = _small()
    index.upsert(ids, vectors, payloads)
    assert index.delete([ids[1], ids[2], point_id("never", "test-model")]) == 2
    assert index.count() == 3
    assert sorted(index.ids()) == sorted([ids[0], ids[3], ids[4]])
    assert index.delete([ids[1]]) == 0
    with pytest.raises(NotFoundError):
        index.get([ids[1]])
    found = {h.id for h in index.search(vectors, k=5)[1]}
    assert found == {ids[0], ids[3], ids[4]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_larger_than_count_returns_every_point(opener: Opener, backend: str) -> None:
    index = opener(backend)
    ids, vectors, payloads = _small()
    index.upsert(ids, vectors, payloads)
    results = index.search(vectors[:2], k=50)
    assert [sorted(row) for row in _ids(results)] == [sorted(ids)] * 2
    assert all(a.score >= b.score for row in results for a, b in itertools.pairwise(row))


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_index_search_raises(opener: Opener, backend: str) -> None:
    index = opener(backend)
    with pytest.raises(IndexEmptyError, match="empty"):
        index.search(np.ones((1, DIM), np.float32), k=3)
    ids, vectors, payloads = _small()
    index.upsert(ids, vectors, payloads)
    index.delete(ids)
    with pytest.raises(IndexEmptyError):
        index.search(vectors[:1], k=3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_dim_raises_data_error(opener: Opener, backend: str) -> None:
    index = opener(backend)
    ids, vectors, payloads = _small()
    with pytest.raises(DataError, match=str(DIM)):
        index.upsert(ids, np.ones((5, DIM + 1), np.float32), payloads)
    index.upsert(ids, vectors, payloads)
    with pytest.raises(DataError):
        index.search(np.ones((1, DIM - 1), np.float32), k=3)
    with pytest.raises(DataError):
        index.upsert(ids[:2], vectors[:3], payloads[:2])


# --- against the reference ------------------------------------------------------------------


def test_ids_agree_with_exact(loaded: tuple[str, VectorIndex], data: SimpleNamespace) -> None:
    """Every live id, once (Qdrant: scrolled over several pages)."""
    _, index = loaded
    ids = index.ids()
    assert all(isinstance(pid, str) for pid in ids)
    assert len(ids) == len(set(ids)) == index.count()
    assert sorted(ids) == sorted(data.reference.ids())


def test_recall_at_10_against_exact(loaded: tuple[str, VectorIndex], data: SimpleNamespace) -> None:
    backend, index = loaded
    assert index.count() == N
    got, want = index.search(data.queries, K), data.reference.search(data.queries, K)
    recall = np.mean([len(set(g) & set(w)) / K for g, w in zip(_ids(got), _ids(want), strict=True)])
    assert recall >= 0.95, f"{backend} recall@10 = {recall:.3f}"
    same_top = [(g[0], w[0]) for g, w in zip(got, want, strict=True) if g[0].id == w[0].id]
    assert len(same_top) >= 0.95 * N_QUERIES
    for g, w in same_top:  # scores are cosines on every backend
        assert g.score == pytest.approx(w.score, abs=1e-4)


@pytest.mark.parametrize("flt", [SELECTIVE, BROAD], ids=["selective", "broad"])
def test_filtered_search_matches_exact(
    loaded: tuple[str, VectorIndex], data: SimpleNamespace, flt: dict[str, Any]
) -> None:
    backend, index = loaded
    queries = data.queries[:N_FILTERED] if backend == "qdrant" else data.queries
    hits = index.search(queries, K, flt)
    assert all(len(row) == K and all(matches(h.payload, flt) for h in row) for row in hits)
    assert index.count(flt) == data.reference.count(flt)
    got, want = _ids(hits), _ids(data.reference.search(queries, K, flt))
    differ = sum(g != w for g, w in zip(got, want, strict=True))
    if backend == "nmslib" and flt is BROAD:
        # the graph path is approximate (and HNSW builds are not deterministic): allow a
        # query or two to differ, by a neighbour swapped at the tail
        recall = np.mean([len(set(g) & set(w)) / K for g, w in zip(got, want, strict=True)])
        assert differ <= 3 and recall >= 0.99, (differ, recall)
    else:
        assert differ == 0


def test_large_batch_equals_small_batches(
    loaded: tuple[str, VectorIndex], data: SimpleNamespace
) -> None:
    """Past 256 queries nmslib pipelines its graph search; the results must not change."""
    backend, index = loaded
    queries = np.concatenate([data.queries] * 3)  # 300 rows
    flt = None if backend == "qdrant" else BROAD  # local Qdrant filters slowly, in Python
    small = [
        hits
        for start in range(0, 300, 100)
        for hits in index.search(queries[start : start + 100], K, flt)
    ]
    assert _ids(index.search(queries, K, flt)) == _ids(small)


@pytest.mark.parametrize("backend", BACKENDS)
def test_new_vectors_searchable_immediately(
    opener: Opener, backend: str, data: SimpleNamespace
) -> None:
    index = opener("qdrant_memory" if backend == "qdrant" else backend)
    _load(index, data)
    if isinstance(index, NmslibIndex):
        index.rebuild()
    rng = np.random.default_rng(5)
    fresh = l2_normalize(rng.standard_normal((10, DIM)))
    fresh_ids = [point_id(f"fresh{i}", "test-model") for i in range(10)]
    index.upsert(fresh_ids, fresh, [{"class": "fresh", "split": "train"}] * 10)
    hits = index.search(fresh[3:5], k=3)
    assert [row[0].id for row in hits] == fresh_ids[3:5]
    assert index.search(fresh[:1], k=1, filter={"class": "fresh"})[0][0].id == fresh_ids[0]


# --- lifecycle: deferred indexing, rebuild, aliases (every backend takes every call) ------


@pytest.mark.parametrize("backend", BACKENDS)
def test_bulk_load_lifecycle_keeps_every_point_searchable(
    opener: Opener, backend: str, data: SimpleNamespace
) -> None:
    index = opener(backend, buffer_limit=SMALL_BUFFER)
    index.defer_indexing()
    _load(index, data, N_SMALL, batch=50)
    queries = data.vectors[:5]
    assert [hits[0].id for hits in index.search(queries, 1)] == data.ids[:5]
    index.restore_indexing()
    index.rebuild()
    index.set_alias(f"alias_{backend}")
    assert index.count() == N_SMALL
    assert [hits[0].id for hits in index.search(queries, 1)] == data.ids[:5]
    index.flush()


def test_restore_from_another_nmslib_handle_builds_the_graph(
    opener: Opener, data: SimpleNamespace
) -> None:
    loader = opener("nmslib", buffer_limit=SMALL_BUFFER)
    loader.defer_indexing()
    _load(loader, data, N_SMALL, batch=50)
    loader.flush()
    assert isinstance(loader, NmslibIndex) and loader._built == 0
    loader.close()
    finisher = opener("nmslib", buffer_limit=SMALL_BUFFER)
    finisher.restore_indexing()
    assert isinstance(finisher, NmslibIndex) and finisher._built == N_SMALL


def test_nmslib_rebuild_drops_tombstones(opener: Opener, data: SimpleNamespace) -> None:
    index = opener("nmslib", buffer_limit=SMALL_BUFFER)
    _load(index, data, N_SMALL)
    index.delete(data.ids[:10])
    assert isinstance(index, NmslibIndex) and index._n == N_SMALL
    index.rebuild()
    assert index._n == index._built == N_SMALL - 10
    assert index.search(data.vectors[10:11], 1)[0][0].id == data.ids[10]


# --- persistence ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", PERSISTENT)
def test_reopen_gives_same_results(opener: Opener, backend: str, data: SimpleNamespace) -> None:
    index = opener(backend, buffer_limit=SMALL_BUFFER)
    _load(index, data, N_SMALL)  # nmslib: a graph over these points
    index.delete(data.ids[:7])  # tombstones in the nmslib graph
    extra_ids, extra, extra_payloads = _small(20, seed=3)
    index.upsert(extra_ids, extra, extra_payloads)  # the nmslib exact buffer
    queries = data.queries[:N_FILTERED]
    before, before_filtered = index.search(queries, K), index.search(queries, K, BROAD)
    index.flush()
    index.close()
    reopened = opener(backend, buffer_limit=SMALL_BUFFER)
    assert reopened.count() == N_SMALL - 7 + 20
    assert _ids(reopened.search(queries, K)) == _ids(before)
    assert _ids(reopened.search(queries, K, BROAD)) == _ids(before_filtered)
    assert reopened.get(extra_ids[:1])[1] == extra_payloads[:1]


def test_nmslib_crash_keeps_last_flush(opener: Opener, data: SimpleNamespace) -> None:
    index = opener("nmslib", buffer_limit=500)
    _load(index, data)  # graph built, then flushed as a base snapshot
    index.flush()
    extra_ids, extra, extra_payloads = _small(30, seed=4)
    index.upsert(extra_ids[:20], extra[:20], extra_payloads[:20])
    index.delete(data.ids[:5])
    index.flush()  # an appended segment
    flushed = ExactIndex("flushed", DIM)
    flushed.upsert(data.ids[5:], data.vectors[5:], data.payloads[5:])
    flushed.upsert(extra_ids[:20], extra[:20], extra_payloads[:20])
    # unflushed: more points, deletes and a rebuild, then the process "dies"
    index.upsert(extra_ids[20:], extra[20:], extra_payloads[20:])
    index.delete(data.ids[5:50])
    index.rebuild()
    nmslib_dir = Path(index.path)
    (nmslib_dir / "seg-000001-000099.npz").write_bytes(b"half-written")  # never committed
    (nmslib_dir / ".manifest.json.tmp").write_bytes(b"{")
    survivor = opener("nmslib", buffer_limit=500)
    assert survivor.count() == flushed.count() == N - 5 + 20
    with pytest.raises(NotFoundError):
        survivor.get(extra_ids[20:21])
    assert survivor.get(data.ids[5:50])[1] == data.payloads[5:50]
    got, want = survivor.search(data.queries, K), flushed.search(data.queries, K)
    recall = np.mean([len(set(g) & set(w)) / K for g, w in zip(_ids(got), _ids(want), strict=True)])
    assert recall >= 0.95


def test_nmslib_small_batches_rebuild_geometrically(
    opener: Opener, data: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    builds: list[int] = []
    real_rebuild = NmslibIndex.rebuild

    def counting_rebuild(self: NmslibIndex) -> None:
        builds.append(self.count())
        real_rebuild(self)

    monkeypatch.setattr(NmslibIndex, "rebuild", counting_rebuild)
    index = opener("nmslib", buffer_limit=100)
    _load(index, data, batch=100)  # one rebuild per 100 points would be 29 builds
    assert 3 <= len(builds) <= 10, builds
    deferred = NmslibIndex("deferred", DIM, tmp_path / "deferred", buffer_limit=100)
    builds.clear()
    deferred.defer_indexing()
    _load(deferred, data, N_SMALL, batch=50)
    assert builds == []
    deferred.restore_indexing()
    assert builds == [N_SMALL]
    assert deferred.search(data.vectors[:1], 1)[0][0].id == data.ids[0]


def test_nmslib_rebuilds_an_unreadable_graph(opener: Opener, data: SimpleNamespace) -> None:
    index = opener("nmslib", buffer_limit=SMALL_BUFFER)
    _load(index, data, N_SMALL)
    index.close()
    (graph,) = Path(index.path).glob("graph-*.hnsw")
    graph.write_bytes(graph.read_bytes()[:1000])  # e.g. a disk that lost the file's tail
    reopened = opener("nmslib", buffer_limit=SMALL_BUFFER)
    assert reopened.count() == N_SMALL
    assert reopened.search(data.vectors[:1], 1)[0][0].id == data.ids[0]


@pytest.mark.parametrize("backend", ["exact", "nmslib"])
def test_reopen_with_other_dim_raises_config_error(opener: Opener, backend: str) -> None:
    index = opener(backend)
    index.upsert(*_small())
    index.close()
    with pytest.raises(ConfigError, match=rf"{DIM}-d.*\b32-d"):
        opener(backend, dim=32)


# --- factory and Qdrant specifics --------------------------------------------------------


def test_every_registered_backend_is_tested() -> None:
    assert sorted(REGISTRY) == sorted(BACKENDS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_open_index_factory(tmp_path: Path, backend: str) -> None:
    options = {
        "exact": ExactOptions(lock_timeout=1.0),
        "nmslib": NmslibOptions(ef_search=64, buffer_limit=7),
        "qdrant": QdrantOptions(path=tmp_path / "qdrant", upload_batch=32),
    }[backend]
    index = open_index(backend, name="embplat_t", dim=8, root=tmp_path, options=options)
    try:
        assert isinstance(index, VectorIndex)
        assert index.name == "embplat_t"
        assert index.dim == 8
        if isinstance(index, NmslibIndex):
            assert (index.ef_search, index.buffer_limit) == (64, 7)
        if isinstance(index, QdrantIndex):
            assert index.upload_batch == 32
    finally:
        index.close()


def test_open_index_rejects_another_backends_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NmslibOptions, got QdrantOptions"):
        open_index("nmslib", name="x", dim=8, root=tmp_path, options=QdrantOptions())


def test_qdrant_needs_a_url_or_a_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EMBPLAT_QDRANT_URL"):
        open_index("qdrant", name="x", dim=8, root=tmp_path)


def test_unknown_backend_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exact, nmslib, qdrant"):
        open_index("faiss", name="x", dim=8, root=tmp_path)


def test_collection_name_is_sanitised() -> None:
    assert collection_name("EfficientNet-Lite0@v1.2") == "embplat_efficientnet_lite0_v1_2"
    with pytest.raises(ConfigError):
        collection_name("@@@")


def test_qdrant_dim_mismatch_names_both_dims() -> None:
    client = QdrantClient(":memory:")
    QdrantIndex("embplat_x", 8, client)
    with pytest.raises(ConfigError, match=r"embplat_x.*\b8-d.*\b16-d"):
        QdrantIndex("embplat_x", 16, client)
    client.close()


def test_qdrant_alias_and_bulk_load_switches() -> None:
    client = QdrantClient(":memory:")
    first, second = QdrantIndex("embplat_a", DIM, client), QdrantIndex("embplat_b", DIM, client)
    first.set_alias("embplat_images")
    second.set_alias("embplat_images")
    aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    assert aliases == {"embplat_images": "embplat_b"}
    second.defer_indexing()  # no-ops in local mode, but must not fail
    second.restore_indexing()
    client.close()


def test_qdrant_rejects_non_uuid_ids() -> None:
    client = QdrantClient(":memory:")
    index = QdrantIndex("embplat_ids", DIM, client)
    _, vectors, payloads = _small(1)
    with pytest.raises(DataError, match="UUID"):
        index.upsert(["not-a-uuid"], vectors, payloads)
    with pytest.raises(DataError, match="lists"):
        index.count({"class": ["a", 1]})
    client.close()
