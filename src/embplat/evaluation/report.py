"""A single self-contained HTML evaluation report: tables as ``<table>``, images as data URIs.

Plots are drawn with matplotlib's object API (no pyplot, so no global backend state);
thumbnails of query and neighbour images are made with Pillow. Nothing is fetched when
the file is opened: it can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from embplat.errors import ConfigError
from embplat.evaluation.plots import confusion_figure, png_bytes
from embplat.evaluation.retrieval_eval import RetrievalEvaluation, describe_queries, worst_queries
from embplat.evaluation.vectors import SplitVectors

log = logging.getLogger(__name__)

THUMB = 96
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;gap:6px;align-items:flex-start;margin:8px 0;flex-wrap:wrap}
figure{margin:0;text-align:center;font-size:11px;width:100px}
figure.query{border:3px solid #333}figure.same{border:3px solid #2a2}
figure.other{border:3px solid #c33}
"""


def project_2d(
    vectors: np.ndarray, method: str = "auto", *, seed: int = 0
) -> tuple[np.ndarray, str]:
    """(N, D) vectors → (N, 2) coordinates and the method used.

    Args:
        method: ``pca``, ``umap`` (needs ``umap-learn``), or ``auto`` (UMAP when installed
            and there are enough points, else PCA).

    Raises:
        ConfigError: unknown method, or ``umap`` without ``umap-learn``.
    """
    x = np.asarray(vectors, dtype=np.float32)
    has_umap = importlib.util.find_spec("umap") is not None
    if method not in ("auto", "pca", "umap"):
        raise ConfigError(f"unknown projection {method!r}; choose auto, pca or umap")
    if method == "umap" and not has_umap:
        raise ConfigError("projection umap needs umap-learn: pip install umap-learn")
    if len(x) < 3 or x.shape[1] < 2:
        out = np.zeros((len(x), 2), dtype=np.float32)
        out[:, : min(2, x.shape[1])] = x[:, :2]
        return out, "identity"
    if method == "umap" or (method == "auto" and has_umap and len(x) > 15):
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(x) - 1), random_state=seed)
        return np.asarray(reducer.fit_transform(x), dtype=np.float32), "umap"
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(x).astype(np.float32), "pca"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def projection_png(coords: np.ndarray, labels: Sequence[str], method: str = "") -> bytes:
    """Scatter of (N, 2) coordinates coloured by class, as PNG bytes."""
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    names = sorted(set(labels))
    lab = np.asarray(labels)
    for i, name in enumerate(names):
        pts = coords[lab == name]
        ax.scatter(pts[:, 0], pts[:, 1], s=12, label=name, color=_colour(i, len(names)))
    ax.set_title(f"embeddings ({method})" if method else "embeddings")
    ax.legend(fontsize=7, markerscale=1.5, loc="best", ncol=1 + len(names) // 15)
    return png_bytes(fig)


def _colour(i: int, n: int) -> tuple[float, ...]:
    from matplotlib import colormaps

    if n <= 10:  # tab20 pairs light and dark shades of one hue: confusing for few classes
        return tuple(colormaps["tab10"](i))
    return tuple(colormaps["tab20"](i % 20))


def thumbnail_uri(path: str | Path, size: int = THUMB) -> str | None:
    """A PNG data URI of the image at ``path`` shrunk to ``size`` px, or None if unreadable."""
    try:
        with Image.open(path) as src:
            img = src.convert("RGB")
        img.thumbnail((size, size))
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
    except (OSError, ValueError) as exc:
        log.warning("report: cannot thumbnail %s: %s", path, exc)
        return None
    return _data_uri(buffer.getvalue())


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    if value is None:
        return "<td class='num'>–</td>"
    if isinstance(value, bool):
        return f"<td>{value}</td>"
    if isinstance(value, float | np.floating):
        return f"<td class='num'>{float(value):.4f}</td>"
    if isinstance(value, int | np.integer):
        return f"<td class='num'>{int(value)}</td>"
    return f"<td>{_esc(value)}</td>"


def _table(table_id: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def flatten_scalars(metrics: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) for every scalar in a nested dict; lists and arrays are skipped."""
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if key not in ("per_class", "confusion"):
                yield from flatten_scalars(value, name + ".")
        elif value is None or isinstance(value, str | bool | int | float | np.number):
            yield name, value


def _img(uri: str, alt: str) -> str:
    return f"<img src='{uri}' alt='{_esc(alt)}'>"


def _worst_html(worst: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for case in worst:
        true, pred = str(case["true"]), str(case["predicted"])
        cells = [_figure(case["query"], f"true: {_esc(true)}<br>predicted: {_esc(pred)}", "query")]
        for path, label, score in case.get("neighbours", []):
            kind = "same" if str(label) == true else "other"
            cells.append(_figure(path, f"{_esc(label)} ({float(score):.3f})", kind))
        vote = ", ".join(f"{_esc(c)}: {v:g}" for c, v in dict(case.get("vote", {})).items())
        parts.append(
            f"<div class='case'><p>{_esc(Path(str(case['query'])).name)} "
            f"({_esc(true)} → {_esc(pred)}). Classes of top {len(cells) - 1} closest samples: "
            f"{vote}</p><div class='grid'>{''.join(cells)}</div></div>"
        )
    return "".join(parts)


def _figure(path: str | Path, caption: str, kind: str) -> str:
    uri = thumbnail_uri(path)
    body = _img(uri, Path(str(path)).name) if uri else f"<div>missing<br>{_esc(path)}</div>"
    return f"<figure class='{kind}'>{body}<figcaption>{caption}</figcaption></figure>"


def write_report(
    path: str | Path,
    metrics: Mapping[str, Any],
    *,
    projection: np.ndarray | None = None,
    projection_labels: Sequence[str] | None = None,
    projection_method: str = "",
    confusion: Mapping[str, Any] | None = None,
    per_class: Mapping[str, Mapping[str, Any]] | None = None,
    worst: Sequence[Mapping[str, Any]] = (),
    tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    title: str = "embplat evaluation",
    softmax: Mapping[str, Any] | None = None,
) -> Path:
    """Write one self-contained HTML report and return its path.

    Args:
        metrics: nested dict of scalars (rendered as dotted names in the metric table).
        projection: (N, 2) coordinates (see :func:`project_2d`), with ``projection_labels``.
        confusion: ``{"labels": [...], "matrix": [[...]]}``, true rows, predicted columns.
        per_class: class -> {precision, recall, f1-score, support, ...}.
        worst: misclassified queries: ``{"query": path, "true", "predicted",
            "neighbours": [(path, class, score), ...], "vote": {class: votes}}``.
        tables: extra titled tables (e.g. the accuracy/coverage curve), rows as dicts.
        softmax: a trained classifier's head (``evaluation.softmax.evaluate_probabilities``):
            its classification report, confusion matrix and grid of its worst mistakes.
    """
    sections = [f"<h1>{_esc(title)}</h1>", "<h2>Metrics</h2>"]
    sections.append(_table("metrics", ["metric", "value"], list(flatten_scalars(metrics))))
    if confusion and confusion.get("labels"):
        png = png_bytes(confusion_figure(confusion["labels"], confusion["matrix"]))
        sections += ["<h2>Confusion matrix</h2>", _img(_data_uri(png), "confusion matrix")]
    if per_class:
        cols = list(dict.fromkeys(k for row in per_class.values() for k in row))
        rows = [[name, *(row.get(c) for c in cols)] for name, row in per_class.items()]
        sections += ["<h2>Per class</h2>", _table("per-class", ["class", *cols], rows)]
    if projection is not None and projection_labels is not None and len(projection):
        png = projection_png(np.asarray(projection), projection_labels, projection_method)
        sections += ["<h2>Embeddings</h2>", _img(_data_uri(png), "2-D projection")]
    for name, table_rows in (tables or {}).items():
        cols = list(dict.fromkeys(k for row in table_rows for k in row))
        body = [[row.get(c) for c in cols] for row in table_rows]
        table_id = "table-" + "".join(ch if ch.isalnum() else "-" for ch in name.lower())
        sections += [f"<h2>{_esc(name)}</h2>", _table(table_id, cols, body)]
    if softmax:
        sections.append(_softmax_html(softmax))
    if worst:
        sections += ["<h2>Misclassified queries of the worst classes</h2>"]
        sections.append(f"<div id='worst'>{_worst_html(worst)}</div>")
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>"
    )
    return _write_atomic(Path(path), page)


def _softmax_html(head: Mapping[str, Any]) -> str:
    """The softmax head's section: accuracy, scikit-learn's report, confusion, worst mistakes."""
    from embplat.evaluation.softmax import mistakes_figure

    parts = [
        "<div id='softmax'><h2>Softmax head</h2>",
        f"<p>accuracy {float(head['accuracy']):.4f} on {int(head['images'])} images</p>",
        f"<pre id='classification-report'>{_esc(head['classification_report'])}</pre>",
    ]
    confusion = head.get("confusion") or {}
    if confusion.get("labels"):
        fig = confusion_figure(confusion["labels"], confusion["matrix"], "softmax head")
        parts.append(_img(_data_uri(png_bytes(fig)), "confusion matrix of the softmax head"))
    if head.get("worst"):
        parts.append("<h3>Worst mistakes (most confident wrong predictions)</h3>")
        png = png_bytes(mistakes_figure(head["worst"]))
        parts.append(_img(_data_uri(png), "worst mistakes of the softmax head"))
    return "".join(parts) + "</div>"


def write_evaluation_report(
    path: Path,
    out: Mapping[str, Any],
    result: RetrievalEvaluation,
    names: Sequence[str],
    queries: SplitVectors,
    refs: SplitVectors,
    projection: str = "auto",
) -> Path:
    """The report of one evaluation: metrics (``out``, the evaluation's JSON), confusion,
    per class, a 2-D ``projection`` of the queries, the open-set curve, a trained
    classifier's softmax head (``out["softmax"]``), and the misclassified queries of the
    worst classes with their 10 neighbours and the vote."""
    q_labels = queries.labels(names)
    worst = describe_queries(
        result,
        worst_queries(q_labels, result.predictions),
        query_labels=q_labels,
        reference_labels=refs.labels(names),
        query_paths=queries.paths,
        reference_paths=refs.paths,
        class_names=names,
    )
    coords, method = project_2d(queries.vectors, projection)
    metrics = {"exact": result.metrics, "index": result.ann or {}, **result.info}
    tables = {}
    if out["open_set"]:
        tables["Open set: accuracy / coverage (unseen classes answered unknown)"] = out["open_set"]
    return write_report(
        path,
        metrics,
        projection=coords,
        projection_labels=queries.classes,
        projection_method=method,
        confusion=result.confusion,
        per_class=result.per_class,
        worst=worst,
        tables=tables,
        title=f"{out['model']} · {out['split']} vs {out['reference']}",
        softmax=out.get("softmax"),
    )


def _write_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
