"""Engine, sessions and schema migrations (alembic) for SQLite and PostgreSQL alike."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from embplat.config import mask_url
from embplat.errors import ConfigError, DataError, EmbplatError, ServiceUnavailableError

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets its folder created, WAL, and enforced foreign keys.

    Raises:
        ConfigError: the SQLite file's folder cannot be created (e.g. a file is in the way).
    """
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the catalog folder {folder} ({exc.strerror}); point "
                "EMBPLAT_HOME (or --home, or EMBPLAT_CATALOG_URL) at a folder you can write"
            ) from exc
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (results outlive the session)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    """An alembic Config pointing at the packaged migrations and the given URL."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Run ``alembic upgrade head`` on the engine's database.

    Raises:
        ServiceUnavailableError: the database does not answer; the message names its URL.
        DataError: the SQLite file is damaged.
    """
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise unavailable(engine, exc) from exc
    except DatabaseError as exc:
        raise damaged(engine.url.render_as_string(hide_password=False), exc) from exc


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database.

    Raises:
        ServiceUnavailableError: the database does not answer.
        DataError: the SQLite file is damaged (truncated, overwritten).
    """
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise unavailable(engine, exc) from exc
    except DatabaseError as exc:  # sqlite: "file is not a database", "disk image is malformed"
        raise damaged(engine.url.render_as_string(hide_password=False), exc) from exc


def head_revision() -> str:
    """The newest migration shipped with this version of embplat."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


def ensure_schema(engine: Engine, *, auto_upgrade: bool) -> None:
    """Bring the schema to head (local mode) or fail with the command to run (server mode)."""
    if _at_shipped_head(engine):  # the usual case, answered without importing alembic
        return
    if current_revision(engine) == head_revision():
        return
    if auto_upgrade:
        with _upgrade_lock(engine):  # two processes opening a new home at once
            if current_revision(engine) != head_revision():  # the other one may have done it
                log.info("upgrading catalog schema at %s", mask_url(str(engine.url)))
                upgrade(engine)
        return
    raise ServiceUnavailableError(
        f"catalog {mask_url(engine.url.render_as_string())} is not at schema "
        f"{head_revision()}: run `platform db upgrade`"
    )


@contextmanager
def _upgrade_lock(engine: Engine) -> Iterator[None]:
    """Hold ``<catalog file>.upgrade.lock`` (SQLite files only): SQLite runs a migration's
    DDL outside a transaction, so two processes upgrading one new catalog at once would both
    create its tables."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    import fcntl

    lock = Path(database).with_name(Path(database).name + ".upgrade.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: How migration files are named: ``NNNN_short_name.py``, whose revision id is the file name
#: without ``.py`` (``alembic revision --rev-id NNNN_short_name``; alembic.ini's
#: ``file_template`` makes the file name). The released ``0001`` (file ``0001_initial.py``)
#: predates the rule; databases store revision ids, so released ones are never renamed.
MIGRATION_FILE = "[0-9][0-9][0-9][0-9]_*.py"


@functools.cache
def shipped_head() -> str | None:
    """The newest packaged migration's revision id, taken from the file names alone: the
    schema check of every command runs without importing alembic (~0.1 s more per command).

    None when a file in ``versions/`` is not named ``NNNN_*.py`` (then only alembic can
    tell). :func:`head_revision` is the authority; tests/catalog/test_migrations.py checks
    that every revision id is its file name and that the chain is linear in name order, so
    the two agree.
    """
    files = [p for p in (MIGRATIONS / "versions").glob("*.py") if p.name != "__init__.py"]
    if not files or any(not p.match(MIGRATION_FILE) for p in files):
        return None
    return max(p.stem for p in files)


def _at_shipped_head(engine: Engine) -> bool:
    """True when the database's one stored revision is :func:`shipped_head` (plain SQL). Any
    doubt or error is False: :func:`ensure_schema` then asks alembic, which reports it (the
    released ``0001``, whose id is not its file name, is never taken for the head here)."""
    head = shipped_head()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except DatabaseError:  # no such table, unreachable, damaged: alembic's path reports it
        return False
    return [tuple(r) for r in rows] == [(head,)]


def unavailable(engine: Engine, exc: Exception) -> ServiceUnavailableError:
    """A one-line error naming the database (password masked) and the driver's reason."""
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    return ServiceUnavailableError(
        f"catalog database {engine.url.render_as_string(hide_password=True)} is unreachable: "
        f"{reason}"
    )


def catalog_failure(url: str, exc: DatabaseError) -> EmbplatError:
    """The project error for a driver error that escaped a command (the CLI's last resort):
    damaged for a corrupt SQLite file, unavailable for a database that failed to answer
    (e.g. ``database is locked`` after the busy timeout)."""
    if isinstance(exc, OperationalError):
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return ServiceUnavailableError(
            f"catalog database {mask_url(url)} failed: {reason}; retry, or check the database"
        )
    return damaged(url, exc)


def damaged(url: str, exc: Exception) -> EmbplatError:
    """The one-line error for a catalog the driver reports as corrupt.

    A damaged file is data, not an outage: retrying cannot help, so an SQLite catalog gets a
    :class:`DataError` naming the file and the two ways out; another database's error (a
    server answered, but with a corruption error) is reported as unavailable, naming its URL.
    """
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    if not url.startswith("sqlite:///"):
        return ServiceUnavailableError(f"catalog database {mask_url(url)} failed: {reason}")
    path = Path(url.removeprefix("sqlite:///")).absolute()
    return DataError(
        f"catalog {path} is damaged ({reason}): restore it from a backup, or move it aside "
        "and run `platform ingest` again to rebuild it (then `platform doctor` to check the "
        "indexes against it)"
    )
