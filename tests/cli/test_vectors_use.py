"""``platform vectors use``: switch to a built-in word-vector source by name."""

import json

import numpy as np
from typer.testing import CliRunner

from embplat.cli.app import app

runner = CliRunner()


def test_vectors_use_switches_between_named_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    r = runner.invoke(app, ["vectors", "use", "minilm", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {
        "kind": "minilm",
        "path": "",
        "origin": "all-MiniLM-L6-v2-prompts",
        "dim": 384,
    }
    shown = json.loads(runner.invoke(app, ["vectors", "show", "coat", "jacket", "--json"]).stdout)
    assert shown["kind"] == "minilm" and shown["similarity"]["coat"]["jacket"] > 0.5
    r = runner.invoke(app, ["vectors", "use", "glove"])
    assert r.exit_code == 0 and "glove-6B-50d (50-d, bundled)" in r.stdout
    r = runner.invoke(app, ["vectors", "use", "word2vec"])
    assert r.exit_code == 2 and "unknown word vectors 'word2vec'" in r.stderr


def test_vectors_use_attributes_needs_an_ingested_predicate_matrix(tmp_path, monkeypatch):
    from embplat.ingest.fashion_mnist import FASHION_MNIST_ATTRIBUTES, FASHION_MNIST_PREDICATES
    from embplat.models.attributes import AttributeTable, store_attributes

    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    r = runner.invoke(app, ["vectors", "use", "attributes"])
    assert r.exit_code == 2 and "no class attributes in the data home" in r.stderr
    names = ["sandal", "sneaker", "coat"]
    table = AttributeTable(
        names, FASHION_MNIST_PREDICATES, np.array([FASHION_MNIST_ATTRIBUTES[n] for n in names])
    )
    store_attributes(table, tmp_path / "home")
    r = runner.invoke(app, ["vectors", "use", "attributes", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["kind"] == "attributes" and json.loads(r.stdout)["dim"] == 23
    shown = json.loads(runner.invoke(app, ["vectors", "show", *names, "--json"]).stdout)
    assert shown["similarity"]["sandal"]["sneaker"] > shown["similarity"]["sandal"]["coat"]


def test_classes_add_zero_shot_with_attributes_grows_the_current_table(tmp_path, monkeypatch):
    from embplat.ingest.fashion_mnist import FASHION_MNIST_ATTRIBUTES, FASHION_MNIST_PREDICATES
    from embplat.models.attributes import AttributeTable, store_attributes
    from embplat.models.wordvectors import open_vectors, resolve_source

    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(tmp_path / "home"))
    table = AttributeTable(
        ["sandal"], FASHION_MNIST_PREDICATES, np.array([FASHION_MNIST_ATTRIBUTES["sandal"]])
    )
    store_attributes(table, tmp_path / "home")
    r = runner.invoke(app, ["classes", "add", "coat", "--attributes", "outerwear"])
    assert r.exit_code == 2 and "add --zero-shot" in r.stderr
    args = ["classes", "add", "coat", "--zero-shot", "--attributes", "outerwear,thick=90"]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["class"] == "coat"
    row = open_vectors(resolve_source("attributes", tmp_path / "home")).vector("coat")
    assert row[FASHION_MNIST_PREDICATES.index("outerwear")] == 100
    assert row[FASHION_MNIST_PREDICATES.index("thick")] == 90 and row.sum() == 190
    r = runner.invoke(app, ["classes", "add", "boat", "--zero-shot", "--attributes", "sails"])
    assert r.exit_code == 1 and "'sails' are not predicates" in r.stderr
    r = runner.invoke(app, ["classes", "add", "boat", "--zero-shot", "--attributes", "sails=x"])
    assert r.exit_code == 2 and "'x' is not a number" in r.stderr
