"""``--json`` on the commands that print results: encoders, db current, vectors load."""

from __future__ import annotations

import json

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
