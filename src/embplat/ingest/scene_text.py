"""Captions of a rendered scene: five paraphrases, each true of the image.

Most name the relation ("left of", "right of", "above", "below" and their variants), with
either shape as the subject; at most one per image names the shapes without their order
("beside", "and"), as people do. Size words appear only where the two sizes differ.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embplat.ingest.scenes import Scene, Shape

CAPTIONS_PER_IMAGE = 5

#: {a} is the shape on the left (or top), {b} the other one
_HORIZONTAL = (
    "{a} to the left of {b}",
    "{b} to the right of {a}",
    "{a} on the left and {b} on the right",
    "{b} on the right side of {a}",
    "{a} left of {b}",
    "{b} sits to the right of {a}",
    "on the left {a}, on the right {b}",
    "{a} is placed left of {b}",
    "there is {a} to the left of {b}",
    "{b} with {a} to its left",
)
_VERTICAL = (
    "{a} above {b}",
    "{b} below {a}",
    "{a} at the top and {b} at the bottom",
    "{b} underneath {a}",
    "{a} over {b}",
    "{b} beneath {a}",
    "at the top {a}, at the bottom {b}",
    "there is {a} above {b}",
    "{b} with {a} above it",
    "{a} is placed above {b}",
)
_UNORDERED = {"horizontal": "{x} beside {y}", "vertical": "{x} and {y}"}
_SYNONYMS = {"circle": ("circle", "circle", "disc"), "square": ("square", "square", "box")}


def scene_captions(scene: Scene, rng: random.Random) -> list[str]:
    """Five distinct captions of ``scene``, Flickr8k-style ("A red circle above a star .")."""
    templates = _HORIZONTAL if scene.axis == "horizontal" else _VERTICAL
    chosen = rng.sample(templates, CAPTIONS_PER_IMAGE)
    if rng.random() < 0.3:  # one caption without the order of the shapes
        chosen[-1] = "unordered"
    sized = scene.first.size != scene.second.size
    out: list[str] = []
    for template in chosen:
        with_size = sized and rng.random() < 0.5
        a, b = (_phrase(s, with_size, rng) for s in (scene.first, scene.second))
        if template == "unordered":
            x, y = (a, b) if rng.random() < 0.5 else (b, a)
            text = _UNORDERED[scene.axis].format(x=x, y=y)
            if scene.extra is not None:
                text = f"{x}, {y} and {_phrase(scene.extra, False, rng)}"
        else:
            text = template.format(a=a, b=b)
        out.append(_sentence(text))
    return out


def _phrase(shape: Shape, with_size: bool, rng: random.Random) -> str:
    """``a small red circle`` / ``an orange star``."""
    form = rng.choice(_SYNONYMS.get(shape.form, (shape.form,)))
    words = " ".join([*([shape.size] if with_size else []), shape.colour, form])
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _sentence(text: str) -> str:
    """Capitalised, ending in " ." as Flickr8k's captions do."""
    return f"{text[0].upper()}{text[1:]} ."
