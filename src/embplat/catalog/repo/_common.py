"""Shared helper: a dialect-aware insert that skips rows already present."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session


def insert_ignore(
    *, session: Session, model: type, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> int:
    """Insert rows, skipping those that collide on ``keys``; returns how many were inserted."""
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(model).values(list(rows)).on_conflict_do_nothing(index_elements=list(keys))
    # RETURNING lists only the rows actually inserted (rowcount is -1 on some drivers)
    return len(session.execute(stmt.returning(model.id)).all())  # type: ignore[attr-defined]
