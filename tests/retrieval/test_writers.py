"""Several writers on one index directory, in real processes: one writer at a time, each
reloading what the others committed; readers never see half-written state."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from embplat.errors import BusyError
from embplat.retrieval import open_index
from embplat.retrieval.base import l2_normalize

DIM, BATCH, ROUNDS = 8, 5, 40
BACKENDS = ["nmslib", "exact"]

#: argv: backend, root, tag, rounds, go-file. Waits for go-file, then upserts BATCH new ids
#: per round, flushing each round (small buffer_limit: nmslib rebuilds and folds on the way).
WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from embplat.retrieval import open_index
from embplat.retrieval.backends import BACKENDS
backend, root, tag, rounds, go = sys.argv[1:6]
small = {"buffer_limit": 40} if backend == "nmslib" else {}
options = BACKENDS[backend].options(**small)
index = open_index(backend, name="shared", dim=8, root=Path(root), options=options)
rng = np.random.default_rng(sum(map(ord, tag)))
while not Path(go).exists():
    time.sleep(0.01)
for r in range(int(rounds)):
    ids = [f"{tag}-{r:03d}-{i}" for i in range(5)]
    index.upsert(ids, rng.standard_normal((5, 8)), [{"writer": tag, "round": r}] * 5)
    index.flush()
index.close()
"""

#: argv: backend, root, done-file. Opens the index afresh until done-file exists; every view
#: must load, hold whole batches and no duplicate id. Prints how many views it checked.
READER = """
import sys
from pathlib import Path
from embplat.retrieval import open_index
backend, root, done = sys.argv[1:4]
views = 0
while not Path(done).exists() or views == 0:
    if not (Path(root) / "shared").exists():
        continue
    index = open_index(backend, name="shared", dim=8, root=Path(root))
    ids = index.ids()
    assert len(ids) == len(set(ids)) == index.count(), "duplicate ids"
    assert len(ids) % 5 == 0, f"{len(ids)} points: a half-applied batch"
    views += 1
print(views)
"""

pytestmark = pytest.mark.reliability

#: argv: backend, root, lock_timeout. One upsert and flush; prints the BusyError if any.
CONTENDER = """
import sys, time
from pathlib import Path
import numpy as np
from embplat.errors import BusyError
from embplat.retrieval import open_index
from embplat.retrieval.backends import BACKENDS
backend, root, timeout = sys.argv[1:4]
options = BACKENDS[backend].options(lock_timeout=float(timeout))
index = open_index(backend, name="shared", dim=8, root=Path(root), options=options)
start = time.monotonic()
try:
    index.upsert(["contender"], np.ones((1, 8)), [{}])
except BusyError as exc:
    print(f"BUSY {time.monotonic() - start:.2f} {exc}")
    sys.exit(3)
index.close()
print(f"OK {time.monotonic() - start:.2f}")
"""


def _python(script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_writer_processes_keep_every_point(tmp_path: Path, backend: str) -> None:
    go, done = tmp_path / "go", tmp_path / "done"
    writers = [_python(WRITER, backend, tmp_path, tag, ROUNDS, go) for tag in ("a", "b")]
    reader = _python(READER, backend, tmp_path, done)
    time.sleep(0.5)  # let both import; the go file starts their loops together
    go.touch()
    for writer in writers:
        _finish(writer)
    done.touch()
    assert int(_finish(reader)) >= 1
    index = open_index(backend, name="shared", dim=DIM, root=tmp_path)
    want = {f"{tag}-{r:03d}-{i}" for tag in "ab" for r in range(ROUNDS) for i in range(BATCH)}
    ids = index.ids()
    assert len(ids) == len(set(ids)) == index.count() == len(want)
    assert set(ids) == want
    _, payloads = index.get([f"b-{ROUNDS - 1:03d}-0"])
    assert payloads == [{"writer": "b", "round": ROUNDS - 1}]
    leftovers = [f.name for f in (tmp_path / "shared").iterdir() if f.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_writer_gets_busy_error_or_waits(tmp_path: Path, backend: str) -> None:
    index = open_index(backend, name="shared", dim=DIM, root=tmp_path)
    index.upsert(["first"], l2_normalize(np.ones((1, DIM))), [{}])  # holds the lock
    out = _python(CONTENDER, backend, tmp_path, 0).communicate(timeout=120)[0]
    assert out.startswith("BUSY"), out
    assert str(tmp_path / "shared") in out
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in out
    assert "wait for it or stop it" in out
    assert float(out.split()[1]) < 1.0  # lock_timeout=0: at once
    # a patient writer waits for the flush, then reloads and adds its point
    waiting = _python(CONTENDER, backend, tmp_path, 60)
    time.sleep(2.0)
    assert waiting.poll() is None
    index.flush()  # releases the lock
    out = _finish(waiting, timeout=120)
    assert out.startswith("OK"), out
    reopened = open_index(backend, name="shared", dim=DIM, root=tmp_path)
    assert sorted(reopened.ids()) == ["contender", "first"]
    index.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_handle_reloads_what_another_committed_before_writing(tmp_path: Path, backend: str) -> None:
    first = open_index(backend, name="shared", dim=DIM, root=tmp_path)
    second = open_index(backend, name="shared", dim=DIM, root=tmp_path)  # loaded before
    first.upsert(["a"], l2_normalize(np.ones((1, DIM))), [{}])
    with pytest.raises(BusyError, match="another handle in this process"):
        second.upsert(["b"], l2_normalize(np.ones((1, DIM))), [{}])
    first.flush()
    second.upsert(["b"], l2_normalize(np.ones((1, DIM))), [{}])
    assert sorted(second.ids()) == ["a", "b"]  # "a" reloaded, not overwritten
    second.close()
    first.close()
    assert sorted(open_index(backend, name="shared", dim=DIM, root=tmp_path).ids()) == ["a", "b"]
