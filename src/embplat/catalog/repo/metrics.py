"""Evaluation metrics per model and split."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from embplat.catalog.models import (
    MetricValue,
    ModelRecord,
    utcnow,
)
from embplat.catalog.repo._common import upsert
from embplat.errors import NotFoundError


def record_metrics(
    *, session: Session, model_id: int, split: str, values: Mapping[str, Any]
) -> int:
    """Store a model's metrics on ``split``, replacing earlier values of the same names.

    Real numbers only, numpy's included (bools and other types are skipped); NaN and
    infinities are stored as NULL. Returns how many values were written.
    """
    now = utcnow()
    rows = [
        {
            "model_id": model_id,
            "split": split,
            "name": name,
            "value": float(v) if math.isfinite(float(v)) else None,
            "created_at": now,
        }
        for name, v in values.items()
        if isinstance(v, numbers.Real) and not isinstance(v, bool)
    ]
    return upsert(
        session=session,
        model=MetricValue,
        rows=rows,
        keys=["model_id", "split", "name"],
        update=["value", "created_at"],
    )


def model_metrics(
    *, session: Session, names: Sequence[str], split: str | None = None
) -> dict[str, dict[str, float | None]]:
    """model name -> {metric: value} for the given models, in the order given.

    Metric keys are ``split/name``, or just ``name`` when ``split`` is given.

    Raises:
        NotFoundError: a name is not a registered model; the message lists the known ones.
    """
    models = {m.name: m.id for m in session.scalars(select(ModelRecord))}
    missing = [n for n in names if n not in models]
    if missing:
        known = ", ".join(sorted(models)) or "none yet"
        raise NotFoundError(f"no model named {', '.join(map(repr, missing))} (known: {known})")
    ids = {models[n]: n for n in names}
    stmt = (
        select(MetricValue)
        .where(MetricValue.model_id.in_(list(ids)))
        .order_by(MetricValue.split, MetricValue.name)
    )
    if split is not None:
        stmt = stmt.where(MetricValue.split == split)
    out: dict[str, dict[str, float | None]] = {n: {} for n in names}
    for row in session.scalars(stmt):
        key = row.name if split is not None else f"{row.split}/{row.name}"
        out[ids[row.model_id]][key] = row.value
    return out
