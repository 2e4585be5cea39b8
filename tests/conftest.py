"""Shared fixtures: a tiny AwA2-layout Fashion-MNIST tree and a set of bad or unusual images.

Image builders are plain functions here (tests/ is not a package, so a helper module would
need a ``pythonpath`` setting); tests reach them through the ``imagefactory`` fixture rather
than importing conftest. The expensive bytes are cached once per session.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import uuid
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from embplat.ingest.fashion_mnist import DEFAULT_FMNIST_DIR, build_fashion_mnist
from embplat.jobs.runner import EMBED_BATCH, TRAIN, JobRunner, Submitted, Task

FMNIST_FILES = [
    DEFAULT_FMNIST_DIR / f"{prefix}-{kind}-ubyte.gz"
    for prefix in ("train", "t10k")
    for kind in ("images-idx3", "labels-idx1")
]
BOMB_SIDE = 20_000


def require_fmnist() -> None:
    """Skip the calling test when the Debian Fashion-MNIST files are not installed."""
    missing = [str(path) for path in FMNIST_FILES if not path.is_file()]
    if missing:
        pytest.skip(
            f"Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): {missing}"
        )


@functools.cache
def photo(name: str, width: int, height: int) -> Image.Image:
    """A real photo from ``skimage.data`` (e.g. "chelsea"), resized to width x height, RGB."""
    import skimage.data

    array = getattr(skimage.data, name)()
    return Image.fromarray(array).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    """Encode ``img`` in memory with Pillow."""
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo_bmp(name: str, offset: int, side: int = 24) -> bytes:
    """A side x side crop of a 48x48 photo as an uncompressed BMP: same side, same file size."""
    crop = photo(name, 48, 48).crop((offset, offset, offset + side, offset + side))
    return encode(crop, "BMP")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


@functools.lru_cache(maxsize=1)
def bomb_png() -> bytes:
    """A valid all-black 20000x20000 1-bit PNG: 400 Mpx that compresses to ~50 KB."""
    row = 1 + BOMB_SIDE // 8  # filter byte + packed bits
    header = struct.pack(">IIBBBBB", BOMB_SIDE, BOMB_SIDE, 1, 0, 0, 0, 0)
    pixels = zlib.compress(bytes(row * BOMB_SIDE), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def palette_with_transparency() -> Image.Image:
    """A quantised photo (P mode) whose left half uses a palette entry marked transparent."""
    img = photo("coffee", 64, 40).quantize(colors=32)
    pixels = np.asarray(img).copy()
    pixels[:, :32] = 31  # index 31 becomes the transparent entry
    out = Image.fromarray(pixels, mode="P")
    out.putpalette(img.getpalette())
    out.info["transparency"] = 31
    return out


def rgba_with_hole() -> Image.Image:
    """The astronaut photo with a fully transparent top half and opaque bottom half."""
    rgba = photo("astronaut", 48, 48).convert("RGBA")
    alpha = np.full((48, 48), 255, dtype=np.uint8)
    alpha[:24] = 0
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def gray16() -> Image.Image:
    """A 16-bit ("I;16") greyscale photo spanning most of the 16-bit range."""
    grey = np.asarray(photo("astronaut", 48, 48).convert("L"), dtype=np.uint16)
    return Image.fromarray(grey * 257)


def exif_rotated_jpeg() -> bytes:
    """A 60x40 stored JPEG whose EXIF says "rotate 90° clockwise to display" (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(photo("chelsea", 60, 40), "JPEG", quality=95, exif=exif)


def bad_image_bytes() -> dict[str, tuple[str, bytes]]:
    """name -> (file name, bytes) for every bad or unusual image the fixture writes."""
    good = encode(photo("coffee", 64, 43), "JPEG", quality=90)
    cmyk = photo("chelsea", 48, 32).convert("CMYK")
    return {
        "good_jpeg": ("coffee.jpg", good),
        "truncated_jpeg": ("truncated.jpg", good[: len(good) // 2]),
        "zero_byte": ("empty.jpg", b""),
        "text_as_jpg": ("notes.jpg", b"this is a text file, not a JPEG\n"),
        "bomb_png": ("bomb.png", bomb_png()),
        "cmyk_jpeg": ("cmyk.jpg", encode(cmyk, "JPEG", quality=95)),
        "gray16_png": ("gray16.png", encode(gray16(), "PNG")),
        "palette_transparent_png": ("palette.png", encode(palette_with_transparency(), "PNG")),
        "rgba_png": ("rgba.png", encode(rgba_with_hole(), "PNG")),
        "la_png": ("la.png", encode(rgba_with_hole().convert("LA"), "PNG")),
        "gray_png": ("gray.png", encode(photo("astronaut", 48, 48).convert("L"), "PNG")),
        "bilevel_png": ("bilevel.png", encode(photo("astronaut", 48, 48).convert("1"), "PNG")),
        "exif_rotated_jpeg": ("rotated.jpg", exif_rotated_jpeg()),
        "unicode_name": ("zèbre_ü.jpg", good),
        "duplicate_a": ("copy_a.jpg", good),
        "duplicate_b": ("copy_b.jpg", good),
    }


@pytest.fixture
def bad_images(tmp_path: Path) -> dict[str, Path]:
    """Write the bad/unusual images of :func:`bad_image_bytes` into ``tmp_path/images``."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths: dict[str, Path] = {}
    for name, (file_name, data) in bad_image_bytes().items():
        paths[name] = folder / file_name
        paths[name].write_bytes(data)
    return paths


@pytest.fixture
def bmp_tree(tmp_path: Path) -> Path:
    """A class-per-folder tree of 24x24 BMP photo crops: ``cats/cats_{0,1,2}.bmp`` (chelsea)
    and ``coffee/coffee_{0,1,2}.bmp``, every file the same size."""
    root = tmp_path / "bmp"
    for folder, name in (("cats", "chelsea"), ("coffee", "coffee")):
        (root / folder).mkdir(parents=True)
        for i, offset in enumerate((0, 12, 24)):
            (root / folder / f"{folder}_{i}.bmp").write_bytes(photo_bmp(name, offset))
    return root


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny AwA2-layout Fashion-MNIST tree (12 per class, unseen: sandal, shirt).

    Returns:
        The ``JPEGImages`` folder; classes.txt and the split files lie in its parent.
    """
    require_fmnist()
    out = tmp_path_factory.mktemp("fmnist")
    return build_fashion_mnist(out, per_class=12, unseen=("sandal", "shirt"))


@pytest.fixture(scope="session")
def imagefactory() -> SimpleNamespace:
    """The builders above, for tests that need the originals to compare against.

    Attributes: ``photo(name, width, height)``, ``encode(img, fmt, **params)``, ``gray16()``,
    ``photo_bmp(name, offset, side=24)``, ``bomb_side``.
    """
    return SimpleNamespace(
        photo=photo, encode=encode, gray16=gray16, photo_bmp=photo_bmp, bomb_side=BOMB_SIDE
    )


@pytest.fixture(scope="session")
def fmnist_queries(tmp_path_factory, fmnist_root):
    """Fashion-MNIST *test-set* images, never ingested: 3 per class."""
    out = tmp_path_factory.mktemp("queries")
    return build_fashion_mnist(out, per_class=3, source="test")


class RecordingRunner(JobRunner):
    """Stands in for the Celery job runner (server mode without a broker): records the
    tasks submitted (``tasks``) so a test can run them as a worker would."""

    in_process = False

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # set by `attach`
        self.tasks: list[Task] = []
        self.submits: list[list[Task]] = []

    def attach(self, ctx: Any) -> RecordingRunner:
        """Become ``ctx``'s runner (jobs recorded in its catalog)."""
        self.sessions = ctx.sessions
        ctx.runner = self
        return self

    def submit(self, tasks):
        self.tasks.extend(tasks)
        self.submits.append(list(tasks))
        first = len(self.tasks) - len(tasks) + 1
        return Submitted(queued=[f"task-{first + i}" for i in range(len(tasks))])

    @property
    def sent(self) -> list[tuple[int, list[int]]]:
        """(job id, batch seqs) of each submit of embedding batches."""
        return [
            (batch[0].args[0], [t.args[1] for t in batch])
            for batch in self.submits
            if batch and batch[0].name == EMBED_BATCH
        ]

    @property
    def trainings(self) -> list[tuple[str, dict[str, Any]]]:
        """(recipe, config) of each training submitted."""
        return [t.args for t in self.tasks if t.name == TRAIN]


@pytest.fixture
def workers() -> RecordingRunner:
    """A fresh :class:`RecordingRunner`; ``workers.attach(ctx)`` puts ``ctx`` in server mode."""
    return RecordingRunner()


# --- services: PostgreSQL and Redis on loopback (scripts/services.sh starts them) -----------

PG_ADMIN = os.environ.get(
    "EMBPLAT_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("EMBPLAT_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _pg_admin():
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        engine.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
    return engine


@pytest.fixture
def pg_database():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import text

    admin = _pg_admin()
    name = f"embplat_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def redis_url():
    """A Redis database emptied before and after the test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


# --- Qdrant: a real server when EMBPLAT_TEST_QDRANT_URL is set (CI), else local mode -------

QDRANT_URL = os.environ.get("EMBPLAT_TEST_QDRANT_URL") or None


class QdrantTarget:
    """Where one test's Qdrant lives: the server at ``EMBPLAT_TEST_QDRANT_URL`` (collections
    the test creates are deleted afterwards) or a local-mode folder under ``tmp_path``."""

    def __init__(self, tmp_path: Path) -> None:
        self.url: str | None = QDRANT_URL
        self.path: Path | None = None if self.url else tmp_path / "qdrant"
        self.tag = uuid.uuid4().hex[:8]
        self._before: set[str] = set()

    @property
    def env(self) -> dict[str, str]:
        """The EMBPLAT_QDRANT_* variables a platform process needs for this target."""
        if self.url:
            return {"EMBPLAT_QDRANT_URL": self.url}
        return {"EMBPLAT_QDRANT_PATH": str(self.path)}

    def name(self, base: str) -> str:
        """A collection name unique to this test (the server is shared by all tests)."""
        return f"{base}_{self.tag}"

    def client(self):
        """A new ``QdrantClient`` on this target (close it; local mode takes one at a time)."""
        from qdrant_client import QdrantClient

        return QdrantClient(url=self.url) if self.url else QdrantClient(path=str(self.path))

    def _names(self) -> set[str]:
        client = self.client()
        try:
            return {c.name for c in client.get_collections().collections}
        finally:
            client.close()

    def start(self) -> None:
        if self.url:
            self._before = self._names()

    def cleanup(self) -> None:
        if not self.url:
            return
        client = self.client()
        try:
            for alias in client.get_aliases().aliases:
                if alias.collection_name not in self._before:
                    client.delete_alias(alias.alias_name)
            for name in self._names() - self._before:
                client.delete_collection(name)
        finally:
            client.close()


@pytest.fixture
def qdrant(tmp_path: Path):
    """A :class:`QdrantTarget`: the CI's Qdrant server when ``EMBPLAT_TEST_QDRANT_URL`` is
    set (reachable, or the test is skipped), else qdrant-client's local mode."""
    target = QdrantTarget(tmp_path)
    if target.url:
        try:
            target.start()
        except Exception as exc:
            pytest.skip(f"Qdrant not reachable at {target.url}: {exc}")
    yield target
    target.cleanup()
