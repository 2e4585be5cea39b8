"""Files of the in-process backends (exact, nmslib): atomic writes and ``.npz`` containers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from embplat.errors import ConfigError, DataError


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through a temporary sibling, fsync it, then rename it into place.

    A crash leaves either the old file or the new one, never a half-written one.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make renames inside ``directory`` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_stored_dim(stored: Any, dim: int, where: Path) -> None:
    """Raise ConfigError when the index read from ``where`` holds ``stored``-d vectors."""
    if stored != dim:
        raise ConfigError(
            f"index at {where} holds {stored}-d vectors but {dim}-d were requested; "
            "use the model that built it or a new path"
        )


def write_npz(fh: BinaryIO, vectors: np.ndarray, meta: Mapping[str, Any], **arrays: Any) -> None:
    """Store (N, D) ``vectors``, extra arrays and a JSON ``meta`` dict in one .npz stream."""
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    np.savez(fh, vectors=vectors, meta=blob, **arrays)


def read_npz(path: Path) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """Inverse of :func:`write_npz`: (vectors, meta, other arrays).

    Raises:
        DataError: the file is missing, truncated or not one this package wrote.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
        return arrays.pop("vectors"), meta, arrays
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read index file {path}: {exc}; restore it or delete it") from exc
