"""``platform datasets scenes``, ``platform ingest`` of caption datasets and ``platform
captions show`` through Typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from embplat.cli.app import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    return ["--backend", "exact"]


def invoke(args: list[str]):
    return runner.invoke(app, args, catch_exceptions=False)


def test_scenes_ingest_twice_and_show_captions(env, tmp_path):
    out = tmp_path / "scenes"
    r = invoke(["datasets", "scenes", "--out", str(out), "--images", "20", "--size", "64"])
    assert r.exit_code == 0, r.output
    r = invoke([*env, "ingest", str(out), "--no-embed", "--json"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert (first["layout"], first["added"], first["captions"]) == ("flickr8k", 20, 100)
    assert first["warnings"] == []
    r = invoke([*env, "ingest", str(out), "--no-embed", "--json"])
    again = json.loads(r.stdout)
    assert (again["added"], again["already"], again["captions"]) == (0, 20, 0)

    r = invoke([*env, "captions", "show", "scene_00004.jpg", "--json"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    token = (out / "Flickr8k.token.txt").read_text().splitlines()
    assert [c["text"] for c in shown["captions"]] == [t.split("\t")[1] for t in token[20:25]]
    assert shown["class"] == "unlabelled" and shown["split"] in {"train", "valid", "test"}
    r = invoke([*env, "captions", "show", str(out / "Flicker8k_Dataset" / "scene_00004.jpg")])
    assert r.exit_code == 0 and "unlabelled" in r.output and r.output.count("│ file") == 5
    r = invoke([*env, "classes", "list", "--json"])
    assert json.loads(r.stdout) == [
        {"name": "unlabelled", "role": "none", "images": {"train": 16, "valid": 2, "test": 2}}
    ]


def test_ingest_with_a_captions_manifest_reports_bad_lines(env, tmp_path, imagefactory):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee"):
        data = imagefactory.encode(imagefactory.photo(name, 32, 24), "JPEG")
        (folder / f"{name}.jpg").write_bytes(data)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "image,caption,class,split\nchelsea.jpg,a cat,cat,test\ncoffee.jpg,,cup,train\n"
        "coffee.jpg,a cup,cup,train\nghost.jpg,a ghost,,\n",
        encoding="utf-8",
    )
    args = [*env, "ingest", str(folder), "--captions", str(manifest), "--no-embed"]
    r = invoke([*args, "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert (result["layout"], result["added"], result["captions"]) == ("captions", 2, 2)
    assert result["warnings"] == [
        f"{manifest}:3: empty caption; skipped",
        f"{manifest}:5: image ghost.jpg not found in {folder}; its 1 captions skipped",
    ]
    r = invoke(args)  # the same file again: nothing new, the problems told again
    assert "captions:" not in r.output and "empty caption" in r.output
    r = invoke([*env, "captions", "show", "coffee.jpg", "--json"])
    shown = json.loads(r.stdout)
    assert (shown["class"], shown["split"], shown["captions"][0]["text"]) == (
        "cup",
        "train",
        "a cup",
    )


def test_bad_captions_files_and_unknown_images_are_one_line(env, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"images": 3}', encoding="utf-8")
    r = invoke([*env, "ingest", str(tmp_path), "--captions", str(bad), "--no-embed"])
    assert r.exit_code == 1 and "not a Karpathy split JSON" in r.output
    assert "Traceback" not in r.output
    r = invoke([*env, "captions", "show", "nowhere.jpg"])
    assert r.exit_code == 1 and "not in the catalog" in r.output
    r = invoke(["datasets", "scenes", "--out", str(tmp_path / "s"), "--images", "3"])
    assert r.exit_code == 2 and "need at least 10" in r.output
