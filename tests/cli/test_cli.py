"""The CLI through Typer's CliRunner, and once as a real subprocess."""

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from embplat.cli.app import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("EMBPLAT_HOME", str(home))
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
    return ["--encoder", "efficientnet_lite0", "--image-size", "64", "--backend", "nmslib"]


def invoke(args):
    result = runner.invoke(app, args, catch_exceptions=False)
    return result


@pytest.mark.slow
def test_ingest_classify_search_evaluate_json(env, fmnist_root, fmnist_queries):
    r = invoke([*env, "ingest", str(fmnist_root), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["added"] == summary["embedded"] == summary["scanned"] == 120

    query = fmnist_queries / "trouser" / "trouser_00001.jpg"
    r = invoke([*env, "classify", str(query), str(query), "--k", "5", "--json"])
    assert r.exit_code == 0, r.output
    preds = json.loads(r.stdout)
    assert len(preds) == 2 and preds[0]["label"] == "trouser"
    assert len(preds[0]["neighbours"]) == 5 and preds[0] == preds[1]

    r = invoke([*env, "search", "--image", str(query), "--k", "3", "--class", "coat", "--json"])
    assert r.exit_code == 0, r.output
    found = json.loads(r.stdout)
    assert [h["label"] for h in found["matches"]] == ["coat"] * 3
    assert found["query"] == f"image {query}" and found["model"] is None

    r = invoke([*env, "evaluate", "--split", "valid", "--k", "5", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["accuracy"] > 0.5

    r = invoke([*env, "classes", "list", "--json"])
    roles = {c["name"]: c["role"] for c in json.loads(r.stdout)}
    assert roles["sandal"] == "unseen" and roles["coat"] == "seen"

    r = invoke([*env, "jobs", "--json"])
    assert [j["state"] for j in json.loads(r.stdout)] == ["succeeded"]

    r = invoke([*env, "classify", str(query), "--k", "3"])  # human output
    assert r.exit_code == 0 and "trouser" in r.stdout and "votes" in r.stdout


def test_ingest_summary_counts_replaced_files(env, bmp_tree, imagefactory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    args = ["--encoder", "tiny_cnn", "--backend", "exact", "ingest", str(bmp_tree)]
    try:
        first = invoke(args)
        assert first.exit_code == 0 and "replaced" not in first.stdout
        (bmp_tree / "cats" / "cats_0.bmp").write_bytes(imagefactory.photo_bmp("astronaut", 6, 32))
        line = " ".join(invoke(args).stdout.split())  # Rich wraps the long summary line
        assert "1 new, 1 replaced, 5 already cataloged, 0 skipped, 1 embedded" in line
        (bmp_tree / "cats" / "cats_1.bmp").write_bytes(imagefactory.photo_bmp("astronaut", 9, 32))
        summary = json.loads(invoke([*args, "--json"]).stdout)
        assert (summary["added"], summary["replaced"], summary["already"]) == (1, 1, 5)
        common = ["--encoder", "tiny_cnn", "--backend", "exact"]
        r = invoke([*common, "jobs", "resume", "1"])  # finished: nothing to run again
        assert r.exit_code == 0 and "0 batches run again, job succeeded" in r.stdout
        r = invoke([*common, "jobs", "resume", "99"])
        assert r.exit_code == 1 and "99" in r.stderr
        assert len(json.loads(invoke([*common, "jobs", "--json"]).stdout)) == 3
    finally:
        torch.set_num_threads(threads)


@pytest.mark.reliability
def test_user_errors_are_one_red_line_failures_exit_1_usage_errors_2(env, tmp_path):
    r = invoke([*env, "classify", str(tmp_path / "missing.jpg")])
    assert r.exit_code == 1
    assert "error:" in r.stderr and "Traceback" not in r.output
    r = invoke([*env, "ingest", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "nowhere" in r.stderr
    image = tmp_path / "x.jpg"
    Image.new("RGB", (8, 8)).save(image)
    r = invoke(["--encoder", "nope", "classify", str(image)])
    assert r.exit_code == 2 and "unknown encoder 'nope'" in r.stderr


@pytest.mark.reliability
def test_classify_before_ingest_says_what_to_do(env, fmnist_queries):
    r = invoke([*env, "classify", str(fmnist_queries / "coat" / "coat_00001.jpg")])
    assert r.exit_code == 1 and "platform ingest" in r.stderr


@pytest.mark.reliability
def test_bad_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("EMBPLAT_CATALOG_URL", "mysql://x")
    r = invoke(["status"])
    assert r.exit_code == 2 and "catalog" in r.stderr and "sqlite://" in r.stderr


@pytest.mark.reliability
def test_real_subprocess_reports_error_without_traceback(tmp_path):
    env = {**os.environ, "EMBPLAT_HOME": str(tmp_path / "h")}
    env.pop("EMBPLAT_CATALOG_URL", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "embplat",
            "--encoder",
            "tiny_cnn",
            "classify",
            str(tmp_path / "missing.jpg"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "missing.jpg does not exist" in proc.stderr and "Traceback" not in proc.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "embplat", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    for command in ("ingest", "classify", "search", "classes", "evaluate", "datasets"):
        assert command in help_text
