"""The captioned scenes: reproducible, fast, in the Flickr8k layout, honest (each caption is
true of its image's ground truth, which the pixels show), and spatial relations matter."""

from __future__ import annotations

import json
import re
import time

import pytest
from PIL import Image

from embplat.errors import ConfigError
from embplat.ingest.captioned import scan_dataset
from embplat.ingest.scenes import COLOURS, build_scenes

#: caption patterns whose first-named shape is the left/top one, and the right/bottom one
FIRST_IS_LEFT = re.compile(
    r"to the left of|^\S+ \S+ \S+ (\S+ )?left of|on the left and|"
    r"^On the left|placed left of| above |at the top and|^At the top| over "
)
FIRST_IS_RIGHT = re.compile(
    r"right of|right side of|to its left| below | underneath | beneath "
    r"|above it"
)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    return build_scenes(out, images=60, seed=3, size=96)


def _truth(root) -> list[dict]:
    return [json.loads(line) for line in (root / "scenes.jsonl").read_text().splitlines()]


def _captions(root) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (root / "Flickr8k.token.txt").read_text().splitlines():
        head, text = line.split("\t")
        out.setdefault(head.split("#")[0], []).append(text)
    return out


def _mentions(text: str, shape: dict) -> int:
    """Where ``text`` names the shape (its colour then its form or a synonym), or -1."""
    found = re.search(rf"{shape['colour']} ({_forms(shape)})\b", text)
    return found.start() if found else -1


def test_layout_splits_and_five_distinct_captions(scenes):
    names = sorted(p.name for p in (scenes / "Flicker8k_Dataset").iterdir())
    assert len(names) == 60
    splits = {
        s: (scenes / f"Flickr_8k.{s}Images.txt").read_text().split()
        for s in ("train", "dev", "test")
    }
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [48, 6, 6]
    assert sorted(n for names_ in splits.values() for n in names_) == names
    captions = _captions(scenes)
    assert sorted(captions) == names
    assert all(len(set(c)) == 5 for c in captions.values())
    assert len({c for cs in captions.values() for c in cs}) > 200  # paraphrases vary


def test_every_caption_is_true_of_its_image(scenes):
    captions = _captions(scenes)
    for scene in _truth(scenes):
        first, second = scene["first"], scene["second"]
        for text in captions[scene["image"]]:
            at1, at2 = _mentions(text, first), _mentions(text, second)
            assert at1 >= 0 and at2 >= 0, text
            if FIRST_IS_RIGHT.search(text):
                assert at2 < at1, (scene["image"], text)
            elif FIRST_IS_LEFT.search(text):
                assert at1 < at2, (scene["image"], text)
            for shape in (first, second):  # size words only where sizes differ, and right
                sized = re.search(rf"(small|large) {shape['colour']} ({_forms(shape)})", text)
                if sized:
                    assert sized.group(1) == shape["size"] != _other(scene, shape)["size"], text


def _forms(shape: dict) -> str:
    return {"circle": "circle|disc", "square": "square|box"}.get(shape["form"], shape["form"])


def _other(scene: dict, shape: dict) -> dict:
    return scene["second"] if shape is scene["first"] else scene["first"]


def test_the_pixels_show_the_ground_truth(scenes):
    for scene in _truth(scenes)[:20]:
        img = Image.open(scenes / "Flicker8k_Dataset" / scene["image"]).convert("RGB")
        for shape in (scene["first"], scene["second"]):
            x, y = shape["x"] * 96, shape["y"] * 96
            if scene["axis"] == "horizontal":
                assert scene["first"]["x"] + scene["first"]["r"] < scene["second"]["x"]
            else:
                assert scene["first"]["y"] + scene["first"]["r"] < scene["second"]["y"]
            pixel = img.getpixel((int(x), int(y)))
            want = COLOURS[shape["colour"]]
            assert max(abs(p - w) for p, w in zip(pixel, want, strict=True)) < 45, scene


def test_mirrored_pairs_share_a_split_and_swap_their_shapes(scenes):
    truth = _truth(scenes)
    split_of = {
        name: split
        for split in ("train", "dev", "test")
        for name in (scenes / f"Flickr_8k.{split}Images.txt").read_text().split()
    }
    mirrors = [s for s in truth if s["mirror_of"] is not None]
    assert len(mirrors) == 30
    for scene in mirrors:
        other = truth[scene["mirror_of"]]
        assert split_of[scene["image"]] == split_of[other["image"]]
        key = lambda s: (s["colour"], s["form"], s["size"])  # noqa: E731
        assert (key(scene["first"]), key(scene["second"])) == (
            key(other["second"]),
            key(other["first"]),
        )


def test_same_seed_same_files_and_2000_images_in_seconds(scenes, tmp_path):
    again = build_scenes(tmp_path / "again", images=60, seed=3, size=96)
    for name in ("Flickr8k.token.txt", "Flickr_8k.testImages.txt", "scenes.jsonl"):
        assert (again / name).read_text() == (scenes / name).read_text()
    one = "Flicker8k_Dataset/scene_00007.jpg"
    assert (again / one).read_bytes() == (scenes / one).read_bytes()
    start = time.perf_counter()
    build_scenes(tmp_path / "big", images=2000)
    assert time.perf_counter() - start < 15
    assert len((tmp_path / "big" / "Flickr_8k.testImages.txt").read_text().split()) == 200


def test_scenes_scan_as_flickr8k(scenes):
    scan = scan_dataset(scenes)
    assert scan.layout == "flickr8k" and len(scan.items) == 60 and not scan.warnings
    assert {i.split for i in scan.items} == {"train", "valid", "test"}
    assert len(scan.captions) == 300


@pytest.mark.parametrize(("kw", "match"), [({"images": 5}, "at least 10"), ({"size": 20}, "64")])
def test_bad_arguments_are_one_error(tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        build_scenes(tmp_path, **kw)
