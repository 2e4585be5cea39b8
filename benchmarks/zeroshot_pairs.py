"""Zero-shot on Fashion-MNIST over many unseen pairs: DeViSE (GloVe, MiniLM prompts, class
attributes) and ConSE, each measured through the use cases the commands call; mean, min and
max over pairs.

Per pair ``a,b`` (a fixed seeded choice among the 45, or ``--pairs``) in its own data home:

    platform datasets fashion-mnist --out D --per-class N --unseen a,b --size 64
    platform ingest D/JPEGImages --no-embed
    platform train devise --name devise-glove --vectors glove --encoder efficientnet_lite0 \\
        --image-size 64 --stage1-epochs 1 --freeze-epochs 6 --unfreeze-epochs 1 --no-plots
    platform train devise --name devise-minilm --vectors minilm ...   (same flags)
    platform train devise --name devise-attributes --vectors attributes ...   (the predicate
        matrix the sample writes beside classes.txt, stored by ingest)
    platform evaluate --zero-shot --model devise-glove      (ZSL top-1, H with stored gamma)
    platform search --text a --k 10 --model devise-glove [--hubness csls|isoftmax] [--expand 10]
    platform classify <20 a + 20 b test images> --space semantic   (stored gamma applied)

ConSE needs no training, so it is measured once on a home holding every class (the same
images: the sampler is seeded per class) and scored per pair: ZSL among ``a, b`` on their
images, H among all 10 labels (images of the other 8 classes as "seen"), precision@10 of
``conse_search``. Run in-process (``pipelines.*``, what the CLI calls).

Usage: ``python benchmarks/zeroshot_pairs.py [--pairs 10 | --pair a,b ...] [--per-class 100]
[--conse-per-class 40] [--valid-fraction 0.1] [--vectors glove,minilm,attributes] [--no-conse]
[--projection trained|ridge] [--image-size 64] [--features last|multilevel] [--sample-seed 0]
[--work DIR] [--quick]``. ``--projection ridge`` fits DeViSE's projection in closed form
(``train devise --projection ridge --stage1-epochs 0 --unfreeze-epochs 0``); model names gain
``-ridge``, ``-128px`` for another size, ``-multilevel``. Prints one JSON line per pair and
method, then ``| benchmark | result |`` (mean (min–max) over pairs).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from embplat.config import load_settings
from embplat.ingest.fashion_mnist import FASHION_MNIST_CLASSES, build_fashion_mnist
from embplat.pipelines.context import Context
from embplat.pipelines.ingest import ingest_tree
from embplat.workers.context import build_context

HUBNESS = ("none", "csls", "isoftmax")
#: ``search --text --expand``: query expansion from the first search's 10 best images
EXPAND = 10
VECTORS = ("glove", "minilm", "attributes")


def choose_pairs(n: int, seed: int = 13) -> list[tuple[str, str]]:
    """``n`` distinct unseen pairs among the 45, a fixed seeded choice."""
    pairs = list(itertools.combinations(FASHION_MNIST_CLASSES, 2))
    rng = np.random.default_rng(seed)
    return [pairs[int(i)] for i in rng.choice(len(pairs), n, replace=False)]


def context(home: Path, valid_fraction: float = 0.1) -> Context:
    """A local context on ``home`` (SQLite catalog, exact index, EfficientNet-Lite0 64 px)."""
    settings = load_settings(
        **{
            "home": home,
            "index.backend": "exact",
            "embed.encoder": "efficientnet_lite0",
            "embed.image_size": 64,
            "embed.num_workers": 0,
            "ingest.valid_fraction": valid_fraction,
        }
    )
    settings.catalog.url = None
    return build_context(settings)


def prepared(
    home: Path,
    data: Path,
    per_class: int,
    unseen: tuple[str, ...],
    valid_fraction: float,
    seed: int = 0,
) -> Context:
    """Build and ingest the Fashion-MNIST sample (unless the home holds it already);
    ``seed`` picks which images of each class."""
    ctx = context(home, valid_fraction)
    if not (home / ".prepared").exists():
        root = build_fashion_mnist(
            data, per_class=per_class, unseen=list(unseen), size=64, seed=seed
        )
        ingest_tree(ctx, root, embed=False)
        (home / ".prepared").write_text("1")
    return ctx


def precision_at_10(hits: list[Any], label: str) -> float:
    """Share of the (up to) 10 hits whose class is ``label``."""
    return float(np.mean([h.label == label for h in hits])) if hits else 0.0


def per_class_accuracy(truth: list[str], predicted: list[str], classes: set[str]) -> float:
    """Mean over ``classes`` present in ``truth`` of each class's accuracy (NaN if none)."""
    accs = [
        np.mean([p == c for t, p in zip(truth, predicted, strict=True) if t == c])
        for c in sorted(classes)
        if c in truth
    ]
    return float(np.mean(accs)) if accs else float("nan")


