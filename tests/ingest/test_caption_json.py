"""JSON caption formats: Karpathy's split JSON and COCO captions, bad entries reported by
their place in the file, files of another schema refused in one line."""

from __future__ import annotations

import json

import pytest

from embplat.errors import DataError
from embplat.ingest.caption_json import parse_json


def _write(tmp_path, name, data) -> object:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_karpathy_split_json(tmp_path):
    data = {
        "dataset": "flickr30k",
        "images": [
            {"filename": "1.jpg", "split": "train", "sentences": [{"raw": "A man ."}, {"raw": ""}]},
            {"filename": "2.jpg", "split": "restval", "sentences": [{"raw": "A dog ."}]},
            {
                "filename": "3.jpg",
                "filepath": "val2014",
                "split": "val",
                "sentences": [{"raw": "A cat ."}, {"tokens": ["a"]}],
            },
            {"filename": "4.jpg", "split": "test", "sentences": [{"raw": "A bird ."}]},
            {"filename": "4.jpg", "split": "train", "sentences": [{"raw": "Again ."}]},
            {"split": "test", "sentences": []},
            {"filename": "5.jpg", "split": "holiday", "sentences": [{"raw": "A car ."}]},
        ],
    }
    path = _write(tmp_path, "dataset_flickr30k.json", data)
    parsed = parse_json(path)
    assert parsed.format == "karpathy"
    assert [(r.image, r.ordinal, r.text, r.split) for r in parsed.records] == [
        ("1.jpg", 0, "A man .", "train"),
        ("2.jpg", 0, "A dog .", "train"),
        ("val2014/3.jpg", 0, "A cat .", "valid"),
        ("4.jpg", 0, "A bird .", "test"),
    ]
    assert [p.split(": ")[0].removeprefix(f"{path}:") for p in parsed.problems] == [
        "images[0].sentences[1]",
        "images[2].sentences[1]",
        "images[4]",
        "images[5]",
        "images[6]",
    ]
    assert "listed again (first at" in parsed.problems[2]
    assert "unknown split 'holiday'" in parsed.problems[4]


def test_coco_captions_json(tmp_path):
    data = {
        "images": [{"id": 7, "file_name": "COCO_val2014_7.jpg"}, {"id": 8}],
        "annotations": [
            {"id": 30, "image_id": 7, "caption": "A second caption."},
            {"id": 12, "image_id": 7, "caption": "A first caption."},
            {"id": 40, "image_id": 99, "caption": "Of no image."},
            "junk",
        ],
    }
    path = _write(tmp_path, "captions_val2014.json", data)
    parsed = parse_json(path)
    assert parsed.format == "coco"
    assert [(r.image, r.ordinal, r.text, r.split) for r in parsed.records] == [
        ("COCO_val2014_7.jpg", 0, "A first caption.", None),
        ("COCO_val2014_7.jpg", 1, "A second caption.", None),
    ]
    assert len(parsed.problems) == 3
    assert "image_id 99 is not in images[]" in " ".join(parsed.problems)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2, 3], "not a Karpathy split JSON"),
        ({"images": "x"}, "not a Karpathy split JSON"),
        ({"images": [], "annotations": {"a": 1}}, "not a COCO captions JSON"),
    ],
)
def test_json_of_another_schema_is_one_error(tmp_path, data, expected):
    with pytest.raises(DataError, match=expected):
        parse_json(_write(tmp_path, "x.json", data))


def test_broken_json_names_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"filename": "a.jpg",\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.json:3: not valid JSON"):
        parse_json(path)
