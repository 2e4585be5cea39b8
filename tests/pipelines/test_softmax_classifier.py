"""A trained classifier used as a classifier: its softmax head answers ``classify --model``
(Python API, HTTP service, CLI), ``--knn`` keeps the vote, and ``evaluate --model`` scores
the head (classification report, confusion, worst mistakes) in JSON and the HTML report.

One module-scoped run trains a classifier (seeded tiny CNN at 32 px, exact index) on three
Fashion-MNIST classes.
"""

import json

import numpy as np
import pytest
import torch
from sqlalchemy import select
from typer.testing import CliRunner

from embplat.api import Platform
from embplat.catalog import repo
from embplat.catalog.models import Image
from embplat.config import load_settings
from embplat.ingest.fashion_mnist import DEFAULT_FMNIST_DIR, build_fashion_mnist
from embplat.ingest.images import load_rgb
from embplat.models.checkpoints import load_checkpoint, trained_module
from embplat.models.heads import Head, HeadSpec
from embplat.models.samples import eval_transform
from embplat.pipelines.classify import UNKNOWN, classify
from embplat.pipelines.evaluate import EvaluationRequest, evaluate
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.train import train_recipe
from embplat.workers.context import build_context

CLASSES = ["trouser", "bag", "sneaker"]
CONFIG = {
    "encoder": "tiny_cnn",
    "image_size": 32,
    "batch_size": 8,
    "lr": 1e-2,
    "device": "cpu",
    "freeze_epochs": 6,
    "unfreeze_epochs": 1,
    "name": "clf",
}


def _settings(home):
    settings = load_settings(
        **{
            "home": home,
            "index.backend": "exact",
            "embed.encoder": "tiny_cnn",
            "embed.num_workers": 0,
            "ingest.valid_fraction": 0.3,
        }
    )
    settings.catalog.url = None
    return settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(context, dataset root, valid image paths with their classes) after training ``clf``."""
    if not (DEFAULT_FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    base = tmp_path_factory.mktemp("softmax")
    root = build_fashion_mnist(base / "data", per_class=20, classes=CLASSES)
    ctx = build_context(_settings(base / "home"))
    ingest_tree(ctx, root)
    assert train_recipe(ctx, "classifier", CONFIG) == "clf"
    with ctx.sessions() as session:
        rows = session.scalars(select(Image).where(Image.split == "valid")).all()
        valid = sorted((i.path, i.label.name) for i in rows)
    yield ctx, root, valid
    ctx.close()


def _reference_probabilities(ctx, path):
    """The checkpoint's backbone and head run by hand on one image: (C,) probabilities."""
    with ctx.sessions() as session:
        checkpoint = repo.get_model(session=session, name="clf").config["checkpoint"]
    ckpt = load_checkpoint(ctx.home / checkpoint)
    backbone, dim = trained_module(ckpt)
    head = Head(dim, HeadSpec(**ckpt["head"]))
    head.load_state_dict({k[5:]: v for k, v in ckpt["state_dict"].items() if k[:5] == "head."})
    enc = ckpt["encoder"]
    x = eval_transform(32, enc["mean"], enc["std"])(load_rgb(path, max_pixels=10**7))
    with torch.no_grad():
        logits = head(backbone.eval()(x[None]))
    return ckpt["classes"], torch.softmax(logits, dim=1)[0].numpy()


