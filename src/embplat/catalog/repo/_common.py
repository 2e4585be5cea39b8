"""Shared by the repository modules: the one dialect-aware ``INSERT .. ON CONFLICT`` and
the chunking of long id lists."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

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


def _in_key_order(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The rows as parameter sets sorted by their conflict keys, so that concurrent writers
    of overlapping rows take the unique index's row locks in one order and cannot deadlock
    (two workers inserting the same batch in opposite orders otherwise wait on each other
    in PostgreSQL)."""
    return sorted(
        (dict(r) for r in rows),
        key=lambda r: tuple((r[k] is None, "" if r[k] is None else r[k]) for k in keys),
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
    # RETURNING lists only the rows actually inserted (rowcount is -1 on some drivers)
    found = session.execute(stmt.returning(model.id), _in_key_order(rows, keys))  # type: ignore[attr-defined]
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
    session.execute(stmt, _in_key_order(rows, keys))
    return len(rows)
