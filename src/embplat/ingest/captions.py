"""Caption files → caption records: Flickr8k token files (plus their split files) and
CSV/JSONL manifests here, Karpathy's split JSON and COCO ``captions_*.json`` in
:mod:`embplat.ingest.caption_json`.

Every parser returns a :class:`CaptionFile`: one :class:`CaptionRecord` per good caption
(image file as the file names it, cleaned text, ordinal, split, class) and one
``"file:line: reason"`` problem per bad line, which is skipped (JSON files name the entry,
e.g. ``file:images[3].sentences[1]``). A file that is not of its format at all raises
:class:`~embplat.errors.DataError`. Nothing here looks at the images on disk.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embplat.errors import DataError

#: a caption describes one image in a sentence or two; longer text is a broken line
MAX_CAPTION_CHARS = 1000
#: split names of the formats → the catalog's (Karpathy's ``restval`` is training data)
SPLITS = {
    "train": "train",
    "restval": "train",
    "val": "valid",
    "valid": "valid",
    "validation": "valid",
    "dev": "valid",
    "test": "test",
}
#: Flickr8k's split files, as the dataset ships them
FLICKR8K_SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "valid": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
FORMATS = "Flickr8k token .txt, Karpathy or COCO .json, .csv/.tsv or .jsonl manifest"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class CaptionRecord:
    """One caption of an image, as a captions file gives it.

    Attributes:
        image: The image file, relative to the images folder (Flickr8k: its name).
        text: The caption, whitespace collapsed.
        ordinal: Its place among the image's captions (Flickr8k's ``#n``, else file order).
        split: ``train``/``valid``/``test`` when the file says, else None.
        class_name: The image's class when a manifest gives one, else None.
        where: ``file:line`` (or ``file:entry``) for messages.
    """

    image: str
    text: str
    ordinal: int
    split: str | None = None
    class_name: str | None = None
    where: str = ""


@dataclass
class CaptionFile:
    """What a captions file holds: its format, good records, and one line per bad one.

    ``splits`` maps an image to (split, where it was listed) for formats that list splits
    apart from captions (Flickr8k's split files); records carry their split otherwise.
    """

    path: Path
    format: str
    records: list[CaptionRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    splits: dict[str, tuple[str, str]] = field(default_factory=dict)


def clean_caption(text: Any) -> str:
    """``text`` with control characters removed and whitespace collapsed.

    Raises:
        ValueError: the caption is not text, is empty, has no letter or digit, or is longer
            than :data:`MAX_CAPTION_CHARS` (the message is the reason, for a problem line).
    """
    if not isinstance(text, str):
        raise ValueError(f"caption is {type(text).__name__}, not text")
    text = " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", text)).split())
    if not text:
        raise ValueError("empty caption")
    if len(text) > MAX_CAPTION_CHARS:
        raise ValueError(
            f"caption of {len(text.split())} words ({len(text)} characters) is longer than "
            f"{MAX_CAPTION_CHARS} characters; shorten it to a sentence or two"
        )
    if not any(unicodedata.category(ch)[0] in "LN" for ch in text):
        raise ValueError(f"caption {text[:40]!r} has no words")
    return text


def split_name(value: Any) -> str:
    """The catalog's split for a file's split name.

    Raises:
        ValueError: an unknown split name.
    """
    key = str(value).strip().lower()
    if key not in SPLITS:
        raise ValueError(f"unknown split {value!r}; expected one of {', '.join(SPLITS)}")
    return SPLITS[key]


def read_text(path: Path) -> str:
    """A captions file's text (UTF-8, a BOM allowed).

    Raises:
        DataError: missing, unreadable or not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: captions file not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable captions file ({exc}); save it as UTF-8") from exc


def parse_flickr8k(token_file: Path, split_files: dict[str, Path]) -> CaptionFile:
    """Flickr8k's ``<image>#<n>\\t<caption>`` lines, and the image lists of its split files.

    Args:
        split_files: split (``train``/``valid``/``test``) -> its image list, those present.
    """
    out = CaptionFile(token_file, "flickr8k")
    seen: dict[tuple[str, int], str] = {}
    for number, line in enumerate(read_text(token_file).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{token_file}:{number}"
        head, tab, text = line.partition("\t")
        image, hash_, ordinal = head.strip().rpartition("#")
        if not tab or not hash_ or not image or not ordinal.isdigit():
            out.problems.append(f"{where}: expected '<image>#<n><TAB><caption>', got {line[:60]!r}")
            continue
        add_caption(out, seen, where, image, text, int(ordinal))
    for split, listing in split_files.items():
        _read_split_file(listing, split, out)
    return out


def _read_split_file(listing: Path, split: str, out: CaptionFile) -> None:
    """Record the split of each image ``listing`` names; an image listed in two splits keeps
    the first (train, then valid, then test) and is reported."""
    for number, line in enumerate(read_text(listing).splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        where = f"{listing}:{number}"
        first = out.splits.get(name)
        if first is not None and first[0] != split:
            out.problems.append(
                f"{where}: {name} is also in the {first[0]} split ({first[1]}); kept in "
                f"{first[0]}: list each image in one split file"
            )
        elif first is None:
            out.splits[name] = (split, where)


def parse_jsonl(path: Path) -> CaptionFile:
    """A JSONL manifest: one ``{"image", "caption"[, "class", "split"]}`` object a line."""
    out = CaptionFile(path, "jsonl")
    seen: dict[tuple[str, int], str] = {}
    counts: dict[str, int] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            out.problems.append(f"{where}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("image"), str):
            out.problems.append(
                f"{where}: expected an object with 'image' and 'caption', got {line[:60]!r}"
            )
            continue
        image = row["image"].strip()
        ordinal = counts.get(image, 0)
        if add_caption(out, seen, where, image, row.get("caption"), ordinal, row):
            counts[image] = ordinal + 1
    return out


def parse_csv(path: Path) -> CaptionFile:
    """A CSV (``.csv``) or tab-separated (``.tsv``) manifest whose header names the columns
    ``image`` and ``caption`` (optional ``class``, ``split``), one caption a row.

    Raises:
        DataError: the header lacks ``image`` or ``caption``.
    """
    out = CaptionFile(path, "csv")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader, [])]
    if "image" not in header or "caption" not in header:
        raise DataError(
            f"{path}:1: header {','.join(header) or '(empty)'} lacks the columns image and "
            "caption; the first row must name them, e.g. image,caption,class,split"
        )
    seen: dict[tuple[str, int], str] = {}
    counts: dict[str, int] = {}
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        where = f"{path}:{reader.line_num}"
        if len(cells) != len(header):
            out.problems.append(
                f"{where}: {len(cells)} cells where the header has {len(header)} (quote "
                "captions holding the delimiter); skipped"
            )
            continue
        row = dict(zip(header, cells, strict=True))
        image = row["image"].strip()
        ordinal = counts.get(image, 0)
        if add_caption(out, seen, where, image, row["caption"], ordinal, row):
            counts[image] = ordinal + 1
    return out


def add_caption(
    out: CaptionFile,
    seen: dict[tuple[str, int], str],
    where: str,
    image: str,
    text: Any,
    ordinal: int,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Append one caption to ``out``, or its problem (bad text, split or class; an
    (image, ordinal) given twice); returns whether it was kept."""
    extra = extra or {}
    try:
        if not image:
            raise ValueError("no image named")
        caption = clean_caption(text)
        split = split_name(extra["split"]) if extra.get("split") not in (None, "") else None
        cls = _class_name(extra.get("class"))
    except ValueError as exc:
        out.problems.append(f"{where}: {exc}; skipped")
        return False
    if (image, ordinal) in seen:
        out.problems.append(
            f"{where}: caption #{ordinal} of {image} is already given at {seen[image, ordinal]};"
            " skipped"
        )
        return False
    seen[image, ordinal] = where
    out.records.append(CaptionRecord(image, caption, ordinal, split, cls, where))
    return True


def _class_name(value: Any) -> str | None:
    """A manifest's class cell: None when absent or blank."""
    if value is None:
        return None
    name = " ".join(str(value).split())
    if len(name) > 200:
        raise ValueError(f"class name {name[:40]!r}... is longer than 200 characters")
    return name or None
