"""Zero-shot classes: a class registered without images, known to the visual-semantic
models by its label vector (its name's word vector, or its row of class attributes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import ConfigError, DataError
from embplat.models.attributes import current_attributes, load_table, store_attributes
from embplat.models.wordvectors import (
    ATTRIBUTES,
    VectorSource,
    active_source,
    label_vector,
    open_vectors,
)
from embplat.pipelines.context import Context
from embplat.pipelines.semantic import SEMANTIC_KINDS, label_space, publish_label_vectors


def add_zero_shot_class(
    ctx: Context, name: str, attributes: dict[str, float] | None = None
) -> dict[str, Any]:
    """Register class ``name`` without images (role ``unseen``) and publish its label vector.

    The vector is checked first (against the active vectors, or each model's own vectors),
    so a name with no known word is refused before anything is written.

    Args:
        attributes: predicate -> value of the class, for models trained on class attributes
            (``--vectors attributes``): the row is added to the data home's attribute table
            and to each such model's (see :func:`add_attribute_row`).

    Raises:
        DataError: no word of ``name`` has a vector (the message names the label), or the
            attributes do not fit the table.
        ConfigError: attributes are given but the data home holds no attribute table.
    """
    with ctx.sessions() as session:
        models = [m.name for m in repo.list_models(session=session, kinds=SEMANTIC_KINDS)]
    if attributes is not None:
        add_attribute_row(ctx, name, attributes, models)
    for model in models:
        label_space(ctx, model).vector(name)
    if not models:
        _check_name(ctx, name)
    with transaction(ctx.sessions) as session:
        repo.ensure_classes(
            session=session, names=[name], roles={name: "unseen"}, source="zero-shot"
        )
        role = repo.get_class(session=session, name=name).role  # type: ignore[union-attr]
    published = [m for m in models if publish_label_vectors(ctx, m, [name])]
    return {"class": name, "role": role, "models": published}


def _check_name(ctx: Context, name: str) -> None:
    """Refuse a name the active word vectors do not know, unless the active encoder has a
    text tower (open_clip), which embeds any name (``classify --space clip``).

    Raises:
        DataError: naming the label.
    """
    from embplat.pipelines.clip import clip_space

    try:
        label_vector(open_vectors(active_source(ctx.home)), name)
    except DataError as unknown:
        try:
            clip_space(ctx)  # builds the active encoder: only on this (rare) path
        except ConfigError:
            raise unknown from None


def add_attribute_row(
    ctx: Context, name: str, attributes: dict[str, float], models: Sequence[str]
) -> None:
    """Give class ``name`` its attribute row: in the data home's current table (which stays
    current) and in the table of every model trained on attributes, whose record then
    names the extended table. The extension keeps every existing row, so what a model
    already answers does not change.

    Raises:
        ConfigError: the data home holds no attribute table.
        DataError: an unknown predicate, a bad value, or another row for ``name``.
    """
    current = current_attributes(ctx.home)
    trained: dict[str, VectorSource] = {}
    with ctx.sessions() as session:
        for model in models:
            config = repo.get_model(session=session, name=model).config or {}
            source = VectorSource.from_dict(config.get("vectors"))
            if source.kind == ATTRIBUTES:
                trained[model] = source
    # every table grown (and refused) before anything is stored
    grown = {}
    for source in {current, *trained.values()}:
        table = load_table(Path(source.path))
        grown[source] = (table, table.with_row(name, attributes))
    extended = {
        source: source
        if new is old
        else store_attributes(new, ctx.home, make_current=source == current)
        for source, (old, new) in grown.items()
    }
    with transaction(ctx.sessions) as session:
        for model, source in trained.items():
            record = repo.get_model(session=session, name=model)
            if extended[source] != source:
                record.config = {**(record.config or {}), "vectors": extended[source].as_dict()}
