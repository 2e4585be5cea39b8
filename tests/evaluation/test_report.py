import base64
import io
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from embplat.errors import ConfigError
from embplat.evaluation.open_set import accuracy_coverage_curve
from embplat.evaluation.report import flatten_scalars, project_2d, write_report
from embplat.evaluation.retrieval_eval import describe_queries, evaluate_retrieval, worst_queries

CLASSES = ["coat", "pullover", "shirt", "t-shirt"]  # the confusable ones


class ReportParser(HTMLParser):
    """Collects tables (id -> rows of cell texts), <img> sources and figure classes."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.figures: list[str] = []
        self.ids: set[str] = set()
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "figure":
            self.figures.append(attrs.get("class", ""))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None


def _load(fmnist_root):
    paths, labels, pixels = [], [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((fmnist_root / name).iterdir())[:6]:
            paths.append(path)
            labels.append(label)
            pixels.append(np.asarray(Image.open(path).convert("L"), dtype=np.float32).ravel())
    return paths, np.array(labels), np.stack(pixels)


def test_report_from_fashion_mnist_pixels(fmnist_root, tmp_path):
    paths, labels, vectors = _load(fmnist_root)
    # pixels as embeddings, leave-one-out over the 24 images: real, imperfect neighbours
    result = evaluate_retrieval(
        vectors, labels, vectors, labels, class_names=CLASSES, ks=(1, 10), exclude_self=True
    )
    positions = worst_queries(labels, result.predictions, classes=2, per_class=2)
    assert positions, "pixel kNN on coat/pullover/shirt/t-shirt makes mistakes"
    worst = describe_queries(
        result,
        positions,
        query_labels=labels,
        reference_labels=labels,
        query_paths=paths,
        reference_paths=paths,
        class_names=CLASSES,
    )
    first = worst[0]
    assert first["true"] != first["predicted"] and len(first["neighbours"]) == 10
    assert sum(first["vote"].values()) == 10
    assert first["vote"][first["predicted"]] == max(first["vote"].values())  # ties: by similarity
    coords, method = project_2d(vectors)
    assert method == "pca" and coords.shape == (24, 2)
    curve = accuracy_coverage_curve(
        labels, result.predictions, result.vote_share, labels == 2, thresholds=[0.0, 0.5]
    )
    out = write_report(
        tmp_path / "sub" / "report.html",
        {"model": "pixels", **result.summary()},
        projection=coords,
        projection_labels=[CLASSES[c] for c in labels],
        projection_method=method,
        confusion=result.confusion,
        per_class=result.per_class,
        worst=worst,
        tables={"Accuracy / coverage": curve},
    )
    assert out == tmp_path / "sub" / "report.html"
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]

    page = ReportParser()
    page.feed(out.read_text(encoding="utf-8"))
    metric_rows = {row[0]: row[1] for row in page.tables["metrics"][1:]}
    assert metric_rows["model"] == "pixels"
    assert float(metric_rows["metrics.precision_at_1"]) == pytest.approx(
        result.metrics["precision_at_1"], abs=1e-4
    )
    assert {"metrics.NMI", "metrics.AMI", "metrics.knn_accuracy@10", "queries"} <= set(metric_rows)
    per_class = page.tables["per-class"]
    assert per_class[0][:3] == ["class", "precision", "recall"]
    assert sorted(row[0] for row in per_class[1:]) == CLASSES
    assert len(page.tables["table-accuracy---coverage"]) == 3  # header + 2 thresholds

    pngs = [base64.b64decode(src.split(",", 1)[1]) for src in page.images]
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    for png in pngs:
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG"
    # confusion + projection + one query and ten neighbours per misclassified case
    assert len(pngs) == 2 + 11 * len(worst)
    assert "worst" in page.ids
    assert page.figures.count("query") == len(worst)
    assert page.figures.count("same") + page.figures.count("other") == 10 * len(worst)


def test_report_tolerates_missing_images_and_escapes_text(tmp_path):
    out = write_report(
        tmp_path / "r.html",
        {"note": "<script>x</script>", "nested": {"a": 1.5, "skip": [1, 2]}, "none": None},
        worst=[
            {
                "query": tmp_path / "gone.jpg",
                "true": "a",
                "predicted": "b",
                "neighbours": [(tmp_path / "gone2.jpg", "b", 0.9)],
                "vote": {"b": 1},
            }
        ],
    )
    text = out.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert text.count("missing<br>") == 2
    assert dict(flatten_scalars({"nested": {"a": 1.5, "skip": [1]}, "per_class": {"x": 1}})) == {
        "nested.a": 1.5
    }


def test_projection_choices():
    x = np.random.default_rng(0).normal(size=(20, 5))
    coords, method = project_2d(x, "pca")
    assert method == "pca" and coords.shape == (20, 2)
    assert project_2d(x[:2])[1] == "identity"
    with pytest.raises(ConfigError, match="tsne"):
        project_2d(x, "tsne")
