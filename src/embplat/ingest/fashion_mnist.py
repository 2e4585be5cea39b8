"""Build an AwA2-layout image tree from the Fashion-MNIST IDX files.

The Debian package ``dataset-fashion-mnist`` installs the four gzipped IDX files under
:data:`DEFAULT_FMNIST_DIR`. The builder picks a seeded, per-class sample, so a set built with
``offset=per_class`` never overlaps the one built with ``offset=0``, and re-running writes
byte-identical files.
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from embplat.errors import DataError

log = logging.getLogger(__name__)

#: Class names in label-id order, as single AwA2-style tokens ("+" instead of spaces).
FASHION_MNIST_CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle+boot",
]
DEFAULT_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Class attributes written beside classes.txt as AwA2's predicate matrix (0–100: how
#: strongly the class has the predicate), the side information of attribute-based zero-shot
#: learning. Written from what each article is (a coat is thick, long-sleeved outerwear
#: fastened at the front; a sandal is open, strapped footwear), not fitted to any result.
FASHION_MNIST_PREDICATES = [
    "upper-body", "lower-body", "footwear", "carried", "sleeves", "long-sleeves", "collar",
    "front-fastening", "outerwear", "thick", "long", "one-piece", "legs", "straps", "open",
    "laces", "ankle-high", "heel", "sole", "rectangular", "soft", "sporty", "loose",
]  # fmt: skip
FASHION_MNIST_ATTRIBUTES: dict[str, list[int]] = {
    # one value per predicate, in FASHION_MNIST_PREDICATES order
    "t-shirt": [100, 0, 0, 0, 90, 5, 5, 0, 0, 5, 15, 0, 0, 0, 0, 0, 0, 0, 0, 20, 100, 60, 40],
    "trouser": [0, 100, 0, 0, 0, 0, 0, 10, 0, 40, 100, 0, 100, 0, 0, 0, 0, 0, 0, 0, 80, 20, 30],
    "pullover": [100, 0, 0, 0, 100, 100, 10, 5, 50, 90, 25, 0, 0, 0, 0, 0, 0, 0, 0, 10, 90, 30, 60],
    "dress": [100, 70, 0, 0, 30, 10, 10, 10, 0, 15, 100, 100, 0, 10, 0, 0, 0, 0, 0, 0, 100, 5, 60],
    "coat": [100, 20, 0, 0, 100, 100, 80, 95, 100, 95, 75, 0, 0, 0, 0, 0, 0, 0, 0, 5, 50, 10, 50],
    "sandal": [0, 0, 100, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 80, 100, 5, 10, 40, 100, 0, 10, 20, 0],
    "shirt": [100, 0, 0, 0, 100, 70, 100, 100, 10, 20, 30, 0, 0, 0, 0, 0, 0, 0, 0, 10, 90, 10, 30],
    "sneaker": [0, 0, 100, 0, 0, 0, 0, 10, 0, 20, 0, 0, 0, 0, 0, 90, 10, 5, 100, 0, 20, 100, 0],
    "bag": [0, 0, 0, 100, 0, 0, 0, 30, 0, 30, 0, 0, 0, 100, 0, 0, 0, 0, 0, 90, 30, 10, 0],
    "ankle+boot": [0, 0, 100, 0, 0, 0, 0, 30, 0, 50, 0, 0, 0, 0, 0, 30, 100, 60, 100, 0, 10, 10, 0],
}

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
_SOURCE_PREFIX = {"train": "train", "test": "t10k"}
_JPEG_QUALITY = 95


def read_idx(images_gz: Path, labels_gz: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse a pair of (optionally gzipped) IDX files.

    Args:
        images_gz: ``*-images-idx3-ubyte[.gz]``.
        labels_gz: ``*-labels-idx1-ubyte[.gz]``.

    Returns:
        ``images`` (N, rows, cols) uint8 and ``labels`` (N,) uint8, both read-only.

    Raises:
        DataError: A file is missing, not IDX, of the wrong kind, or truncated; or the counts
            of images and labels differ.
    """
    images = _read_idx_array(Path(images_gz), magic=_IMAGES_MAGIC, ndim=3)
    labels = _read_idx_array(Path(labels_gz), magic=_LABELS_MAGIC, ndim=1)
    if len(images) != len(labels):
        raise DataError(
            f"{images_gz} holds {len(images)} images but {labels_gz} holds {len(labels)} labels; "
            "pass files from the same split"
        )
    return images, labels


