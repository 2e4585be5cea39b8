"""``platform doctor``: each kind of drift is injected into a real home, found, and repaired
back to exact counts; a healthy home reports nothing."""

import json
import os
import shutil
import uuid

import numpy as np
import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from embplat.catalog.models import Embedding, Image, Job
from embplat.ingest.fashion_mnist import build_fashion_mnist
from embplat.pipelines.doctor import run_doctor
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.query import search_by_image

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

N_IMAGES = 15


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("doctor") / "fm"
    return build_fashion_mnist(out, per_class=5, classes=("coat", "trouser", "bag"))


@pytest.fixture
def home(tmp_path, small_tree, context_factory):
    """A freshly ingested home: (context, tree)."""
    tree = tmp_path / "tree"
    shutil.copytree(small_tree, tree)
    ctx = context_factory("nmslib", home=tmp_path / "home")
    result = ingest_tree(ctx, tree)
    assert result.embedded == N_IMAGES
    return ctx, tree


def _checks(report):
    return {f.check: f.count for f in report.findings}


def _agree(ctx, n=N_IMAGES):
    """Catalog and active index hold exactly ``n`` images, the same ids, no duplicates."""
    space = ctx.spaces.space()
    with ctx.sessions() as s:
        recorded = set(
            s.scalars(
                select(Embedding.point_id).where(Embedding.collection_id == space.collection_id)
            )
        )
    ids = space.index.ids()
    assert len(ids) == len(set(ids)) == n
    assert set(ids) == recorded


def _repair_and_verify(ctx, expect):
    found = run_doctor(ctx)
    assert not found.healthy
    assert _checks(found) == expect
    fixed = run_doctor(ctx, repair=True)
    assert fixed.healthy, fixed.as_dict()
    after = run_doctor(ctx)
    assert after.healthy and after.findings == []


def test_healthy_home_reports_nothing(home):
    ctx, _ = home
    report = run_doctor(ctx)
    assert report.healthy and report.findings == []
    (counts,) = report.collections.values()
    assert counts == {"recorded": N_IMAGES, "points": N_IMAGES, "pending": 0}


def test_crash_between_index_flush_and_catalog_commit(home):
    """The state a kill between the index flush and the catalog commit leaves."""
    ctx, _ = home
    with ctx.sessions.begin() as s:
        last = s.scalars(select(Embedding.id).order_by(Embedding.id.desc()).limit(5)).all()
        s.execute(delete(Embedding).where(Embedding.id.in_(last)))
    _repair_and_verify(ctx, {"unrecorded_points": 5})
    _agree(ctx)


def test_points_missing_from_the_index_are_embedded_again(home):
    ctx, _ = home
    index = ctx.spaces.space().index
    gone = index.ids()[:3]
    index.delete(gone)
    index.flush()
    _repair_and_verify(ctx, {"missing_points": 3})
    _agree(ctx)
    assert set(gone) <= set(index.ids())


def test_index_folder_deleted(home):
    ctx, _ = home
    name = ctx.spaces.space().index.name
    ctx.close()
    shutil.rmtree(ctx.home / "index" / name)
    _repair_and_verify(ctx, {"missing_points": N_IMAGES})
    _agree(ctx)


def test_orphan_point_is_deleted(home):
    ctx, _ = home
    index = ctx.spaces.space().index
    orphan = str(uuid.uuid4())
    vec = np.random.default_rng(0).normal(size=(1, index.dim)).astype(np.float32)
    index.upsert([orphan], vec, [{"kind": "image", "image_id": 10_000, "class": "coat"}])
    index.flush()
    _repair_and_verify(ctx, {"orphan_points": 1})
    assert orphan not in index.ids()
    _agree(ctx)


def test_stale_payload_is_rewritten(home):
    ctx, _ = home
    with ctx.sessions.begin() as s:
        image_id = s.scalars(select(Image.id).order_by(Image.id).limit(1)).one()
        s.execute(update(Image).where(Image.id == image_id).values(split="valid"))
    _repair_and_verify(ctx, {"stale_payloads": 1})
    hits = ctx.spaces.space().index.search(
        ctx.spaces.space().index.get(ctx.spaces.space().index.ids())[0],
        k=N_IMAGES,
        filter={"split": "valid"},
    )
    assert image_id in {h.payload["image_id"] for h in hits[0]}


