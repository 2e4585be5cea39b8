"""Registering a tree again: unchanged files stay unread, touched files keep their image,
new content under a known path replaces the old image, old rows without a time use size."""

import os
import shutil

import pytest
from sqlalchemy import update

from embplat.catalog import repo
from embplat.catalog.db import make_engine, session_factory, transaction, upgrade
from embplat.catalog.models import Image
from embplat.ingest import register
from embplat.ingest.register import register_items
from embplat.ingest.scan import scan_tree


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def reads(monkeypatch):
    """Names of the files registration read (decoded and hashed), in order."""
    seen = []
    real = register.inspect_image

    def spy(path, **kwargs):
        seen.append(path.name)
        return real(path, **kwargs)

    monkeypatch.setattr(register, "inspect_image", spy)
    return seen


def _register(sessions, root):
    scan = scan_tree(root)
    with transaction(sessions) as s:
        class_ids = repo.ensure_classes(session=s, names=scan.classes)
    return register_items(
        scan.items,
        sessions=sessions,
        class_ids=class_ids,
        unseen=set(),
        valid_fraction=0.0,
        max_pixels=1_000_000,
    )


def _rows(sessions, path):
    with sessions() as s:
        return repo.known_files(session=s, paths=[str(path)]).get(str(path), [])


def _shift_mtime(path, seconds):
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))
    return path.stat().st_mtime_ns


def test_unchanged_files_are_not_read_again(sessions, bmp_tree, reads):
    first = _register(sessions, bmp_tree)
    assert len(first.added) == 6 and len(reads) == 6
    target = bmp_tree / "cats" / "cats_0.bmp"
    [row] = _rows(sessions, target)
    assert (row.nbytes, row.mtime_ns) == (target.stat().st_size, target.stat().st_mtime_ns)
    reads.clear()
    again = _register(sessions, bmp_tree)
    assert (again.added, again.already, again.replaced, again.skipped) == ([], 6, [], [])
    assert reads == []


def test_a_touched_file_keeps_its_image_and_gets_its_new_time(sessions, bmp_tree, reads):
    _register(sessions, bmp_tree)
    target = bmp_tree / "cats" / "cats_1.bmp"
    [before] = _rows(sessions, target)
    mtime = _shift_mtime(target, 5)
    reads.clear()
    again = _register(sessions, bmp_tree)
    assert reads == ["cats_1.bmp"]  # the stat changed, so the content is checked
    assert (again.added, again.already, again.replaced, again.skipped) == ([], 6, [], [])
    [after] = _rows(sessions, target)
    assert after == before._replace(mtime_ns=mtime)
    reads.clear()
    assert _register(sessions, bmp_tree).already == 6 and reads == []


def test_same_size_new_content_is_added_and_the_old_image_reported(
    sessions, bmp_tree, imagefactory
):
    _register(sessions, bmp_tree)
    target = bmp_tree / "coffee" / "coffee_0.bmp"
    [old] = _rows(sessions, target)
    size = target.stat().st_size
    target.write_bytes(imagefactory.photo_bmp("astronaut", 6))
    assert target.stat().st_size == size
    _shift_mtime(target, 1)
    again = _register(sessions, bmp_tree)
    assert again.replaced == [(str(target), old.image_id)]
    assert len(again.added) == 1 and again.already == 5 and again.skipped == []
    rows = _rows(sessions, target)
    assert [r.image_id for r in rows] == [old.image_id, *again.added]  # removal is the caller's
    assert rows[1].sha256 != old.sha256


def test_new_content_duplicating_another_file_still_replaces_the_old_image(sessions, bmp_tree):
    _register(sessions, bmp_tree)
    target, other = bmp_tree / "cats" / "cats_2.bmp", bmp_tree / "coffee" / "coffee_1.bmp"
    [old] = _rows(sessions, target)
    shutil.copyfile(other, target)
    _shift_mtime(target, 1)
    again = _register(sessions, bmp_tree)
    assert again.skipped == [(str(target), f"duplicate content of {other}")]
    assert again.replaced == [(str(target), old.image_id)] and again.added == []


