"""JSON caption files: Karpathy's split JSON (``dataset_flickr8k.json``,
``dataset_flickr30k.json``, ``dataset_coco.json``) and COCO's ``captions_*.json``.

JSON carries no useful line numbers, so problems name the entry instead:
``file:images[3].sentences[1]: empty caption; skipped``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from embplat.errors import DataError
from embplat.ingest.captions import CaptionFile, add_caption, read_text, split_name

KARPATHY_SCHEMA = "{'images': [{'filename', 'split', 'sentences': [{'raw'}]}]}"
COCO_SCHEMA = "{'images': [{'id', 'file_name'}], 'annotations': [{'image_id', 'caption'}]}"


def load_json(path: Path) -> Any:
    """The parsed JSON of ``path``.

    Raises:
        DataError: unreadable, or not JSON (the message gives the line of the error).
    """
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected Karpathy's split JSON "
            "or COCO captions_*.json"
        ) from None


def parse_json(path: Path) -> CaptionFile:
    """A Karpathy split JSON or a COCO captions JSON, told apart by its keys.

    Raises:
        DataError: the file is neither.
    """
    data = load_json(path)
    if isinstance(data, dict) and "annotations" in data:
        return parse_coco(path, data)
    return parse_karpathy(path, data)


def parse_karpathy(path: Path, data: Any) -> CaptionFile:
    """Karpathy's ``images[].filename`` (under ``filepath`` when given), ``split``
    (``restval`` counts as train) and ``sentences[].raw``; the split is required.

    Raises:
        DataError: ``data`` does not have the schema.
    """
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not all(isinstance(i, dict) for i in images):
        raise DataError(f"{path}: not a Karpathy split JSON; expected {KARPATHY_SCHEMA}")
    out = CaptionFile(path, "karpathy")
    seen: dict[tuple[str, int], str] = {}
    first: dict[str, tuple[str, str]] = {}
    for n, entry in enumerate(images):
        where = f"{path}:images[{n}]"
        try:
            image = _karpathy_file(entry)
            split = split_name(entry.get("split"))
        except ValueError as exc:
            out.problems.append(f"{where}: {exc}; its captions skipped")
            continue
        if image in first:
            other_split, other = first[image]
            out.problems.append(
                f"{where}: {image} is listed again (first at {other}, {other_split} split); "
                "this entry skipped: list each image once"
            )
            continue
        first[image] = (split, where)
        sentences = entry.get("sentences")
        if not isinstance(sentences, list):
            out.problems.append(f"{where}: no 'sentences' list; image has no captions")
            continue
        for j, sentence in enumerate(sentences):
            raw = sentence.get("raw") if isinstance(sentence, dict) else None
            extra = {"split": split}
            add_caption(out, seen, f"{where}.sentences[{j}]", image, raw, j, extra)
    return out


def _karpathy_file(entry: dict[str, Any]) -> str:
    """The image file of a Karpathy entry, relative to the images folder.

    Raises:
        ValueError: no file name.
    """
    name = entry.get("filename")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("no 'filename'")
    folder = entry.get("filepath")
    return f"{folder.strip('/')}/{name.strip()}" if isinstance(folder, str) else name.strip()


def parse_coco(path: Path, data: dict[str, Any]) -> CaptionFile:
    """COCO's ``images[{id, file_name}]`` and ``annotations[{image_id, caption}]``; each
    image's captions are numbered in annotation-id order. COCO gives no split.

    Raises:
        DataError: ``data`` does not have the schema.
    """
    images, annotations = data.get("images"), data.get("annotations")
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise DataError(f"{path}: not a COCO captions JSON; expected {COCO_SCHEMA}")
    out = CaptionFile(path, "coco")
    files: dict[Any, str] = {}
    for n, entry in enumerate(images):
        name = entry.get("file_name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name.strip() or "id" not in entry:
            out.problems.append(f"{path}:images[{n}]: no 'id' and 'file_name'; skipped")
            continue
        files[entry["id"]] = name.strip()
    rows = [(n, a) for n, a in enumerate(annotations) if isinstance(a, dict)]
    out.problems.extend(
        f"{path}:annotations[{n}]: not an object; skipped"
        for n, a in enumerate(annotations)
        if not isinstance(a, dict)
    )
    rows.sort(key=lambda row: (str(row[1].get("id", "")).zfill(20), row[0]))
    seen: dict[tuple[str, int], str] = {}
    counts: dict[str, int] = {}
    for n, ann in rows:
        where = f"{path}:annotations[{n}]"
        image = files.get(ann.get("image_id"))
        if image is None:
            out.problems.append(
                f"{where}: image_id {ann.get('image_id')!r} is not in images[]; skipped"
            )
            continue
        ordinal = counts.get(image, 0)
        if add_caption(out, seen, where, image, ann.get("caption"), ordinal):
            counts[image] = ordinal + 1
    return out
