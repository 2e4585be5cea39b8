"""Qdrant's local mode: one client per folder in a process, shared by its collections."""

from __future__ import annotations

import numpy as np
import pytest

from embplat.errors import ServiceUnavailableError
from embplat.retrieval import open_index
from embplat.retrieval.backends import QdrantOptions


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_collections_of_one_folder_share_a_client_until_the_last_closes(tmp_path):
    options = QdrantOptions(path=tmp_path / "q")
    active = open_index("qdrant", name="a", dim=8, root=tmp_path, options=options)
    model = open_index("qdrant", name="b", dim=4, root=tmp_path, options=options)
    assert active.client is model.client  # a second client on the folder would be refused
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(3)]
    active.upsert(ids, _unit(3, 8, 0), [{"kind": "image"}] * 3)
    model.upsert(ids, _unit(3, 4, 1), [{"kind": "image"}] * 3)  # read one, write the other
    active.close()
    assert model.count() == 3  # still open: the client is closed with the last index
    model.close()
    again = open_index("qdrant", name="a", dim=8, root=tmp_path, options=options)
    assert again.client is not active.client and again.count() == 3
    again.close()


def test_a_folder_held_by_another_process_is_one_clear_error(tmp_path):
    import subprocess
    import sys
    import time

    folder = tmp_path / "q"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from qdrant_client import QdrantClient; "
            f"c = QdrantClient(path={str(folder)!r}); print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        with pytest.raises(ServiceUnavailableError, match="in use by another process"):
            open_index("qdrant", name="a", dim=8, root=tmp_path, options=QdrantOptions(path=folder))
    finally:
        holder.kill()
        holder.wait()
