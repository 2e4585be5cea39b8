"""Start-up time of the ``platform`` command, printed as ratios against bare interpreters.

``platform --help`` is compared with ``python -c "import torch"`` (the cost the CLI must not
pay just to print its help) and ``platform status`` with ``python -c "pass"`` (the floor of
any Python process). Each command runs in a fresh process; the rounds alternate the commands
(so a burst of load on a shared machine hits all of them alike) and the best run of each is
kept. Targets: ``--help`` <= 0.5 s, ``status`` <= 1 s.

``status`` runs against a throwaway data home holding a small ingested nmslib index (built
once, untimed, with the ``tiny_cnn`` encoder: that set-up imports torch, the timed runs
must not).

Usage: ``python benchmarks/startup.py [--rounds 5] [--quick] [--home DIR]``; the last lines
printed are a markdown table ``| benchmark | result |``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Targets from the issue, in seconds.
HELP_TARGET = 0.5
STATUS_TARGET = 1.0

ENCODER_FLAGS = ["--encoder", "tiny_cnn", "--backend", "nmslib"]


def platform_command() -> list[str]:
    """The installed ``platform`` script next to this interpreter, else ``python -m embplat``."""
    script = Path(sys.executable).with_name("platform")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "embplat"]


def clean_env(home: Path) -> dict[str, str]:
    """The environment of every timed run: this data home, no configured catalog or broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBPLAT_")}
    env["EMBPLAT_HOME"] = str(home)
    env["EMBPLAT_EMBED_NUM_WORKERS"] = "0"
    return env


def prepare_home(home: Path) -> None:
    """Ingest a few generated images (two classes) into ``home`` unless it has a catalog."""
    if (home / "catalog.sqlite3").is_file():
        return
    from PIL import Image

    tree = home.parent / f"{home.name}-images"
    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        folder = tree / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(6):
            shade = tuple(min(255, c + 8 * i) for c in colour)
            Image.new("RGB", (40, 40), shade).save(folder / f"{label}_{i}.png")
    subprocess.run(
        [*platform_command(), *ENCODER_FLAGS, "ingest", str(tree), "--json"],
        env=clean_env(home),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall-clock seconds of one run of ``argv`` (which must succeed)."""
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(rounds: int, home: Path) -> dict[str, float]:
    """Best wall-clock seconds of each command over ``rounds`` alternating rounds."""
    env = clean_env(home)
    commands = {
        "platform --help": [*platform_command(), "--help"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "platform status": [*platform_command(), *ENCODER_FLAGS, "status"],
        "python -c 'pass'": [sys.executable, "-c", "pass"],
    }
    for argv in commands.values():  # warm the file cache and the .pyc files, untimed
        timed(argv, env)
    best = dict.fromkeys(commands, float("inf"))
    for _ in range(rounds):
        for name, argv in commands.items():
            best[name] = min(best[name], timed(argv, env))
    return best


def report(best: dict[str, float], rounds: int) -> None:
    """Print the detailed table, then the markdown summary (the last lines)."""
    pairs = (
        ("platform --help", "python -c 'import torch'", HELP_TARGET),
        ("platform status", "python -c 'pass'", STATUS_TARGET),
    )
    print(f"start-up, best of {rounds} alternating rounds (seconds)")
    print(f"{'command':<28}{'s':>8}   {'baseline':<28}{'s':>8}{'ratio':>8}{'target':>9}")
    for cmd, base, target in pairs:
        ok = "ok" if best[cmd] <= target else "MISSED"
        print(
            f"{cmd:<28}{best[cmd]:>8.3f}   {base:<28}{best[base]:>8.3f}"
            f"{best[cmd] / best[base]:>7.2f}x  <={target:g}s {ok}"
        )
    print()
    print("| benchmark | result |")
    print("| --- | --- |")
    for cmd, base, target in pairs:
        print(
            f"| startup: {cmd} | {best[cmd]:.3f} s = {best[cmd] / best[base]:.2f}x "
            f"{base} ({best[base]:.3f} s); target <= {target:g} s |"
        )


def main() -> None:
    """Parse the flags, build (or reuse) the data home, measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (best kept)")
    parser.add_argument("--quick", action="store_true", help="one round (for `make bench`)")
    parser.add_argument("--home", type=Path, help="data home to reuse (default: a temp one)")
    args = parser.parse_args()
    rounds = 1 if args.quick else max(1, args.rounds)
    tmp = None if args.home else Path(tempfile.mkdtemp(prefix="embplat-startup-"))
    home = args.home or tmp / "home"  # type: ignore[operator]
    try:
        prepare_home(home)
        report(measure(rounds, home), rounds)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
