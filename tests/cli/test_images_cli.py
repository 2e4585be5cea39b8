"""`platform images delete`, `platform classes remove` and the ingest summary of deleted files,
through Typer's CliRunner (tiny_cnn, exact index), with a second collection standing in for a
trained model's index."""

import json

import pytest
import torch
from sqlalchemy import func, select
from typer.testing import CliRunner

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Collection, Embedding, Image
from embplat.cli.app import app
from embplat.config import load_settings
from embplat.retrieval import collection_name
from embplat.workers.context import build_context

pytestmark = pytest.mark.reliability

runner = CliRunner()
COMMON = ["--encoder", "tiny_cnn", "--backend", "exact"]
EXTRA = "extra-model"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "home"
    torch.set_num_threads(threads)


def invoke(*args):
    return runner.invoke(app, [*COMMON, *args], catch_exceptions=False)


def _context(home):
    settings = load_settings(
        **{"home": home, "index.backend": "exact", "embed.encoder": "tiny_cnn"}
    )
    settings.catalog.url = None
    return build_context(settings)


def _add_extra_collection(home):
    """Copy the active index's points into a second model's collection (as training would)."""
    ctx = _context(home)
    try:
        space = ctx.spaces.space()
        with transaction(ctx.sessions) as s:
            model = repo.ensure_model(
                session=s, name=EXTRA, kind="metric", encoder="tiny_cnn", weights="test",
                dim=space.encoder.dim, image_size=space.encoder.image_size, config={},
            )  # fmt: skip
            coll = repo.ensure_collection(
                session=s, name=collection_name(EXTRA), model_id=model.id,
                backend="exact", dim=space.encoder.dim,
            )  # fmt: skip
            rows = repo.embedded_images(
                session=s, collection_id=space.collection_id, splits=["train", "valid", "test"]
            )
            repo.add_embeddings(
                session=s, collection_id=coll.id, points=[(r[0], r[3]) for r in rows]
            )
        pids = [r[3] for r in rows]
        vectors, payloads = space.index.get(pids)
        ctx.spaces.index(collection_name(EXTRA), space.encoder.dim).upsert(pids, vectors, payloads)
    finally:
        ctx.close()


def _counts(home):
    """(image rows, {collection: embedding rows}, {collection: index points})."""
    ctx = _context(home)
    try:
        with ctx.sessions() as s:
            images = s.scalar(select(func.count()).select_from(Image))
            colls = {c.name: (c.id, c.dim) for c in s.scalars(select(Collection))}
            emb = {
                name: s.scalar(
                    select(func.count())
                    .select_from(Embedding)
                    .where(Embedding.collection_id == cid)
                )
                for name, (cid, _) in colls.items()
            }
        points = {name: ctx.spaces.index(name, dim).count() for name, (_, dim) in colls.items()}
    finally:
        ctx.close()
    return images, emb, points


@pytest.fixture
def ingested(home, bmp_tree):
    r = invoke("ingest", str(bmp_tree))
    assert r.exit_code == 0, r.output
    _add_extra_collection(home)
    images, emb, points = _counts(home)
    assert images == 6 and set(emb.values()) == set(points.values()) == {6}, (emb, points)
    return bmp_tree


def test_images_delete_by_path_glob_and_id(home, ingested):
    tree = ingested
    r = invoke("images", "delete", str(tree / "cats" / "cats_0.bmp"))
    assert r.exit_code == 0, r.output
    assert "1 image removed" in r.stdout and f"removed {tree / 'cats' / 'cats_0.bmp'}" in r.stdout
    images, emb, points = _counts(home)
    assert images == 5 and set(emb.values()) == set(points.values()) == {5}

    r = invoke("images", "delete", str(tree / "coffee" / "coffee_*.bmp"), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["removed"] == 3
    assert sorted(i["path"] for i in out["images"]) == [
        str(tree / "coffee" / f"coffee_{i}.bmp") for i in range(3)
    ]
    images, emb, points = _counts(home)
    assert images == 2 and set(emb.values()) == set(points.values()) == {2}

    ctx = _context(home)
    with ctx.sessions() as s:
        [row] = repo.known_files(session=s, paths=[str(tree / "cats" / "cats_1.bmp")]).values()
    ctx.close()
    r = invoke("images", "delete", "--id", str(row[0].image_id), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["removed"] == 1
    images, emb, points = _counts(home)
    assert images == 1 and set(emb.values()) == set(points.values()) == {1}
    assert (tree / "cats" / "cats_1.bmp").exists()  # files on disk are not touched


def test_images_delete_unknown_path_or_id_is_one_red_line(home, ingested):
    missing = ingested / "cats" / "nope.bmp"
    for args in ([str(missing)], [str(ingested / "dogs" / "*.bmp")], ["--id", "999"], []):
        r = invoke("images", "delete", *args)
        assert r.exit_code == 1, (args, r.output)
        assert len(r.stderr.strip().splitlines()) == 1 and "error" in r.stderr
    assert "nope.bmp" in invoke("images", "delete", str(missing)).stderr
    assert _counts(home)[0] == 6


def test_classes_remove(home, ingested):
    r = invoke("classes", "remove", "cats")
    assert r.exit_code == 0, r.output
    assert "removed class cats: 3 images" in " ".join(r.stdout.split())
    images, emb, points = _counts(home)
    assert images == 3 and set(emb.values()) == set(points.values()) == {3}
    names = [c["name"] for c in json.loads(invoke("classes", "list", "--json").stdout)]
    assert names == ["coffee"]

    r = invoke("classes", "remove", "cats")
    assert r.exit_code == 1 and "no class named 'cats'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = invoke("classes", "remove", "coffee", "--json")
    assert json.loads(r.stdout) == {"class": "coffee", "images": 3, "labels": 0}
    assert _counts(home)[0] == 0


def test_ingest_summary_reports_files_gone(home, ingested):
    (ingested / "cats" / "cats_2.bmp").unlink()
    r = invoke("ingest", str(ingested), "--models", "none")
    line = " ".join(r.stdout.split())
    assert r.exit_code == 0, r.output
    assert "0 new, 1 removed (files gone), 5 already cataloged" in line
    images, emb, points = _counts(home)
    assert images == 5 and set(emb.values()) == set(points.values()) == {5}

    for name in ("cats_0.bmp", "cats_1.bmp", "coffee_0.bmp"):
        next(ingested.rglob(name)).unlink()
    r = invoke("ingest", str(ingested), "--models", "none")
    assert "3 missing (kept)" in " ".join(r.stdout.split()) and "--prune" in r.stderr
    r = invoke("ingest", str(ingested), "--models", "none", "--prune", "--json")
    assert (json.loads(r.stdout)["missing"], json.loads(r.stdout)["removed"]) == (3, 3)
    assert _counts(home)[0] == 2
