"""``--json`` on the commands that print results: encoders, db current, vectors load; and
``classify``/``search``, whose JSON is the Python API's ``to_dict()`` (the HTTP service's
keys too)."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from embplat.cli.app import app


def test_encoders_db_current_and_vectors_load_print_json(tmp_path):
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    encoders = runner.invoke(app, ["encoders", "--json"])
    assert encoders.exit_code == 0 and "tiny_cnn" in json.loads(encoders.stdout)
    current = runner.invoke(app, [*home, "db", "current", "--json"])
    info = json.loads(current.stdout)
    assert current.exit_code == 0 and set(info) == {"catalog", "current", "head"}
    words = tmp_path / "tiny.txt"
    words.write_text("red 1 0 0\nblue 0 1 0\ngreen 0 0 1\n")
    loaded = runner.invoke(app, [*home, "vectors", "load", str(words), "--json"])
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(loaded.stdout)["dim"] == 3


@pytest.fixture
def tiny_home(tmp_path, monkeypatch, fmnist_root):
    """A home with the tiny Fashion-MNIST tree ingested by the seeded tiny encoder; the CLI's
    root flags for it."""
    for key in [k for k in os.environ if k.startswith("EMBPLAT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
    flags = ["--home", str(tmp_path / "home"), "--encoder", "tiny_cnn", "--backend", "exact"]
    ingested = CliRunner().invoke(app, [*flags, "ingest", str(fmnist_root), "--json"])
    assert ingested.exit_code == 0, ingested.output
    return tmp_path / "home", flags


def test_classify_and_search_json_is_the_python_apis(tiny_home, fmnist_queries):
    from embplat.api import Platform
    from embplat.config import load_settings

    home, flags = tiny_home
    query = sorted((fmnist_queries / "bag").iterdir())[0]
    missing = query.parent / "missing.jpg"
    runner = CliRunner()
    classified = runner.invoke(app, [*flags, "classify", str(query), str(missing), "--json"])
    searched = runner.invoke(
        app, [*flags, "search", "--image", str(query), "--k", "4", "--split", "train", "--json"]
    )
    assert classified.exit_code == 1 and searched.exit_code == 0, searched.output
    settings = load_settings(
        **{"home": home, "embed.encoder": "tiny_cnn", "index.backend": "exact"}
    )
    settings.catalog.url = None
    with Platform(settings=settings) as platform:
        answers = [a.to_dict() for a in platform.classify_many([query, missing])]
        assert json.loads(classified.stdout) == answers
        assert json.loads(classified.stdout)[0] == platform.classify(query).to_dict()
        expected = platform.search(image=query, k=4, split="train").to_dict()
    assert json.loads(searched.stdout) == expected
    assert answers[1] == {"source": str(missing), "error": "does not exist"}
    assert set(answers[0]) >= {"source", "label", "confidence", "tallies", "neighbours"}
    assert len(expected["matches"]) == 4 and expected["query"] == f"image {query}"