def harmonic(seen: float, unseen: float) -> float:
    return 0.0 if seen + unseen == 0 else 2 * seen * unseen / (seen + unseen)


def held_out(ctx: Context) -> list[tuple[Path, str]]:
    """(path, class) of the held-out images: valid (seen classes) and test (the pair)."""
    from embplat.catalog import repo

    with ctx.sessions() as session:
        rows = repo.labelled_images(session=session, splits=["valid", "test"])
    return [(Path(p), c) for _, p, c, _ in rows]


def devise_row(
    ctx: Context, pair: tuple[str, str], vectors: str, epochs: dict[str, Any], tag: str = ""
) -> dict:
    """Train one DeViSE model on the pair's home and measure it."""
    from embplat.pipelines.semantic import label_images, search_by_text
    from embplat.pipelines.train import train_recipe
    from embplat.pipelines.zeroshot import evaluate_zero_shot

    start = time.perf_counter()
    config = {"name": f"devise-{vectors}{tag}", "vectors": vectors, "encoder": "efficientnet_lite0"}
    config |= {"image_size": 64, "plots": False, "device": "cpu", **epochs}  # epochs may override
    name = train_recipe(ctx, "devise", config)
    report = evaluate_zero_shot(ctx, model=name, plots=False)
    row: dict[str, Any] = {"method": f"devise-{vectors}{tag}", "pair": ",".join(pair)}
    row |= {"zsl_top1": report["zsl"]["top1"], "gamma": report["stored_calibration"]["gamma"]}
    row |= {"H_stored": report["stored_calibration"]["H"], "H_raw": report["gzsl"]["H"]}
    row["H_half_calibrated"] = (report["calibrated"] or {}).get("with", {}).get("H")
    for hub, found in report["hubness"].items():
        row[f"zsl_top1_{hub}"] = found["zsl_top1"]
    for hub in HUBNESS:
        p10 = [precision_at_10(search_by_text(ctx, c, model=name, hubness=hub)[0], c) for c in pair]
        row[f"p@10_{hub}"] = float(np.mean(p10))
    expanded = [search_by_text(ctx, c, model=name, expand=EXPAND)[0] for c in pair]
    row[f"p@10_isoftmax_expand{EXPAND}"] = float(
        np.mean([precision_at_10(hits, c) for hits, c in zip(expanded, pair, strict=True)])
    )
    images = held_out(ctx)
    for hub in HUBNESS:
        preds = label_images(ctx, [p for p, _ in images], model=name, hubness=hub)
        truth, got = [c for _, c in images], [p.label for p in preds]
        seen = per_class_accuracy(truth, got, set(truth) - set(pair))
        unseen = per_class_accuracy(truth, got, set(pair))
        row[f"classify_unseen_{hub}"] = unseen
        row[f"H_classify_{hub}"] = harmonic(seen, unseen)
    row["classify_40_unseen"] = classify_unseen(ctx, name, images, pair)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def classify_unseen(
    ctx: Context, model: str, images: list[tuple[Path, str]], pair: tuple[str, str]
) -> float:
    """``classify --space semantic`` on 20 test images of each unseen class: share right."""
    from embplat.pipelines.semantic import label_images

    chosen = [row for c in pair for row in [r for r in images if r[1] == c][:20]]
    preds = label_images(ctx, [p for p, _ in chosen], model=model)
    return float(np.mean([p.label == c for p, (_, c) in zip(preds, chosen, strict=True)]))


def conse_scores(ctx: Context, per_class: int) -> tuple[list[str], list[dict[str, float]]]:
    """ConSE label scores (all 10 labels) of ``per_class`` images of each class."""
    from embplat.catalog import repo
    from embplat.pipelines.conse import conse_labels

    with ctx.sessions() as session:
        rows = repo.labelled_images(session=session, splits=["train", "valid", "test"])
    chosen: list[tuple[Path, str]] = []
    for c in FASHION_MNIST_CLASSES:
        chosen += [(Path(p), cls) for _, p, cls, _ in rows if cls == c][:per_class]
    preds = conse_labels(ctx, [p for p, _ in chosen], k=len(FASHION_MNIST_CLASSES))
    scores = [{s.label: s.score for s in p.candidates} for p in preds]
    return [c for _, c in chosen], scores


