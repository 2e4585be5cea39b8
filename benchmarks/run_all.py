"""Run every benchmark in ``benchmarks/`` briefly and print one combined table of ratios.

Each script runs as its own process with ``--quick`` (small sizes) when it accepts it, else
with the small arguments listed in ``SMALL_ARGS``; a script that is absent is skipped with a
note. Every script ends with a markdown table ``| benchmark | result |``; its rows are
collected (for a script without one, its lines that mention a ratio). ``make bench`` runs
this. ``server_ingest.py`` needs PostgreSQL and Redis on 127.0.0.1 (``scripts/services.sh up``).

Usage: ``python benchmarks/run_all.py [--only NAME ...] [--timeout 900]``
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Run in this order; scripts found in the folder but not listed here run after them.
SCRIPTS = [
    "embed_and_search.py",
    "startup.py",
    "classify_cli.py",
    "ingest_cores.py",
    "qdrant_load.py",
    "server_ingest.py",
    "gpu_ingest.py",
    "serve.py",
]
#: Small arguments of a script that has no ``--quick`` flag.
SMALL_ARGS = {
    "server_ingest.py": ["--per-class", "5", "--image-size", "64"],
    # on a CPU-only machine: proves the path end to end; real figures need a GPU
    "gpu_ingest.py": ["--device", "cpu", "--images", "32", "--batch", "16", "--rounds", "1"],
}
_ROW = re.compile(r"^\|(?!\s*-)(?!\s*benchmark\s*\|)(.+)\|\s*$")


def quick_args(script: Path) -> list[str] | None:
    """Arguments for a brief run of ``script``, or None when it has no known brief form."""
    if "--quick" in script.read_text(encoding="utf-8"):
        return ["--quick"]
    return SMALL_ARGS.get(script.name)


def table_rows(output: str) -> list[str]:
    """The ``| benchmark | result |`` body rows of ``output`` (header and rule left out), or,
    when it prints no such table, its ``label: value`` lines mentioning a ratio."""
    lines = output.splitlines()
    rows = [line.strip() for line in lines if _ROW.match(line.strip())]
    if rows:
        return rows
    found = [line.strip() for line in lines if "ratio" in line.lower()]
    pairs = [line.rpartition(":") for line in found if ":" in line]
    return [f"| {label.strip()} | {value.strip()} |" for label, _, value in pairs]


def run(script: Path, timeout: float) -> tuple[list[str], str]:
    """Run one script; returns its table rows and a status note."""
    args = quick_args(script)
    if args is None:
        return [], "skipped: no --quick flag and no small arguments known"
    cmd = [sys.executable, str(script), *args]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout:.0f} s"
    took = f"{time.perf_counter() - start:.0f} s"
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return [], f"failed (exit {proc.returncode}, {took}): {tail[0][:160]}"
    rows = table_rows(proc.stdout)
    return rows, f"ok ({took})" if rows else f"ok ({took}) but printed no table"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the combined table; non-zero exit if one failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="script names to run (default: all)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per script")
    args = parser.parse_args(argv)
    found = sorted(p.name for p in HERE.glob("*.py") if p.name != Path(__file__).name)
    names = [*SCRIPTS, *(n for n in found if n not in SCRIPTS)]
    if args.only:
        names = [n for n in names if n in args.only or n.removesuffix(".py") in args.only]
    table, notes, failed = [], [], False
    for name in names:
        script = HERE / name
        if not script.exists():
            notes.append(f"{name}: skipped, not in benchmarks/ yet")
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows, note = run(script, args.timeout)
        failed = failed or note.startswith(("failed", "timed out"))
        table += [f"| `{name}` · {row.lstrip('|').strip()}" for row in rows]
        notes.append(f"{name}: {note}")
    print("\n| benchmark | result |\n| --- | --- |")
    print("\n".join(table))
    print("\n" + "\n".join(f"- {note}" for note in notes))
    return int(failed)


if __name__ == "__main__":
    raise SystemExit(main())
