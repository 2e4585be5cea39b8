"""Fault injection with real processes: two `platform ingest` runs on one home at once, and
`kill -9` of an ingest at several points followed by `platform doctor` and a re-run.

Afterwards catalog and index must agree exactly: every file once, no duplicate point, and
`platform doctor` finds nothing.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from embplat.ingest.fashion_mnist import build_fashion_mnist

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

FLAGS = ["--encoder", "efficientnet_lite0", "--image-size", "64", "--backend", "nmslib"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Two disjoint small trees (different classes)."""
    out = tmp_path_factory.mktemp("procs")
    a = build_fashion_mnist(out / "a", per_class=8, classes=("coat", "trouser", "bag"))
    b = build_fashion_mnist(out / "b", per_class=8, classes=("sandal", "shirt", "dress"))
    return a, b


def _env(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBPLAT_")}
    env |= {
        "EMBPLAT_HOME": str(home),
        "EMBPLAT_EMBED_NUM_WORKERS": "0",
        "EMBPLAT_EMBED_BATCH_SIZE": "4",
        "EMBPLAT_INGEST_BATCH_SIZE": "4",  # many durable units, so a kill lands mid-job
    }
    return env


def _platform(home, *args, **kw):
    cmd = [sys.executable, "-m", "embplat", *FLAGS, *args]
    return subprocess.Popen(
        cmd, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def _run(home, *args):
    proc = _platform(home, *args)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _catalog_count(home, sql):
    db = home / "catalog.sqlite3"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def _check_exact(home, n_files):
    code, out, err = _run(home, "doctor", "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["findings"] == []
    (counts,) = report["collections"].values()
    assert counts == {"recorded": n_files, "points": n_files, "pending": 0}
    images = _catalog_count(home, "select count(*) from images")
    assert images == n_files


def test_two_ingests_on_one_home_at_once(tmp_path, trees):
    home = tmp_path / "home"
    a, b = trees
    first, second = _platform(home, "ingest", str(a), "--json"), None
    time.sleep(1.0)  # both import torch at once; let the first create the catalog
    second = _platform(home, "ingest", str(b), "--json")
    outs = [p.communicate(timeout=600) for p in (first, second)]
    for proc, (out, err) in zip((first, second), outs, strict=True):
        assert proc.returncode == 0, out + err
    n = sum(1 for t in trees for _ in t.rglob("*.jpg"))
    _check_exact(home, n)


def test_two_ingests_of_the_same_tree_at_once(tmp_path, trees):
    home = tmp_path / "home"
    a, _ = trees
    procs = [_platform(home, "ingest", str(a), "--json") for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out + err
    _check_exact(home, sum(1 for _ in a.rglob("*.jpg")))


@pytest.mark.parametrize(
    "kill_when",
    [
        "images >= 1",  # during registration
        "embeddings >= 4",  # after the first durable unit
        "embeddings >= 13",  # deep into embedding
    ],
)
def test_kill_9_mid_ingest_then_doctor_and_rerun(tmp_path, kill_when):
    home = tmp_path / "home"
    # 48 images in units of 4: the deepest kill point still leaves 9 units to do, so the
    # kill cannot arrive after the job has ended
    tree = build_fashion_mnist(tmp_path / "data", per_class=16, classes=("coat", "trouser", "bag"))
    n = sum(1 for _ in tree.rglob("*.jpg"))
    table, _, threshold = kill_when.partition(" >= ")
    proc = _platform(home, "ingest", str(tree))
    deadline = time.monotonic() + 240
    while _catalog_count(home, f"select count(*) from {table}") < int(threshold):
        assert proc.poll() is None, "ingest ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    # doctor may find drift (interrupted job, unrecorded points) but must not crash
    code, out, err = _run(home, "doctor", "--json")
    assert code in (0, 1) and "Traceback" not in err, err
    code, out, err = _run(home, "ingest", str(tree), "--json")
    assert code == 0, out + err
    _check_exact(home, n)
    code, out, _ = _run(home, "jobs", "--json")
    states = [j["state"] for j in json.loads(out)]
    assert "running" not in states and states.count("interrupted") >= 1
