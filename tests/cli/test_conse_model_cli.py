"""A ConSE space registered by ``classify --space conse`` is listed among the models, but it
has no checkpoint: ``models embed`` and ``classify --model`` refuse it in one line that says
to use ``--space conse`` (not that it is a pretrained encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embplat.cli.app import app

pytestmark = pytest.mark.slow

runner = CliRunner()
COMMON = ["--encoder", "tiny_cnn", "--backend", "exact"]


def invoke(*args: str):
    result = runner.invoke(app, [*COMMON, *args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def test_a_conse_model_points_to_space_conse(tmp_path, monkeypatch, fmnist_root: Path):
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
    assert invoke("ingest", str(fmnist_root)).exit_code == 0
    image = str(sorted((fmnist_root / "bag").iterdir())[0])
    answered = invoke("classify", image, "--space", "conse", "--top", "3", "--json")
    assert answered.exit_code == 0, answered.output
    name = json.loads(answered.stdout)[0]["model"]
    listed = json.loads(invoke("models", "list", "--json").stdout)
    assert {"name": name, "kind": "conse"}.items() <= listed[0].items()

    for args in (["models", "embed", name], ["classify", image, "--model", name]):
        refused = invoke(*args)
        assert refused.exit_code == 2, refused.output
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "--space conse" in lines[0] and name in lines[0]
        assert "pretrained encoder" not in refused.stderr
