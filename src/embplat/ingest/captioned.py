"""Caption datasets: find the images a captions file names, and store their captions.

Flickr8k layout (recognised by ``platform ingest DIR`` without ``--captions``)::

    DIR/
      Flicker8k_Dataset/*.jpg       (the dataset's own spelling; Flickr8k_Dataset also works)
      Flickr8k.token.txt            "<image>#<n>\\t<caption>" per line
      Flickr_8k.trainImages.txt     one image name per line; also devImages, testImages

Any other folder of images takes a captions file (``--captions``): Karpathy's split JSON,
COCO ``captions_*.json``, or a CSV/JSONL manifest. The file decides which images are ingested
(those it names that exist) and, when it gives one, their split; images without a class get
the neutral class :data:`NO_CLASS`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import DataError
from embplat.ingest.caption_json import parse_json
from embplat.ingest.captions import (
    FLICKR8K_SPLIT_FILES,
    FORMATS,
    CaptionFile,
    CaptionRecord,
    parse_csv,
    parse_flickr8k,
    parse_jsonl,
)
from embplat.ingest.scan import IMAGE_EXTENSIONS, ScanItem, ScanResult, scan_tree

log = logging.getLogger(__name__)

#: the class of images a caption dataset gives no class (catalog role ``none``)
NO_CLASS = "unlabelled"
NO_CLASS_ROLE = "none"
FLICKR8K_TOKENS = "Flickr8k.token.txt"
FLICKR8K_IMAGES = ("Flicker8k_Dataset", "Flickr8k_Dataset")
_CAPTIONS_PER_WRITE = 5000


def read_captions(path: Path) -> CaptionFile:
    """Parse a captions file, its format told by its extension (and a JSON file's keys).

    Raises:
        DataError: the file is missing, unreadable, of no known format, or not of the
            schema its format needs.
    """
    suffix = path.suffix.lower()
    if suffix == ".json":
        return parse_json(path)
    if suffix in (".jsonl", ".ndjson"):
        return parse_jsonl(path)
    if suffix in (".csv", ".tsv"):
        return parse_csv(path)
    if suffix == ".txt":
        return parse_flickr8k(path, _split_files(path.parent))
    raise DataError(f"{path}: unknown captions format {suffix or '(no extension)'}; use {FORMATS}")


def find_flickr8k(root: Path) -> tuple[Path, Path] | None:
    """(images folder, token file) when ``root`` is a Flickr8k folder or its image folder."""
    token = root / FLICKR8K_TOKENS
    for name in FLICKR8K_IMAGES:
        if (root / name).is_dir() and token.is_file():
            return root / name, token
    if root.name in FLICKR8K_IMAGES and (root.parent / FLICKR8K_TOKENS).is_file():
        return root, root.parent / FLICKR8K_TOKENS
    return None


def scan_dataset(root: Path, captions: Path | None = None) -> ScanResult:
    """Scan an AwA2 or class-per-folder tree, a Flickr8k folder, or a folder of images with
    a captions file.

    Args:
        root: the dataset folder.
        captions: a captions file naming images under ``root`` (None: Flickr8k's token file
            when ``root`` has the Flickr8k layout, else no captions).

    Raises:
        DataError: ``root`` is not a folder, the captions file is unusable, or no image it
            names exists.
    """
    flickr = find_flickr8k(root) if root.is_dir() else None
    if captions is None and flickr is None:
        return scan_tree(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found; pass the folder holding the images")
    if captions is None:
        assert flickr is not None
        images_root, token = flickr
        return resolve(images_root, parse_flickr8k(token, _split_files(token.parent)), "flickr8k")
    return resolve(flickr[0] if flickr else root, read_captions(captions), "captions")


def _split_files(folder: Path) -> dict[str, Path]:
    """Flickr8k's split files present in ``folder``: split -> path."""
    found = {split: folder / name for split, name in FLICKR8K_SPLIT_FILES.items()}
    return {split: path for split, path in found.items() if path.is_file()}


@dataclass
class _Image:
    """What the records say about one image: its split and class (first given wins)."""

    where: str
    split: str | None = None
    class_name: str | None = None
    records: list[CaptionRecord] = field(default_factory=list)


def resolve(images_root: Path, file: CaptionFile, layout: str) -> ScanResult:
    """Match a captions file's images with the files under ``images_root``.

    Captions of images not found, and split-file lines naming them, are reported and
    skipped; an image given two splits or classes keeps the first and is reported.

    Raises:
        DataError: no image the file names exists under ``images_root``.
    """
    warnings = list(file.problems)
    images = _collect(file, warnings)
    result = ScanResult(layout=layout, root=images_root)  # type: ignore[arg-type]
    for name, image in images.items():
        path = images_root / name
        if not (path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()):
            what = f"its {len(image.records)} captions" if image.records else "image"
            warnings.append(
                f"{image.where}: image {name} not found in {images_root}; {what} skipped"
            )
            continue
        cls = image.class_name or NO_CLASS
        result.items.append(ScanItem(path=path, class_name=cls, split=image.split))
        # each caption carries its image's split, wherever the file gave it
        result.captions.extend((path, replace(r, split=image.split)) for r in image.records)
    if not result.items:
        raise DataError(
            f"{file.path}: names no image found in {images_root}; pass the folder holding the "
            "images it names (e.g. flickr30k-images/, or the folder above COCO's train2014/)"
        )
    result.items.sort(key=lambda item: str(item.path))
    result.classes = sorted({item.class_name for item in result.items})
    unnamed = _unnamed_images(images_root, {i.path.name for i in result.items})
    if unnamed:
        warnings.append(
            f"{images_root}: {unnamed} image files named by no caption in {file.path}; not ingested"
        )
    result.warnings = warnings
    for line in warnings[:20]:
        log.warning(line)
    return result


def _collect(file: CaptionFile, warnings: list[str]) -> dict[str, _Image]:
    """image name -> what the records and split files say about it, in file order."""
    images: dict[str, _Image] = {}
    for record in file.records:
        image = images.setdefault(record.image, _Image(record.where))
        for attr in ("split", "class_name"):
            value, had = getattr(record, attr), getattr(image, attr)
            if value is not None and had is not None and value != had:
                warnings.append(
                    f"{record.where}: {record.image} was given {attr} {had!r} "
                    f"before ({image.where}); {value!r} ignored"
                )
            elif value is not None:
                setattr(image, attr, value)
        image.records.append(record)
    for name, (split, where) in file.splits.items():
        image = images.setdefault(name, _Image(where))
        image.split = image.split or split
    return images


def _unnamed_images(folder: Path, named: set[str]) -> int:
    """How many image files directly in ``folder`` are not ``named``."""
    try:
        with os.scandir(folder) as entries:
            return sum(
                1
                for e in entries
                if e.name not in named
                and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS
                and e.is_file()
            )
    except OSError:
        return 0


@dataclass
class CaptionReport:
    """What storing a scan's captions did: rows added and updated, reported problems."""

    added: int = 0
    updated: int = 0
    warnings: list[str] = field(default_factory=list)


def store_captions(
    captions: Sequence[tuple[Path, CaptionRecord]], *, sessions: sessionmaker[Session]
) -> CaptionReport:
    """Store the captions of cataloged images (``source="file"``), idempotently.

    Captions of images that were not cataloged (skipped as undecodable or duplicates) are
    reported, one line per image; an image the catalog holds in another split than the
    captions file gives is reported once (its split is kept: its points carry it).
    """
    report = CaptionReport()
    paths = list(dict.fromkeys(str(path) for path, _ in captions))
    with sessions() as session:
        known = repo.image_splits(session=session, paths=paths)
    rows: list[dict[str, object]] = []
    missing: dict[str, str] = {}
    resplit: dict[str, str] = {}
    for path, record in captions:
        found = known.get(str(path))
        if found is None:
            missing.setdefault(str(path), record.where)
            continue
        if record.split and record.split != found[1]:
            resplit.setdefault(str(path), f"{path} ({found[1]}, file says {record.split})")
        rows.append(
            {"image_id": found[0], "text": record.text, "ordinal": record.ordinal, "source": "file"}
        )
    for start in range(0, len(rows), _CAPTIONS_PER_WRITE):
        with transaction(sessions) as session:
            written = repo.add_captions(
                session=session, rows=rows[start : start + _CAPTIONS_PER_WRITE]
            )
        report.added += written.added
        report.updated += written.updated
    report.warnings.extend(
        f"{where}: image {path} is not cataloged (skipped above); its captions skipped"
        for path, where in missing.items()
    )
    if resplit:
        report.warnings.append(
            f"{len(resplit)} images are cataloged in another split than the captions file "
            f"gives, e.g. {next(iter(resplit.values()))}; kept: delete them "
            "(`platform images delete`) and ingest again to move them"
        )
    return report
