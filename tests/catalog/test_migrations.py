"""The packaged alembic migrations: they build the schema the models declare (SQLite and
PostgreSQL), go down and up again, form one linear chain named by file, and carry data
across ``0006`` (``metrics.split`` widened from 32 characters)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from embplat.catalog import repo
from embplat.catalog.db import (
    MIGRATIONS,
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    session_factory,
    transaction,
    upgrade,
)
from embplat.catalog.models import Base

MODEL = {"kind": "metric", "encoder": "tiny_cnn", "weights": "w.pt", "dim": 16, "image_size": 32}
#: what ``evaluate --unknown`` records under for three held-out classes
LONG_SPLIT = "valid-unknown:ankle+boot,pullover,sneaker,t-shirt"


@contextmanager
def _alembic(engine: Engine) -> Iterator[tuple[object, Connection]]:
    """An alembic Config bound to one transaction on the engine."""
    with engine.begin() as conn:
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        yield cfg, conn


def _diff(engine: Engine) -> list:
    """What ``alembic revision --autogenerate`` would write (types compared)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_migrations_reach_head_and_match_models(catalog_url):
    engine = make_engine(catalog_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _diff(engine) == []
    tables = set(inspect(engine).get_table_names())
    assert {"classes", "images", "models", "collections", "embeddings", "jobs"} <= tables
    assert {"job_batches", "metrics"} <= tables
    engine.dispose()


def test_migrations_go_down_to_nothing_and_up_again(catalog_url):
    engine = make_engine(catalog_url)
    upgrade(engine)
    with _alembic(engine) as (cfg, _):
        command.downgrade(cfg, "0003_metrics-1")
    tables = set(inspect(engine).get_table_names())
    assert "metrics" not in tables and "models" in tables
    with _alembic(engine) as (cfg, _):
        command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(engine)
    assert _diff(engine) == []
    engine.dispose()


def test_long_split_names_survive_migration_0006(catalog_url):
    """``evaluate --unknown a,b,c`` records under ``valid-unknown:<names>``; PostgreSQL
    rejected split names over 32 characters before 0006 (SQLite ignores lengths)."""
    assert len(LONG_SPLIT) > 32
    engine = make_engine(catalog_url)
    with _alembic(engine) as (cfg, _):
        command.upgrade(cfg, "0005_image_path_index")
    # metrics.split: 32 vs 200 (column changes come as lists; tables added later as tuples)
    assert [d[0][0] for d in _diff(engine) if isinstance(d, list)] == ["modify_type"]
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        model = repo.ensure_model(session=s, name="metric-1", **MODEL).id
        repo.record_metrics(session=s, model_id=model, split="test", values={"accuracy": 0.25})
    upgrade(engine)
    assert _diff(engine) == []
    with transaction(sessions) as s:
        repo.record_metrics(session=s, model_id=model, split=LONG_SPLIT, values={"accuracy": 0.5})
    with sessions() as s:
        assert repo.model_metrics(session=s, names=["metric-1"]) == {
            "metric-1": {"test/accuracy": 0.25, f"{LONG_SPLIT}/accuracy": 0.5}
        }
    engine.dispose()


def test_migration_0007_adds_captions_and_goes_back_keeping_images(catalog_url, image_row):
    engine = make_engine(catalog_url)
    with _alembic(engine) as (cfg, _):
        command.upgrade(cfg, "0006_metrics_split_length")
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        cid = repo.ensure_classes(session=s, names=["c"])["c"]
        repo.add_images(session=s, records=[image_row("a" * 64, cid)])
    upgrade(engine)
    assert _diff(engine) == []
    with transaction(sessions) as s:
        image = repo.images_by_hash(session=s, hashes=["a" * 64])["a" * 64].id
        row = {"image_id": image, "ordinal": 0, "text": "a cat", "source": "file"}
        assert repo.add_captions(session=s, rows=[row]).added == 1
    with _alembic(engine) as (cfg, _):
        command.downgrade(cfg, "0006_metrics_split_length")
    assert "captions" not in inspect(engine).get_table_names()
    with sessions() as s:
        assert repo.count_images(session=s) == 1
    engine.dispose()


def test_revisions_form_one_chain_in_file_name_order():
    """One revision-id style: a new migration's id is its file name (``NNNN_short_name``);
    the released ``0001`` keeps its id (databases store it). The schema check's shortcut
    (``db.shipped_head``) relies on this."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    chain = list(reversed(list(script.walk_revisions())))  # base first
    assert [r.down_revision for r in chain] == [None, *(r.revision for r in chain[:-1])]
    files = sorted(p.name for p in (MIGRATIONS / "versions").glob("*.py"))
    assert files == [Path(r.path).name for r in chain]
    assert chain[0].revision == "0001" and files[0] == "0001_initial.py"
    for revision, name in zip(chain[1:], files[1:], strict=True):
        assert f"{revision.revision}.py" == name, "run `alembic revision --rev-id NNNN_name`"


def test_migrations_carry_no_generated_comments():
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert "please adjust" not in source and "### " not in source, path.name


def test_migration_docstrings_name_their_revision_and_parent():
    """The header alembic writes stays true (a file copied from another keeps its header)."""
    for revision in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions():
        doc = revision.module.__doc__ or ""
        assert f"Revision ID: {revision.revision}\n" in doc
        assert f"Revises: {revision.down_revision or ''}".strip() + "\n" in doc
