"""``platform classify --reject-below`` through Typer's CliRunner (tiny encoder, exact index)."""

import json

from typer.testing import CliRunner

from embplat.cli.app import app

runner = CliRunner()


def test_classify_reject_below_answers_unknown(tmp_path, monkeypatch, fmnist_root, fmnist_queries):
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
    env = ["--encoder", "tiny_cnn", "--backend", "exact"]
    query = str(fmnist_queries / "coat" / "coat_00001.jpg")

    bad = runner.invoke(app, [*env, "classify", query, "--reject-below", "0.5", "--reject-on", "x"])
    assert bad.exit_code == 2 and "--reject-on" in bad.output

    assert runner.invoke(app, [*env, "ingest", str(fmnist_root), "--json"]).exit_code == 0
    r = runner.invoke(
        app, [*env, "classify", query, "--k", "5", "--reject-below", "1.01", "--json"]
    )
    assert r.exit_code == 0, r.output
    (pred,) = json.loads(r.stdout)
    assert pred["label"] == "unknown" and pred["best_label"] not in (None, "unknown")

    r = runner.invoke(
        app, [*env, "classify", query, "--k", "5", "--reject-below", "1.01", "--show", "0"]
    )
    assert r.exit_code == 0 and "unknown" in r.stdout and f"best {pred['best_label']}" in r.stdout
    r = runner.invoke(
        app,
        [
            *env,
            "classify",
            query,
            "--k",
            "5",
            "--reject-below",
            "-1",
            "--reject-on",
            "score",
            "--json",
        ],
    )
    assert json.loads(r.stdout)[0]["label"] == pred["best_label"]
