"""Building AwA2-layout trees from the real Fashion-MNIST IDX files."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embplat.errors import DataError
from embplat.ingest.fashion_mnist import (
    DEFAULT_FMNIST_DIR,
    FASHION_MNIST_CLASSES,
    build_fashion_mnist,
    read_idx,
)

TEST_IMAGES = DEFAULT_FMNIST_DIR / "t10k-images-idx3-ubyte.gz"
TEST_LABELS = DEFAULT_FMNIST_DIR / "t10k-labels-idx1-ubyte.gz"
CLASSES = ("trouser", "bag", "ankle+boot")


@pytest.fixture(autouse=True)
def _needs_fmnist(fmnist_root: Path) -> None:
    """Every test here needs the IDX files; the session fixture skips when they are missing."""


def _build(out: Path, **kwargs: object) -> Path:
    params: dict[str, object] = {
        "per_class": 3,
        "classes": CLASSES,
        "unseen": ("bag",),
        "source": "test",
    }
    params.update(kwargs)
    return build_fashion_mnist(out, **params)  # type: ignore[arg-type]


def _digests(images_root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(images_root.parent)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(images_root.parent.rglob("*"))
        if path.is_file()
    }


def _source_indices(images_root: Path, class_name: str) -> list[int]:
    """Match each written JPEG back to the Fashion-MNIST test image it came from."""
    images, labels = read_idx(TEST_IMAGES, TEST_LABELS)
    candidates = np.flatnonzero(labels == FASHION_MNIST_CLASSES.index(class_name))
    pool = images[candidates].astype(np.float64)
    found = []
    for path in sorted((images_root / class_name).glob("*.jpg")):
        written = np.asarray(Image.open(path), dtype=np.float64)
        errors = np.abs(pool - written).mean(axis=(1, 2))
        assert errors.min() < 2.0  # JPEG q95 noise only
        found.append(int(candidates[errors.argmin()]))
    return found


def test_read_idx_real_files() -> None:
    images, labels = read_idx(TEST_IMAGES, TEST_LABELS)
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,)
    assert np.bincount(labels).tolist() == [1000] * 10


def test_layout_names_and_split_files(tmp_path: Path) -> None:
    images_root = _build(tmp_path)
    assert images_root == tmp_path / "JPEGImages"
    assert sorted(p.name for p in images_root.iterdir()) == sorted(CLASSES)
    assert sorted(p.name for p in (images_root / "ankle+boot").iterdir()) == [
        "ankle+boot_00001.jpg",
        "ankle+boot_00002.jpg",
        "ankle+boot_00003.jpg",
    ]
    with Image.open(images_root / "bag" / "bag_00002.jpg") as img:
        assert (img.format, img.mode, img.size) == ("JPEG", "L", (28, 28))
    assert (tmp_path / "classes.txt").read_text() == "1\ttrouser\n2\tbag\n3\tankle+boot\n"
    assert (tmp_path / "trainclasses.txt").read_text() == "trouser\nankle+boot\n"
    assert (tmp_path / "testclasses.txt").read_text() == "bag\n"


def test_upscaling(tmp_path: Path) -> None:
    images_root = _build(tmp_path, per_class=1, size=64)
    with Image.open(images_root / "trouser" / "trouser_00001.jpg") as img:
        assert img.size == (64, 64)


def test_deterministic_and_idempotent(tmp_path: Path) -> None:
    first = _digests(_build(tmp_path / "a"))
    assert _digests(_build(tmp_path / "b")) == first
    assert _digests(_build(tmp_path / "a")) == first
    assert _digests(_build(tmp_path / "c", seed=1)) != first


def test_offsets_continue_the_same_permutation_without_overlap(tmp_path: Path) -> None:
    first = _build(tmp_path / "first")
    second = _build(tmp_path / "second", offset=3)
    both = _build(tmp_path / "both", per_class=6)
    for name in CLASSES:
        a, b = _source_indices(first, name), _source_indices(second, name)
        assert not set(a) & set(b)
        assert _source_indices(both, name) == a + b
    assert sorted(p.name for p in (second / "bag").iterdir())[0] == "bag_00004.jpg"
    assert (second / "bag" / "bag_00004.jpg").read_bytes() == (
        both / "bag" / "bag_00004.jpg"
    ).read_bytes()


def test_class_picks_do_not_depend_on_other_classes(tmp_path: Path) -> None:
    alone = _build(tmp_path / "alone", classes=("bag",), unseen=())
    together = _build(tmp_path / "together")
    assert (alone / "bag" / "bag_00001.jpg").read_bytes() == (
        together / "bag" / "bag_00001.jpg"
    ).read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ("trouser", "hat")}, r"unknown Fashion-MNIST classes \['hat'\]; valid names"),
        ({"unseen": ("boots",)}, r"unknown Fashion-MNIST unseen \['boots'\]; valid names"),
        ({"unseen": ("sandal",)}, "not among the selected classes"),
        ({"classes": ("bag", "bag")}, "twice"),
        ({"per_class": 0}, "per_class"),
        ({"per_class": 999, "offset": 2}, "has 1000 test images, fewer than"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        _build(tmp_path, **kwargs)
    if "valid names" in message:
        assert "ankle+boot" in str(caught.value)


def test_missing_source_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"apt-get install dataset-fashion-mnist.*--source-dir"):
        _build(tmp_path / "out", source_dir=tmp_path / "nothing")


def test_read_idx_rejects_wrong_and_truncated_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="magic number") as caught:
        read_idx(TEST_LABELS, TEST_IMAGES)
    assert str(caught.value).startswith(str(TEST_LABELS))
    header = np.array([0x803, 2, 28, 28], dtype=">u4").tobytes()
    short = tmp_path / "short-images-idx3-ubyte.gz"
    short.write_bytes(gzip.compress(header + bytes(28 * 28)))  # promises 2 images, holds 1
    with pytest.raises(DataError, match="truncated"):
        read_idx(short, TEST_LABELS)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(TEST_LABELS.read_bytes()[:1000])
    with pytest.raises(DataError, match=re.escape(str(broken))):
        read_idx(TEST_IMAGES, broken)
