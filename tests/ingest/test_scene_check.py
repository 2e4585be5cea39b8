"""The scene-caption checker against the captions the scenes generator writes."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from embplat.ingest.scene_check import caption_matches, mentions, read_scenes, stated_relation
from embplat.ingest.scene_text import scene_captions
from embplat.ingest.scenes import build_scenes, make_scenes


def _swapped(scene):
    return replace(scene, first=scene.second, second=scene.first)


def test_every_ordered_caption_of_a_scene_is_correct_and_wrong_for_its_mirror():
    rng = random.Random(3)
    ordered = unordered = 0
    for scene in make_scenes(rng, 200):
        for caption in scene_captions(scene, rng):
            if stated_relation(caption) is None:  # "beside"/"and": no order named
                unordered += 1
                assert " beside " in caption or " and " in caption, caption
                assert not caption_matches(caption, scene)
                continue
            ordered += 1
            assert caption_matches(caption, scene), caption
            assert not caption_matches(caption, _swapped(scene)), caption
    assert ordered > 800 and unordered > 20


def test_wrong_colour_form_size_or_axis_is_not_correct():
    scene = make_scenes(random.Random(0), 1)[0]
    a, b = scene.first, scene.second
    good = f"a {a.colour} {a.form} left of a {b.colour} {b.form} ."
    horizontal = replace(scene, axis="horizontal")
    assert caption_matches(good, horizontal)
    assert not caption_matches(good, replace(scene, axis="vertical"))
    other = next(c for c in ("red", "green", "blue") if c not in (a.colour, b.colour))
    assert not caption_matches(good.replace(f"a {a.colour}", f"a {other}", 1), horizontal)
    wrong_size = "large" if a.size == "small" else "small"
    sized = f"a {wrong_size} {a.colour} {a.form} left of a {b.colour} {b.form} ."
    assert not caption_matches(sized, horizontal)
    assert not caption_matches(f"a {a.colour} {a.form} .", horizontal)  # one shape only


@pytest.mark.parametrize(
    ("sentence", "first"),
    [
        ("a blue star with a red disc to its left .", "circle"),
        ("on the left a red circle, on the right a blue star .", "circle"),
        ("a blue star sits to the right of a red circle .", "circle"),
        ("a red box on the left and a blue star on the right", "square"),
    ],
)
def test_paraphrases_and_synonyms(sentence, first):
    stated = stated_relation(sentence)
    assert stated is not None and stated[0].form == first and stated[2] == "horizontal"
    assert [m.form for m in mentions("a red disc and a green box")] == ["circle", "square"]


def test_read_scenes_round_trips_the_ground_truth(tmp_path):
    out = build_scenes(tmp_path / "scenes", images=10, seed=1, size=64)
    scenes = read_scenes(out / "scenes.jsonl")
    assert len(scenes) == 10
    one, mirror = scenes["scene_00000.jpg"], scenes["scene_00001.jpg"]
    assert mirror.mirror_of == 0 and one.axis == mirror.axis
    assert (mirror.first.colour, mirror.first.form) == (one.second.colour, one.second.form)
