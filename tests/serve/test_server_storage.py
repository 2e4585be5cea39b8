"""The service on server-mode storage: a PostgreSQL catalog and a Qdrant collection (Qdrant's
local mode, which speaks the server's API), answering as the Python API did on that home."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from servers import start_server, stop

pytestmark = [pytest.mark.slow, pytest.mark.services]

FLAGS = ("--encoder", "tiny_cnn", "--backend", "qdrant")


def _settings(home: Path, catalog: str, qdrant: Path):
    from embplat.config import load_settings

    settings = load_settings(
        **{
            "home": home,
            "embed.encoder": "tiny_cnn",
            "embed.num_workers": 0,
            "index.backend": "qdrant",
        }
    )
    settings.catalog.url = catalog
    settings.index.qdrant = settings.index.qdrant.model_copy(update={"path": qdrant, "url": None})
    return settings


def test_service_on_postgres_and_qdrant(tmp_path, pg_database, fmnist_root, fmnist_queries):
    from embplat.api import Platform
    from embplat.catalog.db import make_engine, upgrade

    engine = make_engine(pg_database)
    upgrade(engine)  # `platform db upgrade`: a server's catalog is never upgraded implicitly
    engine.dispose()
    shutil.copytree(fmnist_root.parent, tmp_path / "awa2")
    home, qdrant = tmp_path / "home", tmp_path / "qdrant"
    queries = [sorted(folder.iterdir())[0] for folder in sorted(fmnist_queries.iterdir())[:4]]
    # Qdrant's local mode takes one process: answer in-process first, then serve
    with Platform(settings=_settings(home, pg_database, qdrant)) as platform:
        platform.ingest(tmp_path / "awa2" / "JPEGImages")
        expected = [a.to_dict() for a in platform.classify_many(queries, k=5)]
        point = expected[0]["neighbours"][0]
    env = {
        "EMBPLAT_CATALOG_URL": pg_database,
        "EMBPLAT_QDRANT_PATH": str(qdrant),
    }
    env.pop("EMBPLAT_QDRANT_URL", None)
    server = start_server(home, tmp_path / "serve.log", flags=FLAGS, **env)
    try:
        with server.client() as client:
            ready = client.get("/readyz")
            files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in queries]
            served = client.post("/classify", params={"k": 5}, files=files).json()["results"]
            image = client.get(f"/images/{point['image_id']}")
    finally:
        stop(server)
    assert ready.status_code == 200, ready.text
    assert [(a["label"], a["tallies"]) for a in served] == [
        (a["label"], a["tallies"]) for a in expected
    ]
    assert [[n["image_id"] for n in a["neighbours"]] for a in served] == [
        [n["image_id"] for n in a["neighbours"]] for a in expected
    ]
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
