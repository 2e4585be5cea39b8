"""``train caption``, ``caption``, ``evaluate --model <captioner>``, ``captions generate``,
``ingest --caption-with`` and sentence search over generated captions, through CliRunner."""

import json
import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from embplat.cli.app import app
from embplat.ingest.scenes import build_scenes

runner = CliRunner()
GLOBAL = ["--encoder", "tiny_cnn", "--backend", "exact", "--device", "cpu"]
TRAIN = [
    "--attention-dim", "32", "--decoder-dim", "32", "--embed-dim", "16", "--batch-size", "32",
    "--lr", "0.01", "--vectors", "none", "--dropout", "0.1",
]  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One data home for the module: training once serves every test."""
    root = tmp_path_factory.mktemp("captioning")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("EMBPLAT_CATALOG_URL", raising=False)
        patch.setenv("EMBPLAT_HOME", str(root / "home"))
        patch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
        yield root


def run(*args):
    return runner.invoke(app, [*GLOBAL, *args], catch_exceptions=False)


def run_json(*args):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def trained(env):
    scenes = env / "scenes"
    r = run("datasets", "scenes", "--out", str(scenes), "--images", "40", "--size", "64")
    assert r.exit_code == 0, r.output
    assert run_json("ingest", str(scenes), "--no-embed")["captions"] == 200
    info = run_json("train", "caption", *TRAIN, "--epochs", "2", "--fine-tune-epochs", "1")
    assert (info["name"], info["kind"]) == ("caption-1", "caption")
    assert [e["phase"] for e in info["epochs"]] == ["frozen", "frozen", "fine-tune"]
    assert info["metric"] == "bleu4" and info["data"]["train_captions"] == 160
    assert all(e["valid"]["bleu1"] is not None for e in info["epochs"])
    return scenes


def test_caption_files_attention_and_errors(trained, env):
    image = trained / "Flicker8k_Dataset" / "scene_00003.jpg"
    out = run_json("caption", str(image), "--beam", "3", "--n", "3")
    [result] = out["results"]
    assert result["model"] == "caption-1" and result["beam"] == 3
    scores = [c["score"] for c in result["captions"]]
    assert 1 <= len(scores) <= 3 and scores == sorted(scores, reverse=True)
    assert all(c["text"] and c["logprob"] <= 0 for c in result["captions"])

    png = env / "attention.png"
    r = run("caption", str(image), "--attention-png", str(png))
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    bad = env / "bad.jpg"
    bad.write_text("not an image")
    r = run("caption", str(image), str(bad), "--json")
    assert r.exit_code == 1
    body = json.loads(r.stdout)
    assert len(body["results"]) == 1 and body["failures"][0]["path"] == str(bad)
    assert run("caption", str(image), "--beam", "11").exit_code == 2
    assert run("caption", str(image), "--model", "nope").exit_code == 1


def test_evaluate_records_bleu_per_beam(trained):
    out = run_json("evaluate", "--model", "caption-1", "--beam", "1,3")
    assert (out["split"], out["images"], out["references"]) == ("test", 4, 20)
    assert set(out["beams"]) == {"1", "3"}
    for scores in out["beams"].values():
        assert 0 <= scores["bleu4"] <= scores["bleu1"] <= 1
    assert 0 <= out["top5"] <= 1 and out["recorded"] >= 9
    r = run("evaluate", "--model", "caption-1", "--beam", "1")
    assert r.exit_code == 0 and "BLEU-4" in r.output
    assert run("evaluate", "--model", "caption-1", "--beam", "x").exit_code == 2


def test_generated_captions_are_stored_indexed_and_searchable(trained, env):
    photos = env / "photos" / "misc"
    photos.mkdir(parents=True)
    other = build_scenes(env / "other", images=10, seed=7, size=64)  # new content, no captions
    for i in (5, 8):
        shutil.copy(other / "Flicker8k_Dataset" / f"scene_{i:05d}.jpg", photos / f"new_{i}.jpg")
    Image.new("RGB", (40, 40), (200, 30, 30)).save(photos / "plain.png")
    out = run_json("ingest", str(photos.parent), "--no-embed", "--caption-with", "caption-1")
    job = out["captioning"]
    assert (job["model"], job["captioned"], job["failed"]) == ("caption-1", 3, [])
    shown = run_json("captions", "show", str(photos / "new_5.jpg"))
    [caption] = shown["captions"]
    assert (caption["source"], caption["model"]) == ("generated", "caption-1")

    again = run_json("captions", "generate", "--text-encoder", "minilm")
    assert again["captioned"] == 0  # every image has a caption now

    from embplat.config import load_settings
    from embplat.pipelines.sentences import search_sentences
    from embplat.workers.context import build_context

    ctx = build_context(load_settings(home=env / "home", **{"index.backend": "exact"}))
    hits, used = search_sentences(ctx, caption["text"], k=3)
    assert used == "sentences-minilm"
    assert hits[0].path == str(photos / "new_5.jpg") or hits[0].score == hits[1].score
    assert len({h.image_id for h in hits}) == len(hits)
