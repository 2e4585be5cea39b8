"""Class rows: ensure, count per split, look up, delete."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from embplat.catalog.models import (
    ClassLabel,
    Image,
)
from embplat.catalog.repo._common import insert_ignore


def ensure_classes(
    *,
    session: Session,
    names: Iterable[str],
    roles: Mapping[str, str] | None = None,
    source: str | None = None,
) -> dict[str, int]:
    """Register class names (existing ones keep their role); returns name -> id."""
    names = list(dict.fromkeys(names))
    roles = roles or {}
    rows = [{"name": n, "role": roles.get(n, "seen"), "source": source} for n in names]
    insert_ignore(session=session, model=ClassLabel, rows=rows, keys=["name"])
    found = session.execute(
        select(ClassLabel.name, ClassLabel.id).where(ClassLabel.name.in_(names))
    )
    return {name: cid for name, cid in found}


def class_counts(*, session: Session) -> list[tuple[ClassLabel, dict[str, int]]]:
    """Every class with its image count per split, in name order."""
    counts: dict[int, dict[str, int]] = {}
    rows = session.execute(
        select(Image.class_id, Image.split, func.count()).group_by(Image.class_id, Image.split)
    )
    for cid, split, n in rows:
        counts.setdefault(cid, {})[split] = n
    classes = session.scalars(select(ClassLabel).order_by(ClassLabel.name)).all()
    return [(c, counts.get(c.id, {})) for c in classes]


def class_roles(*, session: Session) -> dict[str, str]:
    """Every class's role (seen, unseen...) by name, in name order, without counting images."""
    rows = session.execute(select(ClassLabel.name, ClassLabel.role).order_by(ClassLabel.name))
    return {name: role for name, role in rows}


def get_class(*, session: Session, name: str) -> ClassLabel | None:
    """The class called ``name``, or None."""
    return session.scalar(select(ClassLabel).where(ClassLabel.name == name))
