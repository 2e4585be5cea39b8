"""Engines, sessions and the schema check: migrations reach head, an old schema is refused in
server mode, an unreachable or damaged catalog is one clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from embplat.catalog import repo
from embplat.catalog.db import (
    current_revision,
    ensure_schema,
    head_revision,
    make_engine,
    session_factory,
    shipped_head,
    transaction,
    upgrade,
)
from embplat.errors import ConfigError, DataError, ServiceUnavailableError


def test_server_mode_refuses_an_old_schema_with_the_command_to_run(catalog_url):
    engine = make_engine(catalog_url)
    with pytest.raises(ServiceUnavailableError, match="platform db upgrade"):
        ensure_schema(engine, auto_upgrade=False)
    ensure_schema(engine, auto_upgrade=True)
    assert current_revision(engine) == head_revision()
    ensure_schema(engine, auto_upgrade=False)  # now at head: no error
    engine.dispose()


def test_schema_shortcut_agrees_with_alembic():
    assert shipped_head() == head_revision()


def test_schema_shortcut_never_passes_a_database_behind_head(tmp_path):
    """A catalog one migration behind is upgraded even though its one stored revision is a
    known one (the shortcut answers for the head only)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0005_image_path_index'"))
    with pytest.raises(ServiceUnavailableError, match="run `platform db upgrade`"):
        ensure_schema(engine, auto_upgrade=False)
    engine.dispose()


def test_unreachable_database_names_url_without_password():
    engine = make_engine("postgresql+psycopg://user:secret@127.0.0.1:1/nope")
    with pytest.raises(ServiceUnavailableError) as err:
        current_revision(engine)
    assert "secret" not in str(err.value)
    assert "127.0.0.1:1/nope" in str(err.value)


def _filled_catalog(path: Path) -> bytes:
    """A real catalog at schema head holding a few hundred classes; returns its bytes."""
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine, auto_upgrade=True)
    with transaction(session_factory(engine)) as session:
        repo.ensure_classes(session=session, names=[f"class{i}" for i in range(300)], source="t")
    engine.dispose()
    return path.read_bytes()


@pytest.mark.reliability
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


@pytest.mark.reliability
def test_catalog_folder_under_a_file_is_a_config_error(tmp_path):
    (tmp_path / "home").write_text("not a folder")
    with pytest.raises(ConfigError, match=f"cannot create the catalog folder {tmp_path}/home/x"):
        make_engine(f"sqlite:///{tmp_path / 'home' / 'x' / 'catalog.sqlite3'}")


@pytest.mark.reliability
def test_processes_opening_a_new_sqlite_catalog_at_once_all_succeed(tmp_path):
    """SQLite runs migration DDL outside a transaction: without the upgrade lock, two
    processes creating one catalog at once both create its tables and one fails."""
    import subprocess
    import sys
    import time

    script = (
        "import sys, time\n"
        "from embplat.catalog.db import ensure_schema, make_engine\n"
        "while time.time() < float(sys.argv[2]): pass\n"
        "ensure_schema(make_engine(sys.argv[1]), auto_upgrade=True)\n"
    )
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'round{round_}' / 'catalog.sqlite3'}"
        start = f"{time.time() + 2.0}"  # every process starts its upgrade at this instant
        procs = [
            subprocess.Popen([sys.executable, "-c", script, url, start], stderr=subprocess.PIPE)
            for _ in range(4)
        ]
        errors = [p.communicate(timeout=120)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        assert current_revision(make_engine(url)) == head_revision()
