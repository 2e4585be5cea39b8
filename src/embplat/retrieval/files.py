"""Files of the in-process backends (exact, nmslib): atomic writes, checksums, ``.npz`` files,
and the nmslib backend's base and segment files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from embplat.errors import ConfigError, IndexDamagedError

#: Temporaries of another process older than this are leftovers of a crash.
STALE_TMP_S = 3600.0
_TMP_SUFFIX = ".tmp"
#: Name of the array :func:`npz_bytes` adds when asked to checksum the other members.
_CHECKSUM = "sha256"
_NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


class FileVanishedError(IndexDamagedError):
    """A file named by a manifest does not exist (a writer may just have replaced it)."""


def damaged(path: Path, problem: str) -> IndexDamagedError:
    """The one-line error for an index file that cannot be trusted."""
    return IndexDamagedError(f"index file {path} {problem}; run `platform doctor --repair`")


def tmp_path(path: Path) -> Path:
    """A temporary sibling of ``path`` unique to this process (pid and a random tag)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}")


def is_collectable_tmp(file: Path) -> bool:
    """True for a temporary of this process, or one left by a crash over an hour ago.

    Another live process's temporary (pid in its name) is never touched while it is young.
    """
    if not (file.name.startswith(".") and file.name.endswith(_TMP_SUFFIX)):
        return False
    if f".{os.getpid()}-" in file.name:
        return True
    try:
        return time.time() - file.stat().st_mtime > STALE_TMP_S
    except FileNotFoundError:
        return False


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through a temporary sibling, fsync it, then rename it into place.

    A crash leaves either the old file or the new one, never a half-written one.
    """
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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


def checksum(data: bytes) -> dict[str, Any]:
    """What a manifest records of a file: its size and sha256."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def file_checksum(path: Path) -> dict[str, Any]:
    """:func:`checksum` of the file at ``path``."""
    return checksum(path.read_bytes())


