"""``train matching``, ``search --text`` / ``search --image --captions`` with a matching model,
``evaluate --model`` and ``models compare`` of matching models, through Typer's CliRunner."""

import json

import pytest
from typer.testing import CliRunner

from embplat.cli.app import app

runner = CliRunner()
GLOBAL = ["--encoder", "tiny_cnn", "--backend", "exact", "--device", "cpu"]
TRAIN = ["--text-encoder", "glove", "--embed-dim", "32", "--batch-size", "32", "--lr", "0.01"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
    return tmp_path


def run(*args):
    return runner.invoke(app, [*GLOBAL, *args], catch_exceptions=False)


def run_json(*args):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_search_evaluate_compare(env):
    scenes = env / "scenes"
    r = run("datasets", "scenes", "--out", str(scenes), "--images", "40", "--size", "64")
    assert r.exit_code == 0, r.output
    assert run_json("ingest", str(scenes))["captions"] == 200
    info = run_json("train", "matching", *TRAIN, "--loss", "infonce", "--epochs", "3")
    assert (info["name"], info["kind"], info["dim"]) == ("matching-1", "matching", 32)
    assert info["data"]["train_captions"] == 160 and len(info["epochs"]) == 3
    r = run("train", "matching", *TRAIN, "--loss", "order", "--epochs", "2")
    assert r.exit_code == 0, r.output
    assert "captions of 32 train images" in r.output and "matching-2" in r.output

    hits = run_json(
        "search", "--text", "a red circle above a blue square", "--model", "matching-1"
    )["matches"]
    assert len(hits) == 5 and {"path", "score"} <= set(hits[0])
    assert hits[0]["score"] >= hits[-1]["score"]
    query = scenes / "Flicker8k_Dataset" / "scene_00003.jpg"
    found = run_json("search", "--image", str(query), "--captions", "--model", "matching-1")[
        "matches"
    ]
    assert len(found) == 5 and {"text", "path", "score"} <= set(found[0])
    r = run("search", "--image", str(query), "--captions", "--model", "matching-1", "--k", "2")
    assert r.exit_code == 0 and "captions nearest to" in r.output

    out = run_json("evaluate", "--model", "matching-1")
    assert (out["split"], out["images"], out["captions"]) == ("test", 4, 20)
    assert {"t2i_r1", "t2i_r5", "t2i_r10", "t2i_median_rank", "i2t_mean_rank"} <= set(
        out["metrics"]
    )
    r = run("evaluate", "--model", "matching-2")
    assert r.exit_code == 0 and "exact (order)" in r.output and "recorded" in r.output
    compared = run_json("models", "compare", "matching-1", "matching-2", "--split", "test")
    assert set(compared) == {"matching-1", "matching-2"}
    assert all("t2i_r5" in values and "index_t2i_r5" in values for values in compared.values())


def test_user_errors_are_one_line(env):
    r = run("search", "--image", str(env / "x.jpg"), "--captions")
    assert r.exit_code != 0 and "--captions needs --model" in r.output
    r = run("train", "matching", "--loss", "triplet", "--epochs", "1")
    assert r.exit_code != 0 and "unknown matching loss 'triplet'" in r.output
    r = run("train", "matching", "--text-encoder", "bert", "--epochs", "1")
    assert r.exit_code != 0 and "unknown text encoder 'bert'" in r.output
