"""Text caption formats: Flickr8k token and split files, CSV/TSV and JSONL manifests, with
their bad lines reported as ``file:line: reason`` and skipped."""

from __future__ import annotations

import pytest

from embplat.errors import DataError
from embplat.ingest.captions import (
    MAX_CAPTION_CHARS,
    clean_caption,
    parse_csv,
    parse_flickr8k,
    parse_jsonl,
)

LONG = " ".join(["word"] * 10_000)


def _problems(parsed, path) -> dict[int, str]:
    """line number -> reason of each problem reported for ``path``."""
    out = {}
    for line in parsed.problems:
        head, _, reason = line.partition(": ")
        file, _, number = head.rpartition(":")
        if file == str(path):
            out[int(number)] = reason
    return out


def test_flickr8k_tokens_and_splits_with_bad_lines(tmp_path):
    tokens = tmp_path / "Flickr8k.token.txt"
    tokens.write_text(
        "a.jpg#0\tA dog runs on the grass .\n"
        "a.jpg#1\t  A  brown\tdog .  \n"  # tab inside the caption, spaces collapsed
        "no tab here\n"
        "a.jpg#x\tbad ordinal\n"
        "b.jpg#0\t   \n"
        f"b.jpg#1\t{LONG}\n"
        "a.jpg#0\tthe same ordinal twice\n"
        "\n"
        "c.jpg#2\t狗在草地上跑\n",
        encoding="utf-8",
    )
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("a.jpg\nb.jpg\n", encoding="utf-8")
    test.write_text("c.jpg\n\nb.jpg\n", encoding="utf-8")
    parsed = parse_flickr8k(tokens, {"train": train, "test": test})
    assert parsed.format == "flickr8k"
    assert [(r.image, r.ordinal, r.text) for r in parsed.records] == [
        ("a.jpg", 0, "A dog runs on the grass ."),
        ("a.jpg", 1, "A brown dog ."),
        ("c.jpg", 2, "狗在草地上跑"),  # kept: whether an encoder has words for it is its business
    ]
    assert parsed.records[0].where == f"{tokens}:1"
    bad = _problems(parsed, tokens)
    assert sorted(bad) == [3, 4, 5, 6, 7]
    assert "expected '<image>#<n><TAB><caption>'" in bad[3] and "empty caption" in bad[5]
    assert "10000 words" in bad[6] and "already given" in bad[7]
    assert parsed.splits == {
        "a.jpg": ("train", f"{train}:1"),
        "b.jpg": ("train", f"{train}:2"),
        "c.jpg": ("test", f"{test}:1"),
    }
    assert "also in the train split" in _problems(parsed, test)[3]


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty"), ("\x00\x07 \t", "empty"), ("!!! ...", "no words"), (3, "not text")],
)
def test_unusable_captions_say_why(text, reason):
    with pytest.raises(ValueError, match=reason):
        clean_caption(text)


def test_a_caption_at_the_limit_is_kept():
    assert len(clean_caption("x" * MAX_CAPTION_CHARS)) == MAX_CAPTION_CHARS
    with pytest.raises(ValueError, match="longer than"):
        clean_caption("x" * (MAX_CAPTION_CHARS + 1))


def test_csv_manifest_with_classes_splits_and_bad_rows(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(
        "Image,caption,class,split\n"
        'a.jpg,"a cat, asleep",cat,train\n'
        "a.jpg,a sleeping cat,cat,train\n"
        "b.jpg,a dog,dog\n"
        "b.jpg,a dog,dog,holiday\n"
        ",a nameless image,,\n"
        "c.jpg,a bird,,val\n",
        encoding="utf-8",
    )
    parsed = parse_csv(path)
    assert [(r.image, r.ordinal, r.text, r.class_name, r.split) for r in parsed.records] == [
        ("a.jpg", 0, "a cat, asleep", "cat", "train"),
        ("a.jpg", 1, "a sleeping cat", "cat", "train"),
        ("c.jpg", 0, "a bird", None, "valid"),
    ]
    bad = _problems(parsed, path)
    assert sorted(bad) == [4, 5, 6]
    assert "3 cells where the header has 4" in bad[4] and "unknown split 'holiday'" in bad[5]


def test_tsv_manifest_and_a_header_without_the_columns(tmp_path):
    tsv = tmp_path / "m.tsv"
    tsv.write_text("image\tcaption\na.jpg\ta cat, asleep\n", encoding="utf-8")
    assert [r.text for r in parse_csv(tsv).records] == ["a cat, asleep"]
    headless = tmp_path / "h.csv"
    headless.write_text("a.jpg,a cat\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"h.csv:1: header a.jpg,a cat lacks the columns"):
        parse_csv(headless)


def test_jsonl_manifest_with_bad_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"image": "a.jpg", "caption": "a cat", "class": "cat", "split": "test"}\n'
        "{not json\n"
        '["a.jpg", "a cat"]\n'
        '{"image": "a.jpg", "caption": ""}\n'
        '{"image": "a.jpg", "caption": "another cat"}\n',
        encoding="utf-8",
    )
    parsed = parse_jsonl(path)
    assert [(r.ordinal, r.text, r.split) for r in parsed.records] == [
        (0, "a cat", "test"),
        (1, "another cat", None),
    ]
    bad = _problems(parsed, path)
    assert sorted(bad) == [2, 3, 4] and "not valid JSON" in bad[2]


def test_a_file_that_is_not_utf8_is_one_error(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"image": "a.jpg", "caption": "café"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="save it as UTF-8"):
        parse_jsonl(path)
    with pytest.raises(DataError, match="not found"):
        parse_jsonl(tmp_path / "missing.jsonl")
