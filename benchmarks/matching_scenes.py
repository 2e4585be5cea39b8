"""Image–caption matching on the captioned scenes: R@K and ranks per text encoder and loss.

Prepares (unless the data home holds it already) ``platform datasets scenes --images N`` and
``platform ingest`` of it, then for every text encoder × loss trains ``platform train
matching`` and evaluates it with ``platform evaluate --model`` (the test split: the Karpathy
protocol, each image with its 5 captions), each as its own ``platform`` process, so the
commands printed are the ones measured. The best configuration (highest test R-sum of the
first seed) is trained again with more seeds: mean and spread.

Spatial relations: each scene's ``mirror_of`` twin (``scenes.jsonl``) has the same shapes
with the relation swapped ("left of" ↔ "right of", "above" ↔ "below"); both share a split.
``mirror`` = the fraction of test captions (of images whose twin is in the test split too)
that score their image's twin above their own image (exact scores; 0.5 = blind to the
relation, 0 = always right).

Usage: ``python benchmarks/matching_scenes.py [--home DIR] [--data DIR] [--images 2000]
[--encoders glove,gru,minilm] [--losses order,infonce] [--epochs 20] [--seeds 2]
[--quick]``; prints a markdown table ``| benchmark | result |`` at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FLAGS = ["--backend", "exact"]


def platform_command() -> list[str]:
    """The installed ``platform`` script next to this interpreter, else ``python -m embplat``."""
    script = Path(sys.executable).with_name("platform")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "embplat"]


def run(args: list[str], home: Path) -> tuple[str, float]:
    """Run ``platform FLAGS args`` with the data home; its stdout and wall seconds. The
    command is printed first, image files counted rather than listed (a split's worth)."""
    cmd = [*platform_command(), *FLAGS, *args]
    files = [a for a in args if a.endswith(".jpg")]
    shown = [a for a in args if not a.endswith(".jpg")]
    if files:
        shown.insert(1, f"<{len(files)} images>")
    print(f"$ EMBPLAT_HOME={home} platform {' '.join([*FLAGS, *shown])}", flush=True)
    start = time.perf_counter()
    env = {**os.environ, "EMBPLAT_HOME": str(home)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return done.stdout, time.perf_counter() - start


def prepare(home: Path, data: Path, images: int) -> None:
    """Render and ingest the scenes unless the home holds them already."""
    if (home / ".prepared").exists():
        print(f"using the data home {home} as it is", flush=True)
        return
    run(["datasets", "scenes", "--out", str(data), "--images", str(images)], home)
    _, seconds = run(["ingest", str(data)], home)
    print(f"ingest: {seconds:.0f} s", flush=True)
    (home / ".prepared").write_text("1")


def mirror_confusion(home: Path, data: Path, model: str) -> float:
    """Fraction of test captions scoring their image's mirrored twin above their image."""
    from embplat.catalog import repo
    from embplat.config import load_settings
    from embplat.pipelines.evaluate_matching import exact_scores, split_points
    from embplat.workers.context import build_context

    truth = [json.loads(line) for line in (data / "scenes.jsonl").read_text().splitlines()]
    twin: dict[str, str] = {}
    for row in truth:
        if row.get("mirror_of") is not None:
            other = truth[row["mirror_of"]]["image"]
            twin[row["image"]], twin[other] = other, row["image"]
    ctx = build_context(load_settings(home=home, **{"index.backend": "exact"}))
    try:
        points, _ = split_points(ctx, model, "test")
        with ctx.sessions() as session:
            record = repo.get_model(session=session, name=model)
            kind = record.config["train_config"]["loss"]
            files = {
                i.id: Path(i.path).name
                for i in repo.get_images(session=session, ids=points.image_ids)
            }
        row_of = {files[i]: n for n, i in enumerate(points.image_ids)}
        scores = exact_scores(points, kind)
    finally:
        ctx.close()
    worse = []
    for c, own in enumerate(points.image_of_text):
        other = row_of.get(twin.get(files[points.image_ids[own]], ""))
        if other is not None:
            worse.append(scores[other, c] > scores[own, c])
    return float(np.mean(worse)) if worse else float("nan")


def train_and_evaluate(
    home: Path, data: Path, encoder: str, loss: str, epochs: int, seed: int, extra: list[str]
) -> dict[str, Any]:
    """Train one configuration, evaluate it; its test metrics, mirror confusion and times."""
    name = f"{encoder}-{loss}-s{seed}"
    train_args = ["train", "matching", "--name", name, "--text-encoder", encoder]
    train_args += ["--loss", loss, "--epochs", str(epochs), "--seed", str(seed), *extra]
    out, train_s = run([*train_args, "--keep-checkpoints", "best", "--json"], home)
    info = json.loads(out)
    out, _ = run(["evaluate", "--model", name, "--json"], home)
    result = json.loads(out)
    return {
        "name": name,
        "encoder": encoder,
        "loss": loss,
        "seed": seed,
        "best_epoch": info["best_epoch"],
        "train_s": train_s,
        "metrics": result["metrics"],
        "index": result["index"],
        "mirror": mirror_confusion(home, data, name),
        "images": result["images"],
        "captions": result["captions"],
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    """Markdown table of every run."""
    print(
        "\n| text encoder | loss | seed | best epoch | train s | t2i R@1 | R@5 | R@10 | med | "
        "mean | i2t R@1 | R@5 | R@10 | med | mean | mirror |"
    )
    print("|---" * 16 + "|")
    for r in rows:
        m = r["metrics"]
        cells = [r["encoder"], r["loss"], str(r["seed"]), str(r["best_epoch"])]
        cells.append(f"{r['train_s']:.0f}")
        for d in ("t2i", "i2t"):
            cells += [f"{m[f'{d}_r{k}']:.3f}" for k in (1, 5, 10)]
            cells += [f"{m[f'{d}_median_rank']:.1f}", f"{m[f'{d}_mean_rank']:.2f}"]
        cells.append(f"{r['mirror']:.3f}")
        print("| " + " | ".join(cells) + " |")


def summary(rows: list[dict[str, Any]], best: tuple[str, str]) -> None:
    """``| benchmark | result |`` rows: the best configuration's mean ± std over seeds."""
    runs = [r for r in rows if (r["encoder"], r["loss"]) == best]
    print("\n| benchmark | result |\n|---|---|")
    for key in ("t2i_r5", "t2i_mean_rank", "i2t_r5", "i2t_mean_rank", "rsum"):
        values = np.array([r["metrics"][key] for r in runs])
        print(
            f"| matching {best[0]}+{best[1]} test {key} ({len(runs)} seeds) | "
            f"{values.mean():.3f} ± {values.std():.3f} |"
        )
    mirror = np.array([r["mirror"] for r in runs])
    print(f"| mirror twin outranks the right image | {mirror.mean():.3f} ± {mirror.std():.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="data home (default: a new temporary one)")
    parser.add_argument("--data", type=Path, help="scenes folder (default: <home>/scenes)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--encoders", default="glove,gru,minilm")
    parser.add_argument("--losses", default="order,infonce")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="60 images, glove, 2 epochs")
    parser.add_argument("extra", nargs="*", help="more `train matching` flags, after --")
    args = parser.parse_args()
    if args.quick:
        args.images, args.encoders, args.losses, args.epochs, args.seeds = (
            60,
            "glove",
            "infonce",
            2,
            1,
        )
    args.home = args.home or Path(tempfile.mkdtemp(prefix="matching-bench-"))
    args.data = args.data or args.home / "scenes"
    prepare(args.home, args.data, args.images)
    rows = []
    for encoder in args.encoders.split(","):
        for loss in args.losses.split(","):
            rows.append(
                train_and_evaluate(args.home, args.data, encoder, loss, args.epochs, 0, args.extra)
            )
            print_table(rows[-1:])
    first = max(rows, key=lambda r: r["metrics"]["rsum"])
    best = (first["encoder"], first["loss"])
    for seed in range(1, args.seeds):
        rows.append(train_and_evaluate(args.home, args.data, *best, args.epochs, seed, args.extra))
    print_table(rows)
    summary(rows, best)


if __name__ == "__main__":
    main()
