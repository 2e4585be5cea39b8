"""Folder scanners: an AwA2-layout tree or a plain class-per-folder tree → a list of images
(caption datasets are scanned by :mod:`embplat.ingest.captioned`).

AwA2 layout::

    Animals_with_Attributes2/
      classes.txt          "1\\tantelope" per line (or just "antelope")
      trainclasses.txt     seen classes, one name per line
      testclasses.txt      unseen classes, one name per line
      JPEGImages/<class>/<image>.jpg

Scanning only lists files (no decoding); :mod:`embplat.ingest.images` validates them.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from embplat.errors import DataError
from embplat.models.attributes import read_numbered_names

if TYPE_CHECKING:
    from embplat.ingest.captions import CaptionRecord

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_AWA2_IMAGES = "JPEGImages"
_CLASSES_FILE = "classes.txt"
_SPLIT_FILES = ("trainclasses.txt", "testclasses.txt")
_LOGGED_WARNINGS = 20


@dataclass(frozen=True)
class ScanItem:
    """One image file, the class its folder (or manifest) names, and the split its dataset
    gives it (None: chosen by content hash at registration)."""

    path: Path
    class_name: str
    split: str | None = None


@dataclass
class ScanResult:
    """What :func:`scan_tree` found.

    Attributes:
        layout: ``"awa2"`` (classes.txt beside a JPEGImages folder), ``"folders"``,
            ``"flickr8k"`` or ``"captions"`` (a folder of images and a captions file).
        root: The folder holding the class folders (``JPEGImages`` for AwA2), or the images.
        items: Image files, sorted by class folder then file name.
        classes: All class names: classes.txt order (plus unlisted folders, sorted) for AwA2,
            sorted folder names otherwise.
        unseen: Classes named in testclasses.txt; empty for plain folders.
        warnings: One human-readable line per skipped file, caption or inconsistency.
        captions: (image file, caption) of caption datasets.
        meta_dir: the folder holding an AwA2 ``classes.txt`` (and maybe its predicate
            matrix, read by ``embplat.models.attributes``); None for other layouts.
    """

    layout: Literal["awa2", "folders", "flickr8k", "captions"]
    root: Path
    items: list[ScanItem] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    unseen: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    captions: list[tuple[Path, CaptionRecord]] = field(default_factory=list)
    meta_dir: Path | None = None


def scan_tree(root: Path) -> ScanResult:
    """List the images of an AwA2-layout or class-per-folder tree.

    Args:
        root: An AwA2 ``JPEGImages`` folder, the folder containing it, or any folder with one
            sub-folder per class.

    Returns:
        The :class:`ScanResult`; skipped files and inconsistencies are in ``warnings``.

    Raises:
        DataError: ``root`` is missing or not a folder, a class file is malformed, or no
            image was found.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: folder not found; pass the folder that holds the class folders")
    if not root.is_dir():
        raise DataError(f"{root}: is a file; pass the folder that holds the class folders")
    images_root, meta_dir = _locate_awa2(root)
    if meta_dir is None:
        result, folders = _scan_folders(images_root, layout="folders")
        result.classes = folders
        if images_root != root:
            result.warnings.append(
                f"{root / _CLASSES_FILE}: not found; scanned {images_root} as plain class folders"
            )
    else:
        result = _scan_awa2(images_root, meta_dir)
    if not result.items:
        raise DataError(
            f"{images_root}: no images found; expected <class>/<image> files with one of the "
            f"extensions {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    for line in result.warnings[:_LOGGED_WARNINGS]:
        log.warning(line)
    if len(result.warnings) > _LOGGED_WARNINGS:
        log.warning("... and %d more warnings", len(result.warnings) - _LOGGED_WARNINGS)
    log.info(
        "scanned %s (%s): %d images in %d classes, %d warnings",
        images_root,
        result.layout,
        len(result.items),
        len(result.classes),
        len(result.warnings),
    )
    return result


def _locate_awa2(root: Path) -> tuple[Path, Path | None]:
    """Return (folder holding the class folders, folder holding classes.txt or None)."""
    if (root / _AWA2_IMAGES).is_dir():
        has_classes = (root / _CLASSES_FILE).is_file()
        return root / _AWA2_IMAGES, (root if has_classes else None)
    if (root.parent / _CLASSES_FILE).is_file():
        return root, root.parent
    return root, None


def _scan_awa2(images_root: Path, meta_dir: Path) -> ScanResult:
    """Scan ``images_root`` and reconcile it with classes.txt and the split files."""
    result, folders = _scan_folders(images_root, layout="awa2")
    result.meta_dir = meta_dir
    listed = _read_class_file(meta_dir / _CLASSES_FILE)
    splits = {
        meta_dir / name: _read_class_file(meta_dir / name)
        for name in _SPLIT_FILES
        if (meta_dir / name).is_file()
    }
    result.unseen = set(splits.get(meta_dir / "testclasses.txt", []))
    _warn_split_overlap(splits, meta_dir, result)
    if not listed:
        result.warnings.append(
            f"{meta_dir / _CLASSES_FILE}: names no class; the class folders are used in "
            "sorted order (list one class name per line to fix it)"
        )
    # Where each class is declared, most specific file last so it wins in messages.
    declared = {cls: meta_dir / _CLASSES_FILE for cls in listed}
    for split_path, members in splits.items():
        for cls in members:
            if cls not in listed:
                result.warnings.append(f"class {cls!r} is in {split_path} but not in classes.txt")
            declared[cls] = split_path
    for cls, source in declared.items():
        if cls not in folders:
            result.warnings.append(
                f"class {cls!r} is listed in {source} but has no folder {images_root / cls}"
            )
    unlisted = [cls for cls in folders if cls not in listed]
    for cls in unlisted:
        result.warnings.append(
            f"folder {images_root / cls} is not listed in {meta_dir / _CLASSES_FILE}; "
            "included anyway"
        )
    result.classes = [*listed, *unlisted]
    return result


def _warn_split_overlap(splits: dict[Path, list[str]], meta_dir: Path, result: ScanResult) -> None:
    """Warn about classes named in both trainclasses.txt and testclasses.txt (they become
    unseen: their images go to the test split and are not enrolled)."""
    train = splits.get(meta_dir / "trainclasses.txt", [])
    both = [cls for cls in train if cls in result.unseen]
    if both:
        result.warnings.append(
            f"class{'es' if len(both) > 1 else ''} {', '.join(repr(c) for c in both)} "
            f"{'are' if len(both) > 1 else 'is'} in both {meta_dir / 'trainclasses.txt'} and "
            f"{meta_dir / 'testclasses.txt'}; treated as unseen (test split, not enrolled): "
            "remove it from one of the two files"
        )


def _read_class_file(path: Path) -> list[str]:
    """Parse "1\\tname" or "name" lines (blank lines skipped, duplicates dropped)."""
    return list(dict.fromkeys(read_numbered_names(path, what="class file")))


def _scan_folders(
    images_root: Path, *, layout: Literal["awa2", "folders"]
) -> tuple[ScanResult, list[str]]:
    """Collect images from every class folder of ``images_root``; also return the folder names."""
    result = ScanResult(layout=layout, root=images_root)
    folders: list[str] = []
    for entry in _sorted_entries(images_root):
        kind = _entry_kind(entry, result)
        if kind == "dir":
            folders.append(entry.name)
            _scan_class_folder(Path(entry.path), result)
        elif kind == "file":
            result.warnings.append(f"{entry.path}: file outside any class folder; skipped")
    return result, folders


def scan_folder(folder: Path, class_name: str) -> ScanResult:
    """The images directly inside ``folder``, all labelled ``class_name`` (``classes add``);
    odd entries are skipped with a warning as in :func:`scan_tree`.

    Raises:
        DataError: the folder is missing or holds no image files.
    """
    if not folder.is_dir():
        raise DataError(f"folder {printable(folder)} does not exist")
    result = ScanResult(layout="folders", root=folder, classes=[class_name])
    _scan_class_folder(folder, result, class_name)
    if not result.items:
        raise DataError(f"folder {printable(folder)} holds no image files")
    return result


def _scan_class_folder(folder: Path, result: ScanResult, class_name: str | None = None) -> None:
    """Append the images of one class folder to ``result`` (its name is the class unless
    ``class_name`` is given)."""
    found = 0
    try:
        entries = _sorted_entries(folder)
    except DataError as exc:  # one unreadable class folder must not sink the whole scan
        result.warnings.append(f"{exc}; class folder skipped")
        return
    for entry in entries:
        path = Path(entry.path)
        kind = _entry_kind(entry, result)
        if kind == "dir":
            result.warnings.append(
                f"{path}: nested folder ignored; move its images up into {folder}"
            )
        elif kind == "file" and path.suffix.lower() in IMAGE_EXTENSIONS:
            result.items.append(ScanItem(path=path, class_name=class_name or folder.name))
            found += 1
        elif kind == "file":
            result.warnings.append(f"{path}: not an image extension; skipped")
    if not found:
        result.warnings.append(f"{folder}: class folder holds no images")


def _entry_kind(entry: os.DirEntry[str], result: ScanResult) -> Literal["dir", "file"] | None:
    """``"dir"``, ``"file"`` (a regular file), or None for an entry skipped with a warning:
    a name that is not UTF-8 (the catalog and the terminal could not hold it), a symlink loop,
    a dangling symlink, or a special file (a FIFO would block the reader forever)."""
    shown = printable(entry.path)
    try:
        entry.name.encode("utf-8")
    except UnicodeEncodeError:
        result.warnings.append(
            f"{shown}: name is not valid UTF-8; skipped (rename it, e.g. "
            "`convmv -f latin1 -t utf8 --notest FILE`)"
        )
        return None
    try:
        if entry.is_dir():
            return _dir_kind(entry, result)
        if entry.is_file():
            return "file"
    except OSError as exc:
        reason = "symlink loop: links pointing at each other" if exc.errno == errno.ELOOP else ""
        result.warnings.append(f"{shown}: {reason or exc.strerror}; skipped (fix or remove it)")
        return None
    if entry.is_symlink():
        target = os.readlink(entry.path)
        result.warnings.append(
            f"{shown}: broken symlink to {printable(target)}; skipped (fix or remove it)"
        )
    else:
        result.warnings.append(f"{shown}: not a regular file or folder; skipped")
    return None


def _dir_kind(entry: os.DirEntry[str], result: ScanResult) -> Literal["dir"] | None:
    """A folder, unless it is a symlink back to itself or to a folder above it (a loop)."""
    if entry.is_symlink():
        target = Path(os.path.realpath(entry.path))
        here = Path(os.path.realpath(os.path.dirname(entry.path)))
        if target == here or target in here.parents:
            result.warnings.append(
                f"{printable(entry.path)}: symlink loop (points at {target}, a folder above "
                "it); skipped"
            )
            return None
    return "dir"


def printable(path: str | os.PathLike[str]) -> str:
    """``path`` as text any terminal, log or UTF-8 catalog accepts: bytes that are not UTF-8
    (kept by Python as surrogates) are shown as ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def _sorted_entries(folder: Path) -> list[os.DirEntry[str]]:
    """Non-hidden entries of ``folder`` sorted by name."""
    try:
        with os.scandir(folder) as entries:
            visible = [entry for entry in entries if not entry.name.startswith(".")]
    except OSError as exc:
        raise DataError(
            f"{printable(folder)}: cannot list folder ({exc.strerror}); check its permissions"
        ) from exc
    return sorted(visible, key=lambda entry: entry.name)
