"""Scanning AwA2-layout and class-per-folder trees."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from embplat.errors import DataError
from embplat.ingest.fashion_mnist import FASHION_MNIST_CLASSES, build_fashion_mnist
from embplat.ingest.scan import ScanItem, scan_tree

SMALL_CLASSES = ("t-shirt", "trouser", "sandal", "shirt", "ankle+boot")


@pytest.fixture
def small_awa2(tmp_path: Path, fmnist_root: Path) -> Path:
    """A fresh 3-per-class AwA2 tree (5 classes, unseen: sandal, shirt) that tests may edit."""
    return build_fashion_mnist(
        tmp_path / "awa2",
        per_class=3,
        classes=SMALL_CLASSES,
        unseen=("sandal", "shirt"),
        source="test",
    )


@pytest.fixture
def plain_tree(tmp_path: Path, imagefactory: SimpleNamespace) -> Path:
    """cats/ and coffee/ class folders of real photos, plus clutter to be skipped."""
    root = tmp_path / "plain"
    jpeg = imagefactory.encode(imagefactory.photo("chelsea", 32, 24), "JPEG")
    png = imagefactory.encode(imagefactory.photo("coffee", 32, 24), "PNG")
    files = {
        "cats/chelsea.jpg": jpeg,
        "cats/CHELSEA2.JPEG": jpeg,
        "cats/zèbre_ü.jpg": jpeg,
        "cats/notes.txt": b"not an image",
        "cats/.DS_Store": b"hidden",
        "cats/nested/deep.jpg": jpeg,
        "coffee/cup.png": png,
        "coffee/cup.TIFF": imagefactory.encode(imagefactory.photo("coffee", 32, 24), "TIFF"),
        ".hidden_class/ghost.jpg": jpeg,
        "stray.jpg": jpeg,
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_awa2_tree_from_fashion_mnist(fmnist_root: Path) -> None:
    result = scan_tree(fmnist_root)
    assert result.layout == "awa2"
    assert result.root == fmnist_root
    assert result.classes == FASHION_MNIST_CLASSES
    assert result.unseen == {"sandal", "shirt"}
    assert result.warnings == []
    assert len(result.items) == 12 * len(FASHION_MNIST_CLASSES)
    assert result.items[0] == ScanItem(
        fmnist_root / "ankle+boot" / "ankle+boot_00001.jpg", "ankle+boot"
    )
    keys = [(item.class_name, item.path.name) for item in result.items]
    assert keys == sorted(keys)
    assert all(item.path.parent.name == item.class_name for item in result.items)


def test_awa2_accepts_the_parent_folder(fmnist_root: Path) -> None:
    assert scan_tree(fmnist_root.parent) == scan_tree(fmnist_root)


def test_missing_class_folder_warns_with_split_file(small_awa2: Path) -> None:
    shutil.rmtree(small_awa2 / "sandal")
    shutil.rmtree(small_awa2 / "trouser")
    result = scan_tree(small_awa2)
    meta = small_awa2.parent
    assert result.classes == list(SMALL_CLASSES)
    assert result.unseen == {"sandal", "shirt"}
    assert result.warnings == [
        f"class 'trouser' is listed in {meta / 'trainclasses.txt'} but has no folder "
        f"{small_awa2 / 'trouser'}",
        f"class 'sandal' is listed in {meta / 'testclasses.txt'} but has no folder "
        f"{small_awa2 / 'sandal'}",
    ]
    assert {item.class_name for item in result.items} == {"t-shirt", "shirt", "ankle+boot"}


def test_unlisted_folder_and_non_images_warn(small_awa2: Path) -> None:
    (small_awa2 / "hat").mkdir()
    shutil.copy(small_awa2 / "shirt" / "shirt_00001.jpg", small_awa2 / "hat" / "h.jpg")
    (small_awa2 / "shirt" / "readme.md").write_text("notes")
    result = scan_tree(small_awa2)
    assert result.classes == [*SMALL_CLASSES, "hat"]
    assert ScanItem(small_awa2 / "hat" / "h.jpg", "hat") in result.items
    assert any("hat" in line and "not listed" in line for line in result.warnings)
    assert f"{small_awa2 / 'shirt' / 'readme.md'}: not an image extension; skipped" in (
        result.warnings
    )


def test_bare_class_names_in_classes_txt(small_awa2: Path) -> None:
    (small_awa2.parent / "classes.txt").write_text("\ufeffankle+boot\nt-shirt\n\ntrouser\n")
    (small_awa2.parent / "trainclasses.txt").unlink()
    (small_awa2.parent / "testclasses.txt").unlink()
    result = scan_tree(small_awa2)
    assert result.classes[:3] == ["ankle+boot", "t-shirt", "trouser"]
    assert result.unseen == set()
    assert sorted(result.classes[3:]) == ["sandal", "shirt"]  # unlisted folders, warned


def test_malformed_classes_txt(small_awa2: Path) -> None:
    (small_awa2.parent / "classes.txt").write_text("1\tt-shirt\n2\tankle boot extra\n")
    with pytest.raises(DataError, match=r"classes\.txt:2: expected"):
        scan_tree(small_awa2)


def test_plain_folder_tree(plain_tree: Path) -> None:
    result = scan_tree(plain_tree)
    assert result.layout == "folders"
    assert result.root == plain_tree
    assert result.classes == ["cats", "coffee"]
    assert result.unseen == set()
    assert [(item.class_name, item.path.name) for item in result.items] == [
        ("cats", "CHELSEA2.JPEG"),
        ("cats", "chelsea.jpg"),
        ("cats", "zèbre_ü.jpg"),
        ("coffee", "cup.TIFF"),
        ("coffee", "cup.png"),
    ]
    assert all(item.path.is_file() for item in result.items)
    assert result.warnings == [
        f"{plain_tree / 'cats' / 'nested'}: nested folder ignored; move its images up into "
        f"{plain_tree / 'cats'}",
        f"{plain_tree / 'cats' / 'notes.txt'}: not an image extension; skipped",
        f"{plain_tree / 'stray.jpg'}: file outside any class folder; skipped",
    ]


def test_missing_root_and_file_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found") as caught:
        scan_tree(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(caught.value)
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="is a file"):
        scan_tree(tmp_path / "file.jpg")


def test_tree_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="no images found"):
        scan_tree(tmp_path)
