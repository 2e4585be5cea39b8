"""A seeded, captioned set of compositional scenes: coloured shapes in spatial relations,
written in the Flickr8k file layout — the offline stand-in for Flickr8k.

Each image shows two shapes (each a colour, a form and a size), one left of or above the
other, sometimes with a small third shape; five paraphrased captions describe it, every one
true of the image. Scenes come in mirrored pairs (the same two shapes, their order swapped),
kept in the same split, so "left of" against "right of" is what tells the pair apart: a
model that loses spatial relations ranks each image's mirror as high as the image itself.

Layout written (``platform ingest OUT`` recognises it)::

    OUT/Flicker8k_Dataset/scene_00000.jpg ...
    OUT/Flickr8k.token.txt              scene_00000.jpg#0<TAB>A red circle left of a blue star .
    OUT/Flickr_8k.{train,dev,test}Images.txt
    OUT/scenes.jsonl                    the ground truth of each image (shapes, relation)
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from embplat.errors import ConfigError, DataError
from embplat.ingest.captioned import FLICKR8K_IMAGES, FLICKR8K_TOKENS
from embplat.ingest.captions import FLICKR8K_SPLIT_FILES
from embplat.ingest.scene_text import scene_captions

log = logging.getLogger(__name__)

COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 150, 60),
    "blue": (45, 80, 210),
    "yellow": (235, 200, 35),
    "purple": (135, 60, 175),
    "orange": (240, 130, 30),
}
FORMS = ("circle", "square", "triangle", "star")
_BACKGROUNDS = ((250, 250, 250), (228, 228, 228), (240, 232, 214), (222, 236, 244))
#: shape radius as a fraction of the image side, by size word
_RADIUS = {"small": (0.09, 0.12), "large": (0.16, 0.2)}
#: the third shape of a scene, when there is one, is small and this often present
_EXTRA_RATE = 0.35
TEST_FRACTION = VALID_FRACTION = 0.1


@dataclass(frozen=True)
class Shape:
    """One drawn shape; x, y, r are fractions of the image side (centre and radius)."""

    colour: str
    form: str
    size: str
    x: float
    y: float
    r: float


@dataclass(frozen=True)
class Scene:
    """Two shapes, ``first`` left of (``axis="horizontal"``) or above (``"vertical"``)
    ``second``, an optional third shape, a background, and the scene it mirrors."""

    first: Shape
    second: Shape
    axis: str
    extra: Shape | None
    background: tuple[int, int, int]
    mirror_of: int | None = None


def build_scenes(out: Path, *, images: int = 2000, seed: int = 0, size: int = 128) -> Path:
    """Render ``images`` scenes with five captions each into ``out`` (Flickr8k layout).

    The same arguments write the same files. A tenth of the images (whole mirrored pairs)
    go to the test split, a tenth to dev, the rest to train.

    Returns:
        ``out``.

    Raises:
        ConfigError: fewer than 10 images, or a side outside 64..1024 pixels.
        DataError: ``out`` is a file.
    """
    if images < 10:
        raise ConfigError(f"--images {images}: need at least 10 (train, dev and test splits)")
    if not 64 <= size <= 1024:
        raise ConfigError(f"--size {size}: choose a side between 64 and 1024 pixels")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: is a file; pass a folder for the scenes")
    folder = out / FLICKR8K_IMAGES[0]
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    scenes = make_scenes(rng, images)
    names = [f"scene_{i:05d}.jpg" for i in range(len(scenes))]
    tokens, truth = [], []
    for i, (name, scene) in enumerate(zip(names, scenes, strict=True)):
        draw_scene(scene, size, rng).save(folder / name, quality=92)
        for n, caption in enumerate(scene_captions(scene, rng)):
            tokens.append(f"{name}#{n}\t{caption}\n")
        truth.append(json.dumps({"image": name, "index": i, **asdict(scene)}) + "\n")
    (out / FLICKR8K_TOKENS).write_text("".join(tokens), encoding="utf-8")
    (out / "scenes.jsonl").write_text("".join(truth), encoding="utf-8")
    for split, members in assign_splits(scenes, rng).items():
        listing = "".join(f"{names[i]}\n" for i in members)
        (out / FLICKR8K_SPLIT_FILES[split]).write_text(listing, encoding="utf-8")
    log.info("wrote %d scenes (%d px) to %s", len(scenes), size, out)
    return out


def make_scenes(rng: random.Random, count: int) -> list[Scene]:
    """``count`` scenes in mirrored pairs: scene 2k+1 holds scene 2k's shapes swapped."""
    scenes: list[Scene] = []
    while len(scenes) < count:
        first, second = _two_objects(rng)
        axis = rng.choice(("horizontal", "vertical"))
        scenes.append(_place(rng, first, second, axis))
        if len(scenes) < count:
            mirror = _place(rng, second, first, axis)
            scenes.append(replace(mirror, mirror_of=len(scenes) - 1))
    return scenes


