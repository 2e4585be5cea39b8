"""Caption datasets on disk: the Flickr8k layout is recognised, a captions file's images are
matched with the files, what is missing is reported, and captions are stored once."""

from __future__ import annotations

import pytest

from embplat.catalog import repo
from embplat.catalog.db import make_engine, session_factory, transaction, upgrade
from embplat.errors import DataError
from embplat.ingest.captioned import NO_CLASS, find_flickr8k, scan_dataset, store_captions


@pytest.fixture
def flickr(tmp_path, imagefactory):
    """A Flickr8k-layout folder: 3 photos (c.jpg named by no caption), a token file with a
    caption of a missing image, split files (one names a missing image)."""
    images = tmp_path / "flickr" / "Flicker8k_Dataset"
    images.mkdir(parents=True)
    for name, photo in (("a.jpg", "chelsea"), ("b.jpg", "coffee"), ("c.jpg", "astronaut")):
        images.joinpath(name).write_bytes(
            imagefactory.encode(imagefactory.photo(photo, 32, 24), "JPEG")
        )
    root = images.parent
    (root / "Flickr8k.token.txt").write_text(
        "a.jpg#0\tA cat .\na.jpg#1\tA grey cat .\nb.jpg#0\tA cup .\nghost.jpg#0\tNothing .\n",
        encoding="utf-8",
    )
    (root / "Flickr_8k.trainImages.txt").write_text("a.jpg\n", encoding="utf-8")
    (root / "Flickr_8k.testImages.txt").write_text("b.jpg\nmissing.jpg\n", encoding="utf-8")
    return root


def test_flickr8k_layout_is_found_from_either_folder(flickr):
    found = (flickr / "Flicker8k_Dataset", flickr / "Flickr8k.token.txt")
    assert find_flickr8k(flickr) == found == find_flickr8k(flickr / "Flicker8k_Dataset")
    assert find_flickr8k(flickr.parent) is None


def test_flickr8k_scan(flickr):
    scan = scan_dataset(flickr)
    images = flickr / "Flicker8k_Dataset"
    assert scan.layout == "flickr8k" and scan.root == images
    assert [(i.path.name, i.class_name, i.split) for i in scan.items] == [
        ("a.jpg", NO_CLASS, "train"),
        ("b.jpg", NO_CLASS, "test"),
    ]
    assert [(p.name, r.text) for p, r in scan.captions] == [
        ("a.jpg", "A cat ."),
        ("a.jpg", "A grey cat ."),
        ("b.jpg", "A cup ."),
    ]
    assert scan.classes == [NO_CLASS]
    token, test = flickr / "Flickr8k.token.txt", flickr / "Flickr_8k.testImages.txt"
    assert scan.warnings == [
        f"{token}:4: image ghost.jpg not found in {images}; its 1 captions skipped",
        f"{test}:2: image missing.jpg not found in {images}; image skipped",
        f"{images}: 1 image files named by no caption in {token}; not ingested",
    ]


def test_a_captions_file_for_a_plain_folder(flickr, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"image": "a.jpg", "caption": "a cat", "class": "cat", "split": "valid"}\n'
        '{"image": "a.jpg", "caption": "a cat again", "class": "dog"}\n'
        '{"image": "c.jpg", "caption": "a person"}\n',
        encoding="utf-8",
    )
    scan = scan_dataset(flickr / "Flicker8k_Dataset", manifest)
    assert scan.layout == "captions"
    assert [(i.path.name, i.class_name, i.split) for i in scan.items] == [
        ("a.jpg", "cat", "valid"),
        ("c.jpg", NO_CLASS, None),
    ]
    assert "was given class_name 'cat' before" in scan.warnings[0]


def test_a_captions_file_naming_no_image_here_is_one_error(flickr, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,caption\nelsewhere.jpg,a cat\n", encoding="utf-8")
    with pytest.raises(DataError, match="names no image found in"):
        scan_dataset(flickr, manifest)
    with pytest.raises(DataError, match=r"unknown captions format \.xml"):
        scan_dataset(flickr, tmp_path / "captions.xml")


def test_captions_are_stored_once_and_only_for_cataloged_images(flickr, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    upgrade(engine)
    sessions = session_factory(engine)
    scan = scan_dataset(flickr)
    a = next(i for i in scan.items if i.path.name == "a.jpg")
    with transaction(sessions) as s:
        cid = repo.ensure_classes(session=s, names=[NO_CLASS])[NO_CLASS]
        row = {
            "sha256": "a" * 64,
            "path": str(a.path),
            "class_id": cid,
            "split": "valid",
            "width": 32,
            "height": 24,
            "mode": "RGB",
            "nbytes": 1,
        }
        repo.add_images(session=s, records=[row])
    first = store_captions(scan.captions, sessions=sessions)
    assert (first.added, first.updated) == (2, 0)
    assert (
        "image " + str(flickr / "Flicker8k_Dataset" / "b.jpg") + " is not cataloged"
        in (first.warnings[0])
    )
    assert "1 images are cataloged in another split" in first.warnings[1]
    again = store_captions(scan.captions, sessions=sessions)
    assert (again.added, again.updated) == (0, 0)
    engine.dispose()
