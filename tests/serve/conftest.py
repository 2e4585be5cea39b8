"""A tiny ingested data home and real ``platform serve`` processes on free loopback ports."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import Server, api_settings, start_server, stop


@pytest.fixture(scope="session")
def served_home(tmp_path_factory: pytest.TempPathFactory, fmnist_root: Path) -> Path:
    """A data home with the tiny Fashion-MNIST tree ingested by the tiny encoder."""
    from embplat.api import Platform

    base = tmp_path_factory.mktemp("served")
    shutil.copytree(fmnist_root.parent, base / "awa2")
    with Platform(settings=api_settings(base / "home")) as platform:
        platform.ingest(base / "awa2" / "JPEGImages")
    return base / "home"


@pytest.fixture(scope="session")
def server(served_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``platform serve`` on :func:`served_home`, no API key (loopback), at most 8 images
    of 2 MiB per request."""
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    limits = {"EMBPLAT_SERVE_MAX_IMAGES": "8", "EMBPLAT_SERVE_MAX_UPLOAD_BYTES": str(2 * 2**20)}
    running = start_server(served_home, log, **limits)
    yield running
    stop(running)


@pytest.fixture(scope="session")
def platform_api(served_home: Path) -> Iterator[object]:
    """The Python API on the same home as :func:`server`."""
    from embplat.api import Platform

    with Platform(settings=api_settings(served_home)) as platform:
        yield platform