def _read_idx_array(path: Path, *, magic: int, ndim: int) -> np.ndarray:
    """Read one IDX file into an array of shape given by its header."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(
            f"{path}: Fashion-MNIST file not found; install it with "
            "`apt-get install dataset-fashion-mnist` or pass --source-dir with the IDX files"
        ) from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable or corrupt gzip ({exc}); re-download it") from exc
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    header = np.frombuffer(raw, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise DataError(
            f"{path}: IDX magic number {int(header[0]):#010x}, expected {magic:#010x} "
            f"({ndim}-d unsigned bytes); is this the right file (images vs labels)?"
        )
    shape = tuple(int(dim) for dim in header[1:])
    expected = int(np.prod(shape))
    if len(raw) - header_len != expected:
        raise DataError(
            f"{path}: header promises {expected} bytes of data for shape {shape} but the file "
            f"holds {len(raw) - header_len}; the file is truncated or corrupt, re-download it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape)


def build_fashion_mnist(
    out: Path,
    *,
    per_class: int,
    unseen: Sequence[str] = (),
    classes: Sequence[str] | None = None,
    source: Literal["train", "test"] = "train",
    offset: int = 0,
    seed: int = 0,
    source_dir: Path = DEFAULT_FMNIST_DIR,
    size: int = 28,
) -> Path:
    """Write a Fashion-MNIST sample as an AwA2-layout tree.

    Writes ``out/JPEGImages/<class>/<class>_<id>.jpg`` (grey JPEG, quality 95, ids numbered
    from ``offset + 1``), ``out/classes.txt``, ``out/trainclasses.txt`` and
    ``out/testclasses.txt``.

    Args:
        out: Folder to write into (created if needed; existing files are overwritten).
        per_class: Images per class.
        unseen: Classes written to testclasses.txt (held out from training).
        classes: Classes to include, in classes.txt order; all ten when ``None``.
        source: Which Fashion-MNIST split to sample from.
        offset: Skip this many picks of each class's seeded permutation.
        seed: Seed of the per-class permutations.
        source_dir: Folder holding the ``*-idx*-ubyte.gz`` files.
        size: Side length of the written images (bicubic upscaling from 28).

    Returns:
        The ``out/JPEGImages`` path.

    Raises:
        DataError: Unknown or duplicate class names, bad counts, or missing source files.
    """
    selected = _check_classes(classes, unseen)
    if per_class < 1 or offset < 0 or size < 1:
        raise DataError(
            f"per_class={per_class}, offset={offset}, size={size}: per_class and size must be "
            "at least 1 and offset at least 0"
        )
    if source not in _SOURCE_PREFIX:
        raise DataError(f"source={source!r}: must be 'train' or 'test'")
    prefix = _SOURCE_PREFIX[source]
    images, labels = read_idx(
        Path(source_dir) / f"{prefix}-images-idx3-ubyte.gz",
        Path(source_dir) / f"{prefix}-labels-idx1-ubyte.gz",
    )
    images_root = Path(out) / "JPEGImages"
    for name in selected:
        picks = _pick(labels, FASHION_MNIST_CLASSES.index(name), per_class, offset, seed, source)
        _write_class(images_root / name, name, images[picks], first_id=offset + 1, size=size)
    _write_split_files(Path(out), selected, unseen)
    log.info(
        "wrote %d Fashion-MNIST %s images (%d classes, %d unseen) to %s",
        per_class * len(selected),
        source,
        len(selected),
        len(unseen),
        images_root,
    )
    return images_root


def _check_classes(classes: Sequence[str] | None, unseen: Sequence[str]) -> list[str]:
    """Validate the class selection and the unseen subset; return the selection."""
    selected = list(FASHION_MNIST_CLASSES if classes is None else classes)
    valid = ", ".join(FASHION_MNIST_CLASSES)
    for kind, names in (("classes", selected), ("unseen", list(unseen))):
        unknown = [name for name in names if name not in FASHION_MNIST_CLASSES]
        if unknown:
            raise DataError(f"unknown Fashion-MNIST {kind} {unknown}; valid names: {valid}")
        if len(set(names)) != len(names):
            raise DataError(f"{kind} {names} lists a class twice; name each class once")
    outside = [name for name in unseen if name not in selected]
    if outside:
        raise DataError(f"unseen classes {outside} are not among the selected classes {selected}")
    return selected


def _pick(
    labels: np.ndarray, label: int, per_class: int, offset: int, seed: int, source: str
) -> np.ndarray:
    """Indices of ``per_class`` images of ``label``: a seeded permutation, from ``offset`` on."""
    candidates = np.flatnonzero(labels == label)
    if offset + per_class > len(candidates):
        raise DataError(
            f"class '{FASHION_MNIST_CLASSES[label]}' has {len(candidates)} {source} images, "
            f"fewer than offset + per_class = {offset + per_class}; lower per_class or offset"
        )
    # Seeding per class keeps a class's picks the same whichever other classes are selected.
    order = np.random.default_rng([seed, label]).permutation(len(candidates))
    return candidates[order[offset : offset + per_class]]


def _write_class(folder: Path, name: str, pixels: np.ndarray, *, first_id: int, size: int) -> None:
    """Write (K, 28, 28) uint8 ``pixels`` as grey JPEGs ``<name>_<id>.jpg``."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, array in enumerate(pixels, start=first_id):
        img = Image.fromarray(array)
        if size != img.width:
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
        (folder / f"{name}_{number:05d}.jpg").write_bytes(buffer.getvalue())


def _write_split_files(out: Path, selected: Sequence[str], unseen: Sequence[str]) -> None:
    """Write classes.txt ("1\\tname"), trainclasses.txt, testclasses.txt and the predicate
    matrix (predicates.txt, predicate-matrix-continuous.txt) as AwA2 does."""
    from embplat.models.attributes import AttributeTable, write_awa_attributes

    seen = [name for name in selected if name not in unseen]
    held_out = [name for name in selected if name in unseen]
    (out / "classes.txt").write_text(
        "".join(f"{i}\t{name}\n" for i, name in enumerate(selected, start=1)), encoding="utf-8"
    )
    (out / "trainclasses.txt").write_text("".join(f"{n}\n" for n in seen), encoding="utf-8")
    (out / "testclasses.txt").write_text("".join(f"{n}\n" for n in held_out), encoding="utf-8")
    matrix = np.array([FASHION_MNIST_ATTRIBUTES[n] for n in selected], dtype=np.float32)
    write_awa_attributes(out, AttributeTable(list(selected), FASHION_MNIST_PREDICATES, matrix))