def _two_objects(rng: random.Random) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """Two (colour, form, size) triples differing in colour or form (captions name them
    unambiguously)."""
    while True:
        a = (rng.choice(list(COLOURS)), rng.choice(FORMS), rng.choice(("small", "large")))
        b = (rng.choice(list(COLOURS)), rng.choice(FORMS), rng.choice(("small", "large")))
        if a[:2] != b[:2]:
            return a, b


def _place(
    rng: random.Random, first: tuple[str, str, str], second: tuple[str, str, str], axis: str
) -> Scene:
    """Positions with ``first`` wholly left of (or above) ``second``, their offset across
    the axis small enough that the relation is plain; maybe a small third shape."""
    r1, r2 = (rng.uniform(*_RADIUS[obj[2]]) for obj in (first, second))
    along1 = rng.uniform(r1 + 0.02, 0.49 - r1)
    along2 = rng.uniform(0.51 + r2, 0.98 - r2)
    across1 = rng.uniform(max(r1, r2) + 0.02, 0.98 - max(r1, r2))
    across2 = min(max(across1 + rng.uniform(-0.2, 0.2), r2 + 0.02), 0.98 - r2)
    if axis == "horizontal":
        a, b = Shape(*first, along1, across1, r1), Shape(*second, along2, across2, r2)
    else:
        a, b = Shape(*first, across1, along1, r1), Shape(*second, across2, along2, r2)
    extra = _extra(rng, a, b) if rng.random() < _EXTRA_RATE else None
    return Scene(a, b, axis, extra, rng.choice(_BACKGROUNDS))


def _extra(rng: random.Random, a: Shape, b: Shape) -> Shape | None:
    """A small shape unlike ``a`` and ``b``, overlapping neither (None when none fits)."""
    for _ in range(30):
        colour, form = rng.choice(list(COLOURS)), rng.choice(FORMS)
        if (colour, form) in {(a.colour, a.form), (b.colour, b.form)}:
            continue
        r = rng.uniform(*_RADIUS["small"])
        x, y = rng.uniform(r + 0.02, 0.98 - r), rng.uniform(r + 0.02, 0.98 - r)
        if all(math.hypot(x - s.x, y - s.y) > r + s.r + 0.03 for s in (a, b)):
            return Shape(colour, form, "small", x, y, r)
    return None


def draw_scene(scene: Scene, size: int, rng: random.Random):  # type: ignore[no-untyped-def]
    """The scene as a ``size`` x ``size`` RGB PIL image (colours jittered a little)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), scene.background)
    draw = ImageDraw.Draw(img)
    for shape in (scene.first, scene.second, scene.extra):
        if shape is None:
            continue
        fill = tuple(min(255, max(0, c + rng.randint(-15, 15))) for c in COLOURS[shape.colour])
        _draw_shape(draw, shape, size, fill)
    return img


def _draw_shape(draw, shape: Shape, size: int, fill: tuple[int, ...]) -> None:  # type: ignore[no-untyped-def]
    x, y, r = shape.x * size, shape.y * size, shape.r * size
    if shape.form == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    elif shape.form == "square":
        h = r * 0.88  # about the area of the circle of radius r
        draw.rectangle((x - h, y - h, x + h, y + h), fill=fill)
    elif shape.form == "triangle":
        points = [(x + r * math.cos(a), y - r * math.sin(a)) for a in _angles(3, math.pi / 2)]
        draw.polygon(points, fill=fill)
    else:  # a five-pointed star, alternating outer and inner points
        angles = _angles(10, math.pi / 2)
        radii = [r if i % 2 == 0 else r * 0.45 for i in range(10)]
        points = [
            (x + q * math.cos(a), y - q * math.sin(a)) for q, a in zip(radii, angles, strict=True)
        ]
        draw.polygon(points, fill=fill)


def _angles(n: int, start: float) -> list[float]:
    return [start + 2 * math.pi * i / n for i in range(n)]


def assign_splits(scenes: list[Scene], rng: random.Random) -> dict[str, list[int]]:
    """Split -> image indices: whole mirrored pairs in a seeded order fill test, then
    valid (Flickr8k's dev), then train."""
    blocks: list[list[int]] = []
    for i, scene in enumerate(scenes):
        if scene.mirror_of is not None and blocks and blocks[-1] == [scene.mirror_of]:
            blocks[-1].append(i)
        else:
            blocks.append([i])
    rng.shuffle(blocks)
    wanted = {
        "test": round(len(scenes) * TEST_FRACTION),
        "valid": round(len(scenes) * VALID_FRACTION),
    }
    out: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for block in blocks:
        split = next((s for s in ("test", "valid") if len(out[s]) < wanted[s]), "train")
        out[split].extend(block)
    return {split: sorted(members) for split, members in out.items()}
