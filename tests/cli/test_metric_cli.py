"""``train metric``, ``evaluate --model --report``, ``models compare``, ``experiment unseen``."""

import json

import pytest
import torch
from typer.testing import CliRunner

from embplat.cli.app import app
from embplat.ingest.fashion_mnist import DEFAULT_FMNIST_DIR, build_fashion_mnist

runner = CliRunner()
GLOBAL = ["--encoder", "tiny_cnn", "--image-size", "32", "--backend", "exact", "--device", "cpu"]
TRAIN = ["--dim", "16", "--epochs", "1", "--freeze-epochs", "1", "--batch-size", "6"]
TRAIN += ["--m-per-class", "2"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    if not (DEFAULT_FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
    monkeypatch.setenv("EMBPLAT_INGEST_VALID_FRACTION", "0.3")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def run(*args):
    return runner.invoke(app, [*GLOBAL, *args], catch_exceptions=False)


def run_json(*args):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_evaluate_compare_and_experiment(env):
    root = build_fashion_mnist(
        env / "data", per_class=10, classes=["trouser", "bag", "sneaker", "sandal"]
    )
    assert run("ingest", str(root)).exit_code == 0

    info = run_json("train", "metric", "--loss", "proxynca", "--optimizer", "sgd", *TRAIN)
    assert (info["name"], info["kind"], info["dim"]) == ("metric-1", "metric", 16)
    assert info["train_config"]["optimizer"] == "sgd" and info["train_config"]["lr"] == 1e-2
    assert info["train_config"]["unfreeze_epochs"] == 1
    r = run("train", "metric", "--loss", "contrastive", *TRAIN)
    assert r.exit_code == 2 and "triplet-epshn" in r.stderr

    # a class enrolled after training enters the trained model's index too, no retraining
    new = build_fashion_mnist(env / "new", per_class=4, classes=["ankle+boot"], source="test")
    r = run("classes", "add", "boot", str(new / "ankle+boot"))
    assert r.exit_code == 0 and "metric-1: 4 images embedded into its index" in r.stdout
    boot = sorted((new / "ankle+boot").iterdir())[0]
    answer = run_json("classify", str(boot), "--model", "metric-1", "--k", "1")
    assert answer[0]["label"] == "boot"
    assert run_json("models", "embed", "metric-1")["embedded"] == 0  # nothing pending
    r = run("classes", "add", "boot2", str(new / "ankle+boot"), "--models", "nope")
    assert r.exit_code == 1 and "nope" in r.stderr

    report = env / "report.html"
    r = run("evaluate", "--model", "metric-1", "--report", str(report), "--projection", "pca")
    assert r.exit_code == 0, r.output
    assert "precision_at_1" in r.stdout and "metrics recorded" in r.stdout
    assert report.stat().st_size > 10_000
    r = run("evaluate", "--model", "metric-1", "--unknown", "bag")
    assert r.exit_code == 0 and "best open-set accuracy" in r.stdout
    assert "valid-unknown:bag" in r.stdout
    frozen = run_json("evaluate", "--report", str(env / "frozen.html"), "--projection", "pca")
    assert frozen["model"] == "tiny_cnn-random"

    r = run("models", "compare", "metric-1", "tiny_cnn-random", "--split", "valid")
    assert r.exit_code == 0 and "metric-1" in r.stdout and "tiny_cnn-random" in r.stdout
    assert "mean_average_precision_at_r" in r.stdout
    compared = run_json("models", "compare", "metric-1", "tiny_cnn-random")
    assert compared["metric-1"]["valid/precision_at_1"] == pytest.approx(
        json.loads(run("evaluate", "--model", "metric-1", "--json").stdout)["metrics"][
            "precision_at_1"
        ]
    )
    r = run("models", "compare", "metric-1", "nope")
    assert r.exit_code == 1 and "nope" in r.stderr

    result = run_json("experiment", "unseen", "--holdout", "1", "--name", "x", *TRAIN)
    assert result["held_out"] == ["trouser"]  # the last class in training (name) order
    assert result["models"] == {"all": "x-all", "without": "x-without"}
    assert run_json("models", "show", "x-without")["data"]["classes"] == [
        "bag",
        "boot",
        "sandal",
        "sneaker",
    ]
    r = run("experiment", "unseen", "--unseen", "bag", "--name", "y", *TRAIN)
    assert r.exit_code == 0 and "held out" in r.stdout and "mean precision@1 drop" in r.stdout
    text = " ".join(r.stdout.split())
    assert "knn_accuracy@10, seen classes" in text and "ROC AUC known vs unknown" in text
    assert "of the other classes among themselves" in text
    r = run("experiment", "unseen", *TRAIN)
    assert r.exit_code == 2 and "--holdout" in r.stderr
