"""What a Qdrant collection must look like to this platform: one unnamed cosine vector,
keyword payload indexes, canonical UUID ids, sane upload options; and platform payload
filters translated to Qdrant filters."""

from __future__ import annotations

import uuid
from typing import Any

from qdrant_client import QdrantClient, models

from embplat.errors import ConfigError, DataError
from embplat.retrieval.base import Filter

#: Payload fields filtered on by the platform (kNN vote by split, search by class or kind).
INDEXED_FIELDS = ("class", "split", "kind")


def to_qdrant_filter(flt: Filter | None) -> models.Filter | None:
    """Translate a platform filter (field -> value or list of values) to a Qdrant filter.

    Raises:
        DataError: a value is not a string, integer or bool, or a list mixes types (Qdrant's
            ``MatchAny`` takes only all-string or all-integer lists).
    """
    if not flt:
        return None
    conditions = []
    for key, want in flt.items():
        match: Any
        if isinstance(want, list | tuple | set | frozenset):
            kinds = {type(v) for v in want}
            if not (kinds <= {str} or kinds <= {int}):
                raise DataError(
                    f"filter on {key!r} lists {sorted(map(repr, want))}; Qdrant matches lists "
                    "of strings or of integers only"
                )
            match = models.MatchAny(any=list(want))
        elif isinstance(want, str | int):  # bool is an int
            match = models.MatchValue(value=want)
        else:
            raise DataError(
                f"filter on {key!r} has value {want!r}; Qdrant matches strings, integers "
                "and booleans only"
            )
        conditions.append(models.FieldCondition(key=key, match=match))
    return models.Filter(must=conditions)


def check_collection(client: QdrantClient, name: str, dim: int) -> None:
    """Raise ConfigError unless the existing collection ``name`` holds one unnamed
    ``dim``-d cosine vector per point."""
    params = client.get_collection(name).config.params.vectors
    if not isinstance(params, models.VectorParams):
        raise ConfigError(
            f"Qdrant collection {name!r} uses named vectors; this platform needs a "
            "single unnamed vector: delete it or choose another collection name"
        )
    if params.size != dim:
        raise ConfigError(
            f"Qdrant collection {name!r} holds {params.size}-d vectors but the model "
            f"produces {dim}-d ones; use another collection name or delete it"
        )
    if params.distance != models.Distance.COSINE:
        raise ConfigError(
            f"Qdrant collection {name!r} uses {params.distance.value} distance, not "
            "Cosine; delete it or choose another collection name"
        )


def ensure_payload_indexes(client: QdrantClient, name: str) -> None:
    """Keyword payload indexes on :data:`INDEXED_FIELDS` (server only), created once."""
    # every process opening the collection gets here: skip the (waited-for) writes
    # when the keyword indexes already exist
    schema = client.get_collection(name).payload_schema or {}
    for field in INDEXED_FIELDS:
        info = schema.get(field)
        if info is not None and info.data_type == models.PayloadSchemaType.KEYWORD:
            continue
        client.create_payload_index(
            name, field, field_schema=models.PayloadSchemaType.KEYWORD, wait=True
        )


def check_upload_options(upload_batch: int, parallel: int, max_retries: int) -> None:
    """Raise ConfigError for a non-positive ``upload_batch`` or ``parallel``, or negative
    ``max_retries``, naming the setting to change."""
    if upload_batch < 1:
        raise ConfigError(
            f"upload_batch is {upload_batch}; use a positive number of points per request "
            "(64-256 is what Qdrant recommends, EMBPLAT_QDRANT_UPLOAD_BATCH)"
        )
    if parallel < 1:
        raise ConfigError(
            f"parallel is {parallel}; use 1 or more upload processes (EMBPLAT_QDRANT_PARALLEL)"
        )
    if max_retries < 0:
        raise ConfigError(
            f"max_retries is {max_retries}; use 0 or more (EMBPLAT_QDRANT_MAX_RETRIES)"
        )


def is_canonical_uuid(value: str) -> bool:
    """True for a UUID string in canonical form (what Qdrant echoes back)."""
    try:
        return str(uuid.UUID(value)) == value
    except (ValueError, TypeError, AttributeError):
        return False