@pytest.mark.parametrize("damage", ["truncate_base", "garbage_manifest", "flip_segment"])
def test_damaged_index_is_detected_moved_aside_and_rebuilt(home, damage):
    ctx, tree = home
    name = ctx.spaces.space().index.name
    ctx.close()
    folder = ctx.home / "index" / name
    manifest = json.loads((folder / "manifest.json").read_text())
    if damage == "truncate_base":
        base = folder / manifest["base"]
        base.write_bytes(base.read_bytes()[: base.stat().st_size // 2])
    elif damage == "garbage_manifest":
        (folder / "manifest.json").write_bytes(os.urandom(64))
    else:
        files = [folder / f for f in manifest["segments"]] or [folder / manifest["base"]]
        blob = bytearray(files[-1].read_bytes())
        blob[len(blob) // 2 : len(blob) // 2 + 64] = os.urandom(64)
        files[-1].write_bytes(bytes(blob))
    found = run_doctor(ctx)
    assert _checks(found) == {"damaged_index": 1}
    assert "doctor --repair" in found.findings[0].message
    fixed = run_doctor(ctx, repair=True)
    assert fixed.healthy, fixed.as_dict()
    assert any(p.name.startswith(f"{name}.damaged-") for p in folder.parent.iterdir())
    _agree(ctx)
    query = next(tree.rglob("*.jpg"))
    hits, _ = search_by_image(ctx, query, k=1)
    assert hits[0].path == str(query.absolute())


def test_missing_image_files_are_removed(home):
    ctx, tree = home
    gone = sorted(tree.rglob("*.jpg"))[:2]
    for path in gone:
        path.unlink()
    _repair_and_verify(ctx, {"missing_files": 2})
    _agree(ctx, N_IMAGES - 2)
    with ctx.sessions() as s:
        paths = set(s.scalars(select(Image.path)))
    assert not {str(p.absolute()) for p in gone} & paths


def test_most_files_gone_is_not_pruned(home):
    """An unmounted or moved folder must not empty the catalog."""
    ctx, tree = home
    shutil.rmtree(tree)
    report = run_doctor(ctx, repair=True)
    (finding,) = [f for f in report.findings if f.check == "missing_files"]
    assert finding.count == N_IMAGES and finding.repaired == 0
    assert "moved folder" in finding.message
    _agree(ctx)


def test_job_of_a_dead_process_is_interrupted(home):
    ctx, _ = home
    with ctx.sessions.begin() as s:
        job = Job(kind="ingest", state="running", params={"runner": _dead_runner()})
        s.add(job)
        s.flush()
        job_id = job.id
    report = run_doctor(ctx)
    assert _checks(report) == {"dead_jobs": 1}
    with ctx.sessions() as s:
        assert s.get(Job, job_id).state == "interrupted"
    assert run_doctor(ctx).findings == []


def test_models_whose_checkpoint_or_label_vectors_are_gone_are_reported(home, tmp_path):
    from embplat.catalog import repo
    from embplat.ingest.fashion_mnist import FASHION_MNIST_ATTRIBUTES, FASHION_MNIST_PREDICATES
    from embplat.models.attributes import AttributeTable, store_attributes

    ctx, _ = home
    classes = ["coat", "bag"]
    matrix = np.array([FASHION_MNIST_ATTRIBUTES[c] for c in classes], np.float32)
    source = store_attributes(AttributeTable(classes, FASHION_MNIST_PREDICATES, matrix), ctx.home)
    checkpoint = ctx.home / "models" / "devise-9" / "epoch-1.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    config = {"checkpoint": "models/devise-9/epoch-1.pt", "vectors": source.as_dict()}
    fields = dict(kind="devise", encoder="efficientnet_lite0", dim=23, image_size=64)
    with ctx.sessions.begin() as s:
        repo.ensure_model(
            session=s, name="devise-9", weights=str(checkpoint), config=config, **fields
        )
        glove = {
            "checkpoint": str(checkpoint),
            "vectors": {"kind": "bundled", "path": ""},
        }  # absolute
        repo.ensure_model(session=s, name="devise-10", weights="x", config=glove, **fields)
    assert run_doctor(ctx).findings == []  # both present; bundled vectors have no path

    shutil.rmtree(source.path)
    checkpoint.unlink()
    report = run_doctor(ctx)
    assert _checks(report) == {"missing_checkpoints": 2, "missing_vectors": 1}
    assert not report.healthy and not run_doctor(ctx, repair=True).healthy  # nothing to repair
    [vectors] = [f for f in report.findings if f.check == "missing_vectors"]
    assert vectors.where == "models" and vectors.examples == [
        f"devise-9: {source.path} ({source.origin})"
    ]

    store_attributes(AttributeTable(classes, FASHION_MNIST_PREDICATES, matrix), ctx.home)
    assert _checks(run_doctor(ctx)) == {"missing_checkpoints": 2}  # the same table, same place


def _dead_runner():
    import socket
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return {"host": socket.gethostname(), "pid": proc.pid, "started": 0.0}


def test_cli_exit_codes_and_json(home, tmp_path):
    from embplat.cli.app import app

    ctx, _ = home
    env = {
        "EMBPLAT_HOME": str(ctx.home),
        "EMBPLAT_INDEX_BACKEND": "nmslib",
        "EMBPLAT_EMBED_IMAGE_SIZE": "64",
    }
    ctx.close()
    runner = CliRunner()
    ok = runner.invoke(app, ["doctor", "--json"], env=env)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["healthy"] is True
    index = ctx.spaces.space().index
    index.delete(index.ids()[:2])
    index.flush()
    ctx.close()
    bad = runner.invoke(app, ["doctor"], env=env)
    assert bad.exit_code == 1 and "missing_points" in bad.stdout
    fixed = runner.invoke(app, ["doctor", "--repair", "--json"], env=env)
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["findings"][0]["repaired"] == 2


def test_reingest_embeds_again_what_a_deleted_index_lost(home):
    ctx, tree = home
    name = ctx.spaces.space().index.name
    ctx.close()
    shutil.rmtree(ctx.home / "index" / name)
    again = ingest_tree(ctx, tree)
    assert again.embedded == N_IMAGES
    _agree(ctx)
    assert run_doctor(ctx).findings == []


def test_index_reverted_to_an_older_copy_then_many_ingests(home, tmp_path):
    """An index folder restored from an older copy (as after a file-system crash) followed by
    many small ingests: every open succeeds and catalog and index end equal."""
    ctx, tree = home
    name = ctx.spaces.space().index.name
    ctx.close()
    folder = ctx.home / "index" / name
    old = tmp_path / "old-copy"
    shutil.copytree(folder, old)
    extra = tmp_path / "extra"
    build_fashion_mnist(extra, per_class=3, classes=("sneaker", "pullover"), offset=40)
    ingest_tree(ctx, extra / "JPEGImages")
    ctx.close()
    shutil.rmtree(folder)
    shutil.copytree(old, folder)
    for round_ in range(3):
        result = ingest_tree(ctx, tree)
        assert result.embedded == (0 if round_ else 6)  # the 6 points the old copy lacks
        ingest_tree(ctx, extra / "JPEGImages")
        ctx.close()
    _agree(ctx, N_IMAGES + 6)
    assert run_doctor(ctx).findings == []


def test_worker_job_without_progress_is_resumed(home):
    """Server mode: a batched job whose broker messages were lost stays `running`; doctor
    finds it by the age of its batches and --repair sends (here: runs) them again."""
    from datetime import UTC, datetime, timedelta

    from embplat.catalog.models import JobBatch

    ctx, _ = home
    old = datetime.now(UTC) - timedelta(hours=3)
    with ctx.sessions.begin() as s:
        image_ids = s.scalars(select(Image.id).order_by(Image.id).limit(4)).all()
        job = Job(kind="ingest", state="running", params={}, total=4)
        s.add(job)
        s.flush()
        job_id = job.id
        s.add(JobBatch(job_id=job_id, seq=0, items=list(image_ids), state="queued"))
        s.add(Job(kind="ingest", state="running", params={}, total=0))  # no batches: skipped
    s_batch = update(JobBatch).where(JobBatch.job_id == job_id).values(updated_at=old)
    with ctx.sessions.begin() as s:
        s.execute(s_batch)
    assert run_doctor(ctx).findings == []  # the check runs only when asked (server mode)
    found = run_doctor(ctx, stale_after=3600)
    assert _checks(found) == {"stale_jobs": 1} and found.findings[0].examples == [str(job_id)]
    fixed = run_doctor(ctx, repair=True, stale_after=3600)
    assert fixed.healthy
    with ctx.sessions() as s:
        assert s.get(Job, job_id).state == "succeeded"
    assert run_doctor(ctx, stale_after=3600).findings == []
