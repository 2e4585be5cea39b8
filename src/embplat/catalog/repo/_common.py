"""Shared by the repository modules: the one dialect-aware ``INSERT .. ON CONFLICT`` and
the chunking of long id lists."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.orm import Session

T = TypeVar("T")

#: ids per ``IN (...)`` clause, well below the bound-parameter limits of every driver
CHUNK = 500


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (for ``IN`` clauses)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert(session: Session, model: type) -> Any:
    """``INSERT INTO model`` in the dialect of the session's database, which both offer
    ``on_conflict_do_nothing`` / ``on_conflict_do_update`` and ``excluded``. Rows go with
    the execution as parameter sets (one statement, compiled once and cached, batched by
    SQLAlchemy's "insertmanyvalues"), not as a VALUES list compiled anew each call."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert(model)


def _signed32(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


def _lock_keys(
    session: Session, model: type, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> None:
    """On PostgreSQL, take a transaction-scoped advisory lock for each row's conflict key,
    all in one global (sorted) order, before inserting the rows in the caller's order.

    Two workers inserting overlapping rows in opposite orders would otherwise each wait on a
    row the other inserted and not yet committed, and deadlock; with the locks, the second
    waits for the first's commit before touching the index. Rows still insert, and take
    their ids, in the order given. SQLite serialises writers by itself.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    table = str(getattr(model, "__tablename__", model.__name__))
    space = _signed32(zlib.crc32(table.encode()))
    hashes = sorted(
        {
            _signed32(zlib.crc32(json.dumps([r[k] for k in keys], default=str).encode()))
            for r in rows
        }
    )
    session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(:space, k)) "
            "FROM unnest(CAST(:keys AS integer[])) AS k"
        ),
        {"space": space, "keys": hashes},
    )


def insert_ignore(
    *, session: Session, model: type, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> int:
    """Insert rows (all with the same keys), skipping those that collide on ``keys`` (a
    unique constraint).

    Returns:
        How many rows were inserted.
    """
    if not rows:
        return 0
    stmt = _insert(session, model).on_conflict_do_nothing(index_elements=list(keys))
    _lock_keys(session, model, rows, keys)
    # RETURNING lists only the rows actually inserted (rowcount is -1 on some drivers)
    found = session.execute(stmt.returning(model.id), [dict(r) for r in rows])  # type: ignore[attr-defined]
    return len(found.all())


def upsert(
    *,
    session: Session,
    model: type,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    update: Sequence[str],
) -> int:
    """Insert rows (all with the same keys); those that collide on ``keys`` get their
    ``update`` columns overwritten.

    Returns:
        How many rows were written (inserted or updated).
    """
    if not rows:
        return 0
    stmt = _insert(session, model)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={col: stmt.excluded[col] for col in update}
    )
    _lock_keys(session, model, rows, keys)
    session.execute(stmt, [dict(r) for r in rows])
    return len(rows)
