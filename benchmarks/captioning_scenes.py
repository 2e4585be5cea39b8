"""Show-attend-tell captioning on the captioned scenes: BLEU-1..4 at beams 1/3/5 and the
fraction of test images whose best caption names both shapes with their colours and their
spatial relation correctly, over several seeds (mean and spread).

Prepares (unless the data home holds it already) ``platform datasets scenes --images N`` and
``platform ingest --no-embed`` of it (captioning decodes the images itself), then per seed
``platform train caption``, ``platform evaluate --model --beam 1,3,5`` (BLEU on the test
split) and ``platform caption <every test image> --beam B --json`` (what users get), each
its own ``platform`` process, so the commands printed are the ones measured. Correctness of
a caption is judged against ``scenes.jsonl`` by ``embplat.ingest.scene_check``.

Usage: ``python benchmarks/captioning_scenes.py [--home DIR] [--data DIR] [--images 2000]
[--seeds 3] [--first-seed 0] [--epochs 12] [--fine-tune-epochs 0] [--image-size 224]
[--quick] [-- more train caption flags]``; prints a markdown table
``| benchmark | result |`` at the end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from matching_scenes import run  # this folder: run as a script

BEAMS = (1, 3, 5)


def prepare(home: Path, data: Path, images: int) -> None:
    """Render and ingest the scenes unless the home holds them already."""
    if (home / ".prepared").exists():
        print(f"using the data home {home} as it is", flush=True)
        return
    run(["datasets", "scenes", "--out", str(data), "--images", str(images)], home)
    run(["ingest", str(data), "--no-embed"], home)
    (home / ".prepared").write_text("1")


def test_images(data: Path) -> list[Path]:
    """The test split's image files, as the scenes generator listed them."""
    names = (data / "Flickr_8k.testImages.txt").read_text(encoding="utf-8").split()
    return [data / "Flicker8k_Dataset" / n for n in names]


def correct_fraction(data: Path, captions: dict[str, str]) -> float:
    """Fraction of images whose caption names both shapes and their relation correctly."""
    from embplat.ingest.scene_check import caption_matches, read_scenes

    scenes = read_scenes(data / "scenes.jsonl")
    return float(np.mean([caption_matches(c, scenes[Path(p).name]) for p, c in captions.items()]))


def one_seed(args: argparse.Namespace, home: Path, data: Path, seed: int) -> dict[str, Any]:
    """Train, evaluate and caption the test split with one seed."""
    name = f"caption-s{seed}-{int(time.time())}"
    train = [
        "train", "caption", "--name", name, "--seed", str(seed), "--epochs", str(args.epochs),
        "--fine-tune-epochs", str(args.fine_tune_epochs), "--image-size", str(args.image_size),
        "--json", *args.train_args,
    ]  # fmt: skip
    out, train_s = run(train, home)
    info = json.loads(out)
    beams = ",".join(map(str, BEAMS))
    out, _ = run(["evaluate", "--model", name, "--beam", beams, "--json"], home)
    bleu = json.loads(out)["beams"]
    files = [str(p) for p in test_images(data)]
    row: dict[str, Any] = {"seed": seed, "best_epoch": info["best_epoch"], "train_s": train_s}
    for beam in BEAMS:
        cmd = ["caption", *files, "--model", name, "--beam", str(beam), "--json"]
        out, seconds = run(cmd, home)
        got = {r["path"]: r["captions"][0]["text"] for r in json.loads(out)["results"]}
        row[f"correct@{beam}"] = correct_fraction(data, got)
        row[f"images_per_s@{beam}"] = len(files) / seconds
        for n in range(1, 5):
            row[f"bleu{n}@{beam}"] = bleu[str(beam)][f"bleu{n}"]
    print(json.dumps(row), flush=True)
    return row


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: mean ± std (min–max) over seeds of every metric."""
    out = []
    for key in [k for k in rows[0] if "@" in k] + ["train_s"]:
        values = np.array([r[key] for r in rows], dtype=float)
        out.append(
            f"| {key} | {values.mean():.3f} ± {values.std():.3f} "
            f"({values.min():.3f}–{values.max():.3f}, {len(values)} seeds) |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds N, N+1, ...")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--fine-tune-epochs", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--quick", action="store_true", help="200 images, 1 seed, 2 epochs")
    parser.add_argument("train_args", nargs="*", help="after --: more `train caption` flags")
    args = parser.parse_args()
    if args.quick:
        args.images, args.seeds, args.epochs = 200, 1, 2
    scratch = Path(tempfile.mkdtemp(prefix="captioning-"))
    home, data = args.home or scratch / "home", args.data or scratch / "scenes"
    prepare(home, data, args.images)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    rows = [one_seed(args, home, data, seed) for seed in seeds]
    print("\n| benchmark | result |\n| --- | --- |")
    print("\n".join(f"| captioning {line[2:]}" for line in summary(rows)))


if __name__ == "__main__":
    main()
