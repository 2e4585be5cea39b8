"""Torch intra-op threads are set once where the encoder is built (EMBPLAT_EMBED_THREADS)."""

import os
import subprocess
import sys

from embplat.models.encoders import default_torch_threads

SCRIPT = """
import pathlib
import torch
from embplat.config import load_settings
from embplat.workers.context import build_context
opts = {{"embed.encoder": "tiny_cnn", "index.backend": "exact"}}
s = load_settings(home=pathlib.Path({home!r}), **opts)
s.catalog.url = None
ctx = build_context(s)
ctx.spaces.make_encoder()
print(torch.get_num_threads())
"""


def _threads_after_build(tmp_path, env: dict[str, str]) -> int:
    env = {**os.environ, **env}
    env.pop("EMBPLAT_CATALOG_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(home=str(tmp_path / "home"))],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    return int(out.stdout.strip().splitlines()[-1])


def test_thread_setting_is_applied_when_the_encoder_is_built(tmp_path) -> None:
    assert _threads_after_build(tmp_path, {"EMBPLAT_EMBED_THREADS": "3"}) == 3


def test_default_threads_leave_a_core_per_decode_thread_but_keep_two(tmp_path) -> None:
    env = {"EMBPLAT_EMBED_NUM_WORKERS": "1"}
    env.pop("EMBPLAT_EMBED_THREADS", None)
    assert _threads_after_build(tmp_path, env) == default_torch_threads(1)
    assert default_torch_threads(1, cores=2) == 2
    assert default_torch_threads(0, cores=1) == 1
    assert default_torch_threads(1, cores=1) == 1
    assert default_torch_threads(2, cores=16) == 14
    assert default_torch_threads(8, cores=4) == 2


def test_no_decode_thread_by_default_on_two_cores_one_beyond(monkeypatch) -> None:
    from embplat.config import default_decode_threads, load_settings

    assert [default_decode_threads(c) for c in (1, 2, 3, 16)] == [0, 0, 1, 1]
    monkeypatch.delenv("EMBPLAT_EMBED_NUM_WORKERS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert load_settings().embed.num_workers == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert load_settings().embed.num_workers == 1
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "3")
    assert load_settings().embed.num_workers == 3