def test_rows_without_a_time_fall_back_to_the_size(sessions, bmp_tree, imagefactory, reads):
    _register(sessions, bmp_tree)
    with transaction(sessions) as s:  # as cataloged before mtime_ns existed
        s.execute(update(Image).values(mtime_ns=None))
    same_size, bigger = bmp_tree / "cats" / "cats_0.bmp", bmp_tree / "cats" / "cats_1.bmp"
    same_size.write_bytes(imagefactory.photo_bmp("astronaut", 6))
    _shift_mtime(same_size, 1)
    [old] = _rows(sessions, bigger)
    bigger.write_bytes(imagefactory.photo_bmp("astronaut", 6, side=32))
    reads.clear()
    again = _register(sessions, bmp_tree)
    assert reads == ["cats_1.bmp"]  # same size and no stored time: trusted unread, as before
    assert again.replaced == [(str(bigger), old.image_id)]
    assert len(again.added) == 1 and again.already == 5
    [row] = _rows(sessions, same_size)
    assert row.mtime_ns is None


@pytest.mark.reliability
def test_a_cataloged_file_turned_garbage_is_skipped_and_its_old_image_reported(sessions, bmp_tree):
    _register(sessions, bmp_tree)
    target = bmp_tree / "cats" / "cats_0.bmp"
    [old] = _rows(sessions, target)
    target.write_bytes(b"\x00not an image any more\xff" * 3)
    again = _register(sessions, bmp_tree)
    [(path, reason)] = again.skipped
    assert path == str(target) and reason.endswith("its previous image is removed")
    assert again.replaced == [(str(target), old.image_id)]
    assert (again.added, again.already, again.moved) == ([], 5, [])
    garbage_new = bmp_tree / "cats" / "junk.bmp"  # never cataloged: skipped, nothing replaced
    garbage_new.write_bytes(b"junk")
    third = _register(sessions, bmp_tree)
    assert {p for p, _ in third.skipped} == {str(target), str(garbage_new)}
    assert third.replaced == [(str(target), old.image_id)]  # the caller had not removed it


@pytest.mark.reliability
def test_content_at_a_new_path_is_a_duplicate_while_the_old_path_exists_else_a_move(
    sessions, bmp_tree, tmp_path
):
    first = _register(sessions, bmp_tree)
    copy = tmp_path / "elsewhere" / "bmp"
    shutil.copytree(bmp_tree, copy)
    dup = _register(sessions, copy)
    assert (dup.added, dup.moved, dup.replaced, len(dup.skipped)) == ([], [], [], 6)
    assert all(reason.startswith("duplicate content of") for _, reason in dup.skipped)

    shutil.rmtree(bmp_tree)
    moved = _register(sessions, copy)
    assert (moved.added, moved.skipped, moved.replaced) == ([], [], [])
    assert sorted(m.image_id for m in moved.moved) == sorted(first.added)
    m = next(m for m in moved.moved if m.path.endswith("cats_1.bmp"))
    assert (m.old_path, m.path) == (
        str(bmp_tree / "cats" / "cats_1.bmp"),
        str(copy / "cats" / "cats_1.bmp"),
    )
    new = copy / "cats" / "cats_1.bmp"
    assert (m.nbytes, m.mtime_ns) == (new.stat().st_size, new.stat().st_mtime_ns)
    assert _rows(sessions, new) == []  # rows are the caller's to update, after the indexes


def test_a_file_moved_to_another_class_folder_takes_that_class(sessions, bmp_tree):
    _register(sessions, bmp_tree)
    old, new = bmp_tree / "cats" / "cats_2.bmp", bmp_tree / "coffee" / "was_a_cat.bmp"
    [row] = _rows(sessions, old)
    old.rename(new)
    again = _register(sessions, bmp_tree)
    [move] = again.moved
    assert (move.image_id, move.class_name, move.old_path) == (row.image_id, "coffee", str(old))
    with sessions() as s:
        ids = repo.ensure_classes(session=s, names=["coffee"])
        [image] = repo.get_images(session=s, ids=[row.image_id])
    assert move.class_id == ids["coffee"] and move.split == image.split == "train"
    assert (again.added, again.skipped, again.already) == ([], [], 5)


@pytest.mark.reliability
def test_two_copies_of_moved_content_move_once_and_the_other_is_a_duplicate(sessions, bmp_tree):
    _register(sessions, bmp_tree)
    old = bmp_tree / "coffee" / "coffee_0.bmp"
    for name in ("a.bmp", "b.bmp"):
        shutil.copyfile(old, bmp_tree / "coffee" / name)
    old.unlink()
    again = _register(sessions, bmp_tree)
    [move] = again.moved
    assert move.path == str(bmp_tree / "coffee" / "a.bmp")
    assert again.skipped == [
        (str(bmp_tree / "coffee" / "b.bmp"), f"duplicate content of {move.path}")
    ]
