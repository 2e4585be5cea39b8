"""``train``, ``models``, ``vectors`` and the semantic options of classify/search/evaluate."""

import json

import pytest
from typer.testing import CliRunner

from embplat.cli.app import app
from embplat.ingest.fashion_mnist import DEFAULT_FMNIST_DIR, build_fashion_mnist

runner = CliRunner()
GLOBAL = ["--encoder", "tiny_cnn", "--image-size", "32", "--backend", "exact", "--device", "cpu"]
EPOCHS = ["--freeze-epochs", "1", "--unfreeze-epochs", "1", "--batch-size", "8"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
    monkeypatch.setenv("EMBPLAT_INGEST_VALID_FRACTION", "0.3")
    return tmp_path


def run(*args):
    result = runner.invoke(app, [*GLOBAL, *args], catch_exceptions=False)
    return result


def run_json(*args):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_list_show_and_semantic_queries(env):
    if not (DEFAULT_FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    root = build_fashion_mnist(
        env / "data",
        per_class=12,
        classes=["trouser", "bag", "sneaker", "sandal"],
        unseen=["sandal"],
    )
    assert run("ingest", str(root), "--no-embed").exit_code == 0

    r = run("search", "--text", "bag")
    assert r.exit_code == 1 and "platform train devise" in r.stderr

    info = run_json("train", "classifier", *EPOCHS)
    assert info["name"] == "classifier-1" and info["kind"] == "classifier"
    info = run_json("train", "devise", "--stage1-epochs", "0", "--loss", "hinge", *EPOCHS)
    assert info["name"] == "devise-1" and info["train_config"]["loss"] == "hinge"
    assert [m["name"] for m in run_json("models", "list")] == ["classifier-1", "devise-1"]
    assert run_json("models", "show", "devise-1")["data"]["classes"] == [
        "bag",
        "sneaker",
        "trouser",
    ]
    r = run("models", "show", "devise-1")
    assert r.exit_code == 0 and "frozen" in r.stdout and "glove-6B-50d" in r.stdout

    sandal = sorted((root / "sandal").iterdir())[0]
    [pred] = run_json("classify", str(sandal), "--space", "semantic", "--unseen-only")
    assert pred["label"] == "sandal" and pred["model"] == "devise-1"
    assert isinstance(pred["gamma"], float)  # the stored calibration, applied by default
    [forced] = run_json("classify", str(sandal), "--space", "semantic", "--gamma", "0.25")
    assert forced["gamma"] == 0.25
    plain = run_json("search", "--text", "trousers", "--k", "3", "--hubness", "none")
    assert len(plain["matches"]) == 3
    assert run("search", "--text", "trousers", "--hubness", "bogus").exit_code == 2
    hits = run_json("search", "--text", "trousers", "--k", "3")["matches"]
    assert len(hits) == 3
    expanded = run_json("search", "--text", "trousers", "--k", "3", "--expand", "5")["matches"]
    assert len(expanded) == 3 and expanded != hits
    bad = run("search", "--image", str(sandal), "--expand", "3")
    assert bad.exit_code == 2 and "expand" in bad.stderr
    labels = run_json("search", "--image", str(sandal), "--labels", "--k", "4")["matches"]
    assert {row["label"] for row in labels} == {"trouser", "bag", "sneaker", "sandal"}
    hits = run_json("search", "--image", str(sandal), "--space", "semantic", "--k", "2")["matches"]
    assert len(hits) == 2
    [vote] = run_json("classify", str(sandal), "--model", "classifier-1", "--k", "3", "--knn")
    assert vote["k"] == 3 and vote["method"] == "knn"
    [head] = run_json("classify", str(sandal), "--model", "classifier-1", "--k", "3")
    assert head["method"] == "softmax" and len(head["probabilities"]) == 3

    added = run_json("classes", "add", "zebra", "--zero-shot")
    assert added["models"] == ["devise-1"]
    r = run("classes", "add", "zebra")
    assert r.exit_code == 1 and "--zero-shot" in r.stderr

    report = run_json("evaluate", "--zero-shot", "--no-plots")
    assert report["unseen_classes"] == ["sandal"] and report["calibrated"]["gamma"] is not None
    r = run("evaluate", "--zero-shot", "--model", "devise-1", "--no-calibrate", "--no-plots")
    assert r.exit_code == 0 and "GZSL seen / unseen / H" in r.stdout
    assert "ZSL top-1, hubness isoftmax" in r.stdout and "H, hubness csls" in r.stdout
    assert set(report["hubness"]) == {"csls", "isoftmax"}

    ridge = ("--projection", "ridge", "--stage1-epochs", "0", "--unfreeze-epochs", "0")
    info = run_json("train", "devise", "--name", "devise-ridge", *ridge, "--ridge-alpha", "0.5")
    assert info["projection"] == {**info["projection"], "method": "ridge", "alpha": 0.5}
    assert [e["phase"] for e in info["epochs"]] == ["ridge"]
    r = run("models", "show", "devise-ridge")
    assert r.exit_code == 0 and "projection: ridge, alpha 0.5, given" in r.stdout
    assert "GZSL calibration: gamma" in r.stdout and "head on the frozen backbone" in r.stdout
    bad = run("train", "devise", "--projection", "lasso")
    assert bad.exit_code != 0 and "trained, ridge" in bad.stderr


def test_vectors_load_show_reset(env):
    text = env / "mini.txt"
    text.write_text("cat 1 0 0\ndog 0.8 0.6 0\n")
    shown = run_json("vectors", "show", "ankle+boot", "qxzvwk")
    assert shown["origin"] == "glove-6B-50d" and shown["dim"] == 50
    assert shown["unknown"] == ["qxzvwk"] and shown["similarity"]["ankle+boot"]["ankle+boot"] == 1
    r = run("vectors", "load", str(text))
    assert r.exit_code == 0 and "mini.txt (3-d" in r.stdout
    shown = run_json("vectors", "show", "cat", "dog")
    assert shown["kind"] == "array" and shown["similarity"]["cat"]["dog"] == pytest.approx(0.8)
    assert run("vectors", "reset").exit_code == 0
    assert run_json("vectors", "show")["origin"] == "glove-6B-50d"
    r = run("vectors", "load", str(env / "missing.vec"))
    assert r.exit_code == 1 and "missing.vec does not exist" in r.stderr
