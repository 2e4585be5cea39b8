"""A damaged SQLite catalog, or a catalog folder that cannot exist, is one clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embplat.catalog import repo
from embplat.catalog.db import ensure_schema, make_engine, session_factory, transaction
from embplat.errors import ConfigError, DataError

pytestmark = pytest.mark.reliability


def _filled_catalog(path: Path) -> bytes:
    """A real catalog at schema head holding a few hundred classes; returns its bytes."""
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine, auto_upgrade=True)
    with transaction(session_factory(engine)) as session:
        repo.ensure_classes(session=session, names=[f"class{i}" for i in range(300)], source="t")
    engine.dispose()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: data[: len(data) // 2], "database disk image is malformed"),
        (lambda data: os.urandom(len(data)), "file is not a database"),
        (lambda data: data[:100], "database disk image is malformed"),
    ],
    ids=["truncated-half", "garbage", "header-only"],
)
def test_damaged_catalog_names_the_file_and_the_way_out(tmp_path, damage, reason):
    path = tmp_path / "catalog.sqlite3"
    data = _filled_catalog(path)
    path.write_bytes(damage(data))
    engine = make_engine(f"sqlite:///{path}")
    with pytest.raises(DataError) as caught:
        ensure_schema(engine, auto_upgrade=True)
    engine.dispose()
    message = str(caught.value)
    assert message.startswith(f"catalog {path} is damaged ({reason})")
    assert "restore it from a backup" in message and "platform ingest" in message
    assert "\n" not in message


def test_catalog_folder_under_a_file_is_a_config_error(tmp_path):
    (tmp_path / "home").write_text("not a folder")
    with pytest.raises(ConfigError, match=f"cannot create the catalog folder {tmp_path}/home/x"):
        make_engine(f"sqlite:///{tmp_path / 'home' / 'x' / 'catalog.sqlite3'}")
