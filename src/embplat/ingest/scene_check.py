"""Whether a sentence describes a rendered scene correctly: both shapes named with their
colour and form (and size, when a size is given), and their spatial relation stated the
right way round.

This reads the scene captions' grammar (``scene_text``), word order included, so it can
judge any caption a model generates in that language: "a red circle left of a blue star",
"a blue star to the right of a red circle" and "on the left a red circle, on the right a blue
star" all say the same; "a red circle beside a blue star" names no order and is not correct.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from embplat.ingest.scenes import COLOURS, FORMS, Scene, Shape

_FORM_WORDS = {"disc": "circle", "box": "square", **{f: f for f in FORMS}}
_MENTION = re.compile(rf"\b(?:(small|large) )?({'|'.join(COLOURS)}) ({'|'.join(_FORM_WORDS)})\b")
#: (words between the two mentions, or after the second) -> (axis, first shape is mention 1?)
_BETWEEN = (
    (r"\bleft of\b", "horizontal", True),
    (r"\bright (?:side )?of\b", "horizontal", False),
    (r"\bon the left and\b", "horizontal", True),
    (r"\bat the top and\b", "vertical", True),
    (r"\b(?:above|over)\b", "vertical", True),
    (r"\b(?:below|underneath|beneath)\b", "vertical", False),
)
_AFTER = (
    (r"\bto its left\b", "horizontal", False),
    (r"\babove it\b", "vertical", False),
)
_BEFORE = (
    (r"\bon the left\b", "horizontal", True),
    (r"\bat the top\b", "vertical", True),
)


@dataclass(frozen=True)
class Mention:
    """A shape named in a sentence: size (or None), colour, form; where it ends."""

    size: str | None
    colour: str
    form: str
    start: int
    end: int

    def names(self, shape: Shape) -> bool:
        """Whether this mention fits ``shape`` (a size, when given, must match too)."""
        same = (self.colour, self.form) == (shape.colour, shape.form)
        return same and (self.size is None or self.size == shape.size)


def mentions(sentence: str) -> list[Mention]:
    """The shapes a sentence names, in order."""
    return [
        Mention(m.group(1), m.group(2), _FORM_WORDS[m.group(3)], m.start(), m.end())
        for m in _MENTION.finditer(sentence.lower())
    ]


def stated_relation(sentence: str) -> tuple[Mention, Mention, str] | None:
    """(the left or top shape, the other one, axis) as the sentence states it; None when it
    names fewer or more than two shapes, or no order."""
    text = sentence.lower()
    found = mentions(text)
    if len(found) != 2:
        return None
    a, b = found
    for rules, span in (
        (_BETWEEN, text[a.end : b.start]),
        (_AFTER, text[b.end :]),
        (_BEFORE, text[: a.start]),
    ):
        for pattern, axis, first_is_a in rules:
            if re.search(pattern, span):
                return (a, b, axis) if first_is_a else (b, a, axis)
    return None


def caption_matches(sentence: str, scene: Scene) -> bool:
    """Whether ``sentence`` names both shapes of ``scene`` and their relation correctly."""
    stated = stated_relation(sentence)
    if stated is None:
        return False
    first, second, axis = stated
    return axis == scene.axis and first.names(scene.first) and second.names(scene.second)


def read_scenes(path: Path) -> dict[str, Scene]:
    """Image file name -> its scene, from a ``scenes.jsonl`` written by ``build_scenes``."""
    out: dict[str, Scene] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        extra = row.get("extra")
        out[row["image"]] = Scene(
            first=Shape(**row["first"]),
            second=Shape(**row["second"]),
            axis=row["axis"],
            extra=Shape(**extra) if extra else None,
            background=tuple(row["background"]),  # type: ignore[arg-type]
            mirror_of=row.get("mirror_of"),
        )
    return out
