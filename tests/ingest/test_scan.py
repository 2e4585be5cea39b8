"""Scanning AwA2-layout and class-per-folder trees."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from embplat.errors import DataError
from embplat.ingest.fashion_mnist import FASHION_MNIST_CLASSES, build_fashion_mnist
from embplat.ingest.scan import ScanItem, scan_folder, scan_tree

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


@pytest.mark.reliability
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


@pytest.mark.reliability
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


@pytest.mark.reliability
def test_missing_root_and_file_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found") as caught:
        scan_tree(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(caught.value)
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="is a file"):
        scan_tree(tmp_path / "file.jpg")


@pytest.mark.reliability
def test_tree_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="no images found"):
        scan_tree(tmp_path)


# --- entries that must be skipped and reported while the rest of the tree is scanned ---------


@pytest.mark.reliability
def test_non_utf8_names_are_skipped_and_reported(plain_tree: Path) -> None:
    # Created through bytes paths: "café" in Latin-1, as copied from an old Windows share.
    folder = os.fsencode(plain_tree)
    (plain_tree / "cats" / "chelsea.jpg").replace(os.fsdecode(folder + b"/cats/caf\xe9.jpg"))
    os.mkdir(folder + b"/r\xe9sum\xe9")
    result = scan_tree(plain_tree)
    assert [item.path.name for item in result.items] == [
        "CHELSEA2.JPEG",
        "zèbre_ü.jpg",
        "cup.TIFF",
        "cup.png",
    ]
    assert result.classes == ["cats", "coffee"]
    for name in ("cats/caf\\xe9.jpg", "r\\xe9sum\\xe9"):
        assert any(f"{name}: name is not valid UTF-8; skipped" in w for w in result.warnings)
    # every line can be printed, logged and stored as UTF-8
    "\n".join(result.warnings).encode("utf-8")


@pytest.mark.reliability
def test_symlink_loops_and_dangling_links_are_skipped_and_reported(plain_tree: Path) -> None:
    cats = plain_tree / "cats"
    (plain_tree / "loop").symlink_to(".")
    (cats / "self").symlink_to(".")
    (cats / "a.jpg").symlink_to("b.jpg")
    (cats / "b.jpg").symlink_to("a.jpg")
    (cats / "dangling.jpg").symlink_to("nowhere.jpg")
    (plain_tree / "x").symlink_to("y")
    (plain_tree / "y").symlink_to("x")
    result = scan_tree(plain_tree)
    assert result.classes == ["cats", "coffee"]
    assert len(result.items) == 5
    warned = "\n".join(result.warnings)
    assert f"{plain_tree / 'loop'}: symlink loop (points at {plain_tree.resolve()}" in warned
    assert f"{cats / 'self'}: symlink loop" in warned
    for name in ("cats/a.jpg", "cats/b.jpg", "x", "y"):
        assert f"{plain_tree / name}: symlink loop: links pointing at each other" in warned
    assert f"{cats / 'dangling.jpg'}: broken symlink to nowhere.jpg; skipped" in warned


def test_symlinked_files_and_folders_are_followed(plain_tree: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(plain_tree / "coffee", elsewhere)
    (plain_tree / "tea").symlink_to(elsewhere)
    (plain_tree / "cats" / "link.jpg").symlink_to(plain_tree / "cats" / "chelsea.jpg")
    result = scan_tree(plain_tree)
    assert result.classes == ["cats", "coffee", "tea"]
    assert ScanItem(plain_tree / "cats" / "link.jpg", "cats") in result.items
    assert ScanItem(plain_tree / "tea" / "cup.png", "tea") in result.items


@pytest.mark.reliability
def test_special_files_are_skipped_not_read(plain_tree: Path) -> None:
    fifo = plain_tree / "cats" / "pipe.jpg"
    os.mkfifo(fifo)  # reading it would block the ingest forever
    result = scan_tree(plain_tree)
    assert ScanItem(fifo, "cats") not in result.items
    assert f"{fifo}: not a regular file or folder; skipped" in result.warnings


@pytest.mark.reliability
@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_unreadable_class_folder_is_skipped_not_fatal(plain_tree: Path) -> None:
    (plain_tree / "cats").chmod(0)
    try:
        result = scan_tree(plain_tree)
    finally:
        (plain_tree / "cats").chmod(0o755)
    assert {item.class_name for item in result.items} == {"coffee"}
    assert any(w.startswith(f"{plain_tree / 'cats'}: cannot list folder") for w in result.warnings)


# --- AwA2 class files that disagree ----------------------------------------------------------


@pytest.mark.reliability
def test_class_in_both_split_files_warns_and_is_unseen(small_awa2: Path) -> None:
    meta = small_awa2.parent
    with open(meta / "testclasses.txt", "a", encoding="utf-8") as fh:
        fh.write("trouser\nt-shirt\n")
    result = scan_tree(small_awa2)
    assert result.unseen == {"sandal", "shirt", "trouser", "t-shirt"}
    [line] = [w for w in result.warnings if "in both" in w]
    assert "'t-shirt', 'trouser'" in line or "'trouser', 't-shirt'" in line
    assert str(meta / "trainclasses.txt") in line and str(meta / "testclasses.txt") in line
    assert "treated as unseen" in line


@pytest.mark.reliability
def test_empty_classes_txt_warns(small_awa2: Path) -> None:
    (small_awa2.parent / "classes.txt").write_text("\n\n")
    result = scan_tree(small_awa2)
    assert sorted(result.classes) == sorted(SMALL_CLASSES)
    assert f"{small_awa2.parent / 'classes.txt'}: names no class" in result.warnings[0]


@pytest.mark.reliability
def test_invisible_characters_in_a_split_file_are_shown(small_awa2: Path) -> None:
    # a zero-width space is not whitespace: the name differs from the folder's
    (small_awa2.parent / "testclasses.txt").write_text("sandal\nshirt\u200b\n", encoding="utf-8")
    result = scan_tree(small_awa2)
    assert any("class 'shirt\\u200b' is in" in w for w in result.warnings)
    assert any("class 'shirt\\u200b' is listed in" in w for w in result.warnings)


@pytest.mark.reliability
def test_scan_folder_for_classes_add_skips_odd_entries(plain_tree: Path) -> None:
    """``classes add NAME FOLDER`` scans one folder: odd entries are skipped and reported."""
    cats = plain_tree / "cats"
    before = sorted(i.path.name for i in scan_folder(cats, "felines").items)
    folder = os.fsencode(cats)
    shutil.copy(cats / before[0], os.fsdecode(folder + b"/caf\xe9.jpg"))
    (cats / "a.jpg").symlink_to("b.jpg")
    (cats / "b.jpg").symlink_to("a.jpg")
    result = scan_folder(cats, "felines")
    assert sorted(i.path.name for i in result.items) == before
    assert {i.class_name for i in result.items} == {"felines"}
    warned = "\n".join(result.warnings)
    assert "caf\\xe9.jpg: name is not valid UTF-8; skipped" in warned
    assert f"{cats / 'a.jpg'}: symlink loop" in warned
    with pytest.raises(DataError, match="does not exist"):
        scan_folder(plain_tree / "nope", "x")
    (plain_tree / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        scan_folder(plain_tree / "empty", "x")
