"""Caption rows on SQLite and PostgreSQL: idempotent writes, corrections, reads by image and
split, lookup of an image by path or file name, and captions leaving with their image."""

from __future__ import annotations

from embplat.catalog import repo
from embplat.catalog.db import transaction


def _images(sessions, image_row) -> tuple[int, int]:
    with transaction(sessions) as s:
        cid = repo.ensure_classes(session=s, names=["unlabelled"], roles={"unlabelled": "none"})
        rows = [image_row("a" * 64, cid["unlabelled"], "/d/x/a.jpg")]
        rows.append({**image_row("b" * 64, cid["unlabelled"], "/d/y/b.jpg"), "split": "test"})
        repo.add_images(session=s, records=rows)
        found = repo.images_by_hash(session=s, hashes=["a" * 64, "b" * 64])
    return found["a" * 64].id, found["b" * 64].id


def _row(image_id: int, ordinal: int, text: str) -> dict[str, object]:
    return {"image_id": image_id, "ordinal": ordinal, "text": text, "source": "file"}


def test_captions_are_written_once_and_corrected_in_place(sessions, image_row):
    a, b = _images(sessions, image_row)
    rows = [_row(a, 0, "a red circle"), _row(a, 1, "a circle, red"), _row(b, 0, "a blue box")]
    with transaction(sessions) as s:
        assert repo.add_captions(session=s, rows=rows) == (3, 0)
    with transaction(sessions) as s:
        assert repo.add_captions(session=s, rows=rows) == (0, 0)
    with transaction(sessions) as s:
        fixed = [_row(a, 1, "a red disc"), _row(a, 2, "red")]
        assert repo.add_captions(session=s, rows=fixed) == (1, 1)
    with sessions() as s:
        got = repo.get_captions(session=s, image_ids=[a, b])
        assert [c.text for c in got[a]] == ["a red circle", "a red disc", "red"]
        assert [(c.source, c.model) for c in got[b]] == [("file", None)]
        assert repo.count_captions(session=s) == 4
        assert repo.count_captions(session=s, split="test") == 1
        assert repo.split_captions(session=s, splits=["train"])[1][1:] == (a, 1, "a red disc")


def test_generated_captions_keep_apart_from_file_captions(sessions, image_row):
    a, _ = _images(sessions, image_row)
    generated = {**_row(a, 0, "a circle"), "source": "generated", "model": "cap-1"}
    with transaction(sessions) as s:
        assert repo.add_captions(session=s, rows=[_row(a, 0, "a red circle"), generated]).added == 2
    with sessions() as s:
        assert [c.model for c in repo.get_captions(session=s, image_ids=[a])[a]] == [None, "cap-1"]
        assert len(repo.get_captions(session=s, image_ids=[a], source="generated")[a]) == 1


def test_captions_leave_with_their_image(sessions, image_row):
    a, b = _images(sessions, image_row)
    with transaction(sessions) as s:
        repo.add_captions(session=s, rows=[_row(a, 0, "x"), _row(b, 0, "y")])
    with transaction(sessions) as s:
        repo.delete_images(session=s, ids=[a])
    with sessions() as s:
        assert repo.count_captions(session=s) == 1
        assert list(repo.get_captions(session=s, image_ids=[a, b])) == [b]


def test_images_are_found_by_path_or_file_name(sessions, image_row):
    a, b = _images(sessions, image_row)
    with sessions() as s:
        assert [i.id for i in repo.find_images(session=s, path="/d/x/a.jpg")] == [a]
        assert [i.id for i in repo.find_images(session=s, path="b.jpg")] == [b]
        assert repo.find_images(session=s, path="B.jpg") == []
        assert repo.find_images(session=s, path="/elsewhere/c.jpg") == []
        assert repo.image_splits(session=s, paths=["/d/y/b.jpg", "/nope"]) == {
            "/d/y/b.jpg": (b, "test")
        }
