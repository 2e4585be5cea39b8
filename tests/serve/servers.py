"""Real ``platform serve`` processes for the tests: start one on a free loopback port over
a data home, talk to it, stop it (a module of its own, so test files import it by a name no
other test folder uses)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

#: The seeded tiny encoder and the exact index: fast, and deterministic across processes.
FLAGS = ["--encoder", "tiny_cnn", "--backend", "exact"]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def home_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without EMBPLAT_* settings, pointed at ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBPLAT_")}
    return env | {"EMBPLAT_HOME": str(home), "EMBPLAT_EMBED_NUM_WORKERS": "0", **extra}


@dataclass
class Server:
    """One running ``platform serve`` process."""

    url: str
    process: subprocess.Popen[bytes]
    home: Path

    def client(self, **kw: object) -> httpx.Client:
        """An HTTP client on this server."""
        return httpx.Client(base_url=self.url, timeout=60, **kw)  # type: ignore[arg-type]


def start_server(
    home: Path, log: Path, *, flags: tuple[str, ...] = tuple(FLAGS), **env: str
) -> Server:
    """Start ``platform serve`` on ``home`` (with the root ``flags``) and wait until it
    answers ``/readyz``."""
    port = free_port()
    cmd = [sys.executable, "-m", "embplat", *flags, "serve", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=home_env(home, **env), stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"platform serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return Server(url, proc, home)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"platform serve did not become ready: {log.read_text()[-2000:]}")


def stop(server: Server) -> None:
    """End the server process started by :func:`start_server`."""
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()


def api_settings(home: Path):
    """The settings ``platform serve`` gets from :func:`home_env` and :data:`FLAGS`."""
    from embplat.config import load_settings

    settings = load_settings(
        **{
            "home": home,
            "embed.encoder": "tiny_cnn",
            "embed.num_workers": 0,
            "index.backend": "exact",
        }
    )
    settings.catalog.url = None  # never a developer's EMBPLAT_CATALOG_URL
    return settings