def read_checked(path: Path, expected: Mapping[str, Any] | None) -> bytes:
    """The bytes of ``path``, checked against a manifest's :func:`checksum` when given.

    Raises:
        FileVanishedError: the file does not exist.
        IndexDamagedError: it is unreadable, of the wrong size, or fails its checksum.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise FileVanishedError(
            f"index file {path} is missing; run `platform doctor --repair`"
        ) from exc
    except OSError as exc:
        raise damaged(path, f"is unreadable ({exc.strerror})") from exc
    if expected:
        if len(data) != expected.get("size"):
            raise damaged(path, f"has {len(data)} bytes, {expected.get('size')} were written")
        if hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            raise damaged(path, "fails its sha256 checksum")
    return data


def check_stored_dim(stored: Any, dim: int, where: Path) -> None:
    """Raise ConfigError when the index read from ``where`` holds ``stored``-d vectors."""
    if stored != dim:
        raise ConfigError(
            f"index at {where} holds {stored}-d vectors but {dim}-d were requested; "
            "use the model that built it or a new path"
        )


def npz_bytes(
    vectors: np.ndarray, meta: Mapping[str, Any], *, with_checksum: bool = False, **arrays: Any
) -> bytes:
    """(N, D) ``vectors``, extra arrays and a JSON ``meta`` dict as one ``.npz`` file.

    With ``with_checksum``, a sha256 of every member is stored inside, for files that have no
    manifest to record it; :func:`parse_npz` verifies it.
    """
    members = {"vectors": vectors, **arrays}
    members["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    if with_checksum:
        digest = _members_digest(members).encode("ascii")
        members[_CHECKSUM] = np.frombuffer(digest, dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def write_npz(fh: BinaryIO, vectors: np.ndarray, meta: Mapping[str, Any], **arrays: Any) -> None:
    """Store (N, D) ``vectors``, extra arrays and a JSON ``meta`` dict in one .npz stream."""
    fh.write(npz_bytes(vectors, meta, **arrays))


def parse_npz(
    data: bytes, where: Path, *, verify: bool = True
) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """Inverse of :func:`npz_bytes`: (vectors, meta, other arrays).

    Args:
        data: the file's bytes.
        where: the file's path (for messages).
        verify: check the embedded checksum when the file has one.

    Raises:
        IndexDamagedError: the bytes are truncated, corrupt or not a file this package wrote.
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            members = {key: npz[key] for key in npz.files}
        stored = members.pop(_CHECKSUM, None)
        if verify and stored is not None and stored.tobytes().decode() != _members_digest(members):
            raise damaged(where, "fails its sha256 checksum")
        meta = json.loads(members.pop("meta").tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
        return members.pop("vectors"), meta, members
    except _NPZ_ERRORS as exc:
        raise damaged(where, f"is unreadable ({type(exc).__name__}: {exc})") from exc


def read_npz(
    path: Path, *, verify: bool = True
) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """:func:`parse_npz` of the file at ``path``.

    Raises:
        IndexDamagedError: the file is missing, truncated or not one this package wrote.
    """
    return parse_npz(read_checked(path, None), path, verify=verify)


# --- the nmslib backend's base and segment files ---------------------------------------

#: A write since the last flush: ("u", ids, vectors, payloads) or ("d", ids, empty, []).
Op = tuple[str, list[str], np.ndarray, list[dict[str, Any]]]


@dataclass(frozen=True)
class Snapshot:
    """Every slot of an index: the contents of one base file.

    Attributes:
        vectors: (n, dim) float32, one row per slot.
        alive: (n,) bool, False for tombstones.
        ids: point id of each slot ("" for a tombstone written by format 2).
        payloads: payload of each slot.
        built: slots ``[0, built)`` are in the HNSW graph.
    """

    vectors: np.ndarray
    alive: np.ndarray
    ids: list[str]
    payloads: list[dict[str, Any]]
    built: int

    @classmethod
    def empty(cls, dim: int) -> Snapshot:
        """No slots."""
        return cls(np.empty((0, dim), np.float32), np.empty(0, bool), [], [], 0)

    def compacted(self) -> Snapshot:
        """What a base file needs: the graph's slots (tombstones blanked, so a dead slot's id
        never shadows a live one) and the live slots after them."""
        built, alive = self.built, np.asarray(self.alive, bool)
        keep = np.concatenate([np.arange(built), built + np.flatnonzero(alive[built:])])
        return Snapshot(
            np.ascontiguousarray(self.vectors[keep]),
            alive[keep],
            [self.ids[i] if alive[i] else "" for i in keep.tolist()],
            [self.payloads[i] if alive[i] else {} for i in keep.tolist()],
            built,
        )


def read_base(data: bytes, where: Path) -> Snapshot:
    """The slots in a base file's bytes.

    Raises:
        IndexDamagedError: the bytes are not a base file, or its arrays disagree in length.
    """
    vectors, meta, arrays = parse_npz(data, where)
    try:
        snapshot = Snapshot(
            vectors, np.asarray(arrays["alive"], bool), meta["ids"], meta["payloads"], meta["built"]
        )
        n = len(snapshot.vectors)
        if not (len(snapshot.alive) == len(snapshot.ids) == len(snapshot.payloads) == n):
            raise ValueError(f"{n} vectors but {len(snapshot.ids)} ids")
        if not 0 <= snapshot.built <= n:
            raise ValueError(f"built={snapshot.built} out of range")
    except (KeyError, TypeError, ValueError) as exc:
        raise damaged(where, f"is not a valid base file ({exc})") from exc
    return snapshot


def read_segment(data: bytes, where: Path, dim: int) -> Iterator[Op]:
    """The writes in a segment file's bytes, in order.

    Raises:
        IndexDamagedError: the bytes are not a segment file.
    """
    vectors, meta, _ = parse_npz(data, where)
    try:
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"vectors of shape {vectors.shape}")
        ops: list[Op] = []
        cursor = 0
        for kind, arg in meta["ops"]:
            if kind == "u":
                end = cursor + int(arg)
                ids, payloads = meta["ids"][cursor:end], meta["payloads"][cursor:end]
                if not len(ids) == len(payloads) == len(vectors[cursor:end]) == end - cursor:
                    raise ValueError("ops name more points than the file holds")
                ops.append(("u", ids, vectors[cursor:end], payloads))
                cursor = end
            else:
                ops.append(("d", list(arg), np.empty((0, dim), np.float32), []))
    except (KeyError, TypeError, ValueError) as exc:
        raise damaged(where, f"is not a valid segment file ({exc})") from exc
    return iter(ops)


def _members_digest(members: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(members):
        arr = np.ascontiguousarray(members[key])
        digest.update(f"{key}:{arr.dtype.str}:{arr.shape}\n".encode())
        digest.update(arr.data)
    return digest.hexdigest()