def conse_rows(ctx: Context, pairs: list[tuple[str, str]], per_class: int) -> list[dict]:
    """ConSE measured once, scored per pair."""
    from embplat.pipelines.conse import conse_search

    start = time.perf_counter()
    truth, scores = conse_scores(ctx, per_class)
    p10 = {c: precision_at_10(conse_search(ctx, c, k=10)[0], c) for c in FASHION_MNIST_CLASSES}
    spent = round(time.perf_counter() - start, 1)
    out = []
    for pair in pairs:
        two = [(t, max(pair, key=lambda c: s[c])) for t, s in zip(truth, scores, strict=True)]
        two = [(t, g) for t, g in two if t in pair]
        full = [max(s, key=lambda c: s[c]) for s in scores]
        seen = per_class_accuracy(truth, full, set(FASHION_MNIST_CLASSES) - set(pair))
        unseen = per_class_accuracy(truth, full, set(pair))
        zsl = per_class_accuracy([t for t, _ in two], [g for _, g in two], set(pair))
        row = {"method": "conse", "pair": ",".join(pair), "zsl_top1": zsl}
        row |= {"H_stored": harmonic(seen, unseen), "p@10_none": np.mean([p10[c] for c in pair])}
        out.append({**row, "seconds": spent})
    return out


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: mean (min–max) over pairs of each method's metrics."""
    lines = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        for key in [k for k in mine[0] if k not in ("method", "pair")]:
            values = np.array([r[key] for r in mine if r.get(key) is not None], dtype=float)
            if len(values):
                lines.append(
                    f"| {method} {key} | {values.mean():.3f} "
                    f"({values.min():.3f}–{values.max():.3f}, {len(values)} pairs) |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--pair", action="append", help="a,b (repeatable; instead of --pairs)")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--conse-per-class", type=int, default=40)
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="ingest's valid split")
    parser.add_argument("--vectors", default=",".join(VECTORS), help="DeViSE label vectors")
    parser.add_argument("--no-conse", action="store_true", help="skip ConSE")
    parser.add_argument(
        "--projection",
        choices=("trained", "ridge"),
        default="trained",
        help="DeViSE projection: SGD epochs, or ridge in closed form (no stage 1, no fine-tuning)",
    )
    parser.add_argument("--image-size", type=int, default=64, help="DeViSE's input side")
    parser.add_argument("--features", choices=("last", "multilevel"), default="last")
    parser.add_argument(
        "--sample-seed", type=int, default=0, help="which images (a new --work folder each)"
    )
    parser.add_argument("--work", type=Path, help="folder for data homes (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="2 pairs, 24 images per class")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    epochs: dict[str, Any] = {"stage1_epochs": 1, "freeze_epochs": 6, "unfreeze_epochs": 1}
    if args.quick:
        args.pairs, args.per_class, args.conse_per_class = 2, 24, 4
        args.valid_fraction = 0.3  # a few valid images per class for the calibration
        epochs = {"stage1_epochs": 1, "freeze_epochs": 2, "unfreeze_epochs": 1}
    tag = ""
    if args.projection == "ridge":
        epochs = {"stage1_epochs": 0, "unfreeze_epochs": 0, "projection": "ridge"}
        tag = "-ridge"
    if args.image_size != 64:
        epochs["image_size"] = args.image_size
        tag += f"-{args.image_size}px"
    if args.features != "last":
        epochs["features"] = args.features
        tag += f"-{args.features}"
    pairs = [tuple(p.split(",")) for p in args.pair] if args.pair else choose_pairs(args.pairs)
    work = args.work or Path(tempfile.mkdtemp(prefix="zeroshot-pairs-"))
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        slug = "_".join(pair).replace("+", "-")
        home, data = work / slug / "home", work / slug / "data"
        ctx = prepared(home, data, args.per_class, pair, args.valid_fraction, args.sample_seed)
        for vectors in args.vectors.split(","):
            rows.append(devise_row(ctx, pair, vectors, epochs, tag))  # type: ignore[arg-type]
            print(json.dumps(rows[-1]), flush=True)
        ctx.close()
    if not args.no_conse:
        home, data = work / "conse" / "home", work / "conse" / "data"
        ctx = prepared(home, data, args.per_class, (), args.valid_fraction, args.sample_seed)
        for row in conse_rows(ctx, pairs, args.conse_per_class):  # type: ignore[arg-type]
            rows.append(row)
            print(json.dumps(row, default=float), flush=True)
    print("\n| benchmark | result |\n| --- | --- |")
    print("\n".join(f"| zero-shot pairs: {line[2:]}" for line in summary(rows)))


if __name__ == "__main__":
    main()