def test_classify_answers_with_the_head_and_its_probabilities(trained):
    ctx, root, _ = trained
    images = [sorted((root / c).iterdir())[0] for c in CLASSES]
    answers = classify(ctx, images, model="clf", k=3)
    for image, answer in zip(images, answers, strict=True):
        classes, expected = _reference_probabilities(ctx, image)
        assert answer.method == "softmax" and answer.k == 0 and answer.neighbours == []
        assert set(answer.probabilities) == set(classes)
        assert sum(answer.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        for name, p in answer.probabilities.items():
            assert p == pytest.approx(expected[classes.index(name)], abs=1e-5)
        assert list(answer.probabilities.values()) == sorted(
            answer.probabilities.values(), reverse=True
        )
        assert answer.label == classes[int(expected.argmax())]
        assert answer.confidence == pytest.approx(float(expected.max()), abs=1e-4)
        assert answer.runner_up == list(answer.probabilities)[1]
    [top1] = classify(ctx, images[:1], model="clf", k=1)
    assert len(top1.probabilities) == 1 and top1.label == answers[0].label

    # the maximum softmax probability never exceeds 1: everything is rejected, winners kept
    rejected = classify(ctx, images, model="clf", k=3, reject_below=1.01)
    assert [r.label for r in rejected] == [UNKNOWN] * 3
    assert [r.best_label for r in rejected] == [a.label for a in answers]


def test_knn_keeps_the_vote_and_the_encoder_is_unaffected(trained):
    ctx, root, _ = trained
    image = sorted((root / "bag").iterdir())[0]
    [vote] = classify(ctx, [image], model="clf", k=5, knn=True)
    assert vote.method == "knn" and vote.k == 5 and len(vote.neighbours) == 5
    assert vote.probabilities == {} and sum(vote.tallies.values()) == 5
    assert vote.label in CLASSES and vote.confidence == max(vote.tallies.values()) / 5
    [plain] = classify(ctx, [image], k=5)  # no model: the active encoder's vote
    assert plain.method == "knn" and len(plain.neighbours) == 5


def test_the_python_api_http_service_and_cli_give_the_softmax_answer(trained, monkeypatch):
    from fastapi.testclient import TestClient

    from embplat.cli.app import app
    from embplat.serve.app import create_app

    ctx, root, _ = trained
    image = sorted((root / "sneaker").iterdir())[1]
    platform = Platform(settings=_settings(ctx.home), context=ctx)
    api = platform.classify(image, k=3, model="clf").to_dict()
    assert api["method"] == "softmax" and len(api["probabilities"]) == 3
    assert platform.classify(image, k=3, model="clf", knn=True).to_dict()["method"] == "knn"

    client = TestClient(create_app(platform))
    files = {"image": (image.name, image.read_bytes(), "image/jpeg")}
    served = client.post("/classify", params={"k": 3, "model": "clf"}, files=files).json()
    [answer] = served["results"]
    assert answer["probabilities"] == pytest.approx(api["probabilities"], abs=1e-5)
    assert {k: v for k, v in answer.items() if k not in ("source", "probabilities")} == {
        k: v for k, v in api.items() if k not in ("source", "probabilities")
    }
    knn = client.post("/classify", params={"k": 3, "model": "clf", "knn": True}, files=files)
    assert knn.json()["results"][0]["method"] == "knn"

    monkeypatch.setenv("EMBPLAT_HOME", str(ctx.home))
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    flags = ["--encoder", "tiny_cnn", "--backend", "exact", "--device", "cpu"]
    out = CliRunner().invoke(app, [*flags, "classify", str(image), "--model", "clf", "--json"])
    assert out.exit_code == 0, out.output
    [cli] = json.loads(out.stdout)
    assert cli["method"] == "softmax" and cli["label"] == api["label"]
    out = CliRunner().invoke(app, [*flags, "classify", str(image), "--model", "clf", "--knn"])
    assert out.exit_code == 0 and "votes" in out.stdout
    out = CliRunner().invoke(app, [*flags, "classify", str(image), "--model", "clf"])
    assert out.exit_code == 0 and "softmax" in out.stdout and "probability" in out.stdout


def test_evaluate_scores_the_head_and_reports_it(trained, tmp_path):
    ctx, _, valid = trained
    report = tmp_path / "report.html"
    out = evaluate(ctx, EvaluationRequest(model="clf", report=report))
    head = out["softmax"]
    assert head["method"] == "softmax" and head["images"] == len(valid) > 10
    assert head["other_classes"] == 0 and head["unreadable"] == 0
    # the same images through classify: the same accuracy
    answers = classify(ctx, [p for p, _ in valid], model="clf", k=1)
    truth = dict(valid)
    right = [a.label == truth[a.path] for a in answers]
    assert head["accuracy"] == pytest.approx(np.mean(right))
    matrix = np.asarray(head["confusion"]["matrix"])
    assert matrix.sum() == len(valid) and np.trace(matrix) == sum(right)
    for name in CLASSES:
        assert name in head["classification_report"] and name in head["per_class"]
    # the worst mistakes: wrong answers only, most confident first
    wrong = sorted(-a.confidence for a in answers if a.label != truth[a.path])
    assert [-c["confidence"] for c in head["worst"]] == pytest.approx(wrong[: len(head["worst"])])
    assert all(c["true"] != c["predicted"] for c in head["worst"])
    with ctx.sessions() as session:
        recorded = repo.model_metrics(session=session, names=["clf"], split="valid")["clf"]
    assert recorded["softmax_accuracy"] == pytest.approx(head["accuracy"])

    page = report.read_text()
    assert "id='softmax'" in page and "id='classification-report'" in page
    assert "confusion matrix of the softmax head" in page
    assert ("worst mistakes of the softmax head" in page) == bool(head["worst"])
    assert "f1-score" in page


def test_models_list_says_what_was_registered(trained, monkeypatch):
    from embplat.cli.app import app

    ctx, _, _ = trained
    monkeypatch.setenv("EMBPLAT_HOME", str(ctx.home))
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    out = CliRunner().invoke(app, ["--backend", "exact", "models", "list", "--json"])
    [row] = json.loads(out.stdout)
    best = next(e for e in row["epochs"] if e["epoch"] == row["best_epoch"])
    tuned = best["phase"] == "unfrozen"
    assert row["registered"].startswith(
        "softmax head + fine-tuned backbone" if tuned else "softmax head on the frozen backbone"
    )
    assert f"epoch {row['best_epoch']} ({best['phase']})" in row["registered"]
