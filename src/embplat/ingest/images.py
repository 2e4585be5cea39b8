"""Image validation and loading: every file is fully decoded once, bad ones become ``DataError``.

Pillow is strict here on purpose: truncated files raise instead of being padded with grey
(``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is kept ``False``), and the pixel count is checked
from the header before any pixel data is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from embplat.errors import DataError

log = logging.getLogger(__name__)

#: What Pillow raises on corrupt input (its own fuzz tests accept this set).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
#: EXIF orientations that rotate by 90 or 270 degrees, i.e. swap width and height.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
#: Widest accepted aspect ratio (long side / short side). The encoders scale the short side to
#: their input side and centre-crop a square, so a 50:1 image already loses 98% of its content
#: to the crop (the widest real panoramas are around 12:1), and the scaling multiplies the
#: pixel count by the ratio: a 375-byte 100000x1 PNG becomes 22.4 Gpx at 224 px. With the
#: input side capped at 1024 (``EMBPLAT_EMBED_IMAGE_SIZE``), 50:1 bounds the scaled image to
#: 1024 x 51200 = 52 Mpx, whatever the encoder.
MAX_ASPECT = 50.0


@dataclass(frozen=True)
class ImageInfo:
    """What validation learned about one image file.

    Attributes:
        sha256: Hex SHA-256 of the file's bytes (identical files share it).
        width: Width in pixels after EXIF orientation is applied.
        height: Height in pixels after EXIF orientation is applied.
        mode: Pillow mode of the decoded file before any conversion (``"RGB"``, ``"I;16"``...).
        format: Pillow format name (``"JPEG"``, ``"PNG"``...).
        nbytes: File size in bytes.
    """

    sha256: str
    width: int
    height: int
    mode: str
    format: str
    nbytes: int


def inspect_image(path: Path, *, max_pixels: int, max_aspect: float = MAX_ASPECT) -> ImageInfo:
    """Read, hash and fully decode one image file.

    Args:
        path: The image file.
        max_pixels: Largest accepted ``width * height``, checked from the header before decoding.
        max_aspect: Largest accepted long side / short side, checked from the header too, so
            an image the encoder's resize would blow up is refused at registration.

    Returns:
        The file's :class:`ImageInfo`.

    Raises:
        DataError: The file is missing, empty, not an image, truncated/corrupt, too large, or
            too elongated.
    """
    path = Path(path)
    data = _read_bytes(path)
    limits = _Limits(max_pixels, max_aspect)
    with _decoded(data, str(path), limits) as img:
        width, height = img.size
        if _orientation(img) in _SWAPPING_ORIENTATIONS:
            width, height = height, width
        return ImageInfo(
            sha256=hashlib.sha256(data).hexdigest(),
            width=width,
            height=height,
            mode=img.mode,
            format=img.format or "unknown",
            nbytes=len(data),
        )


def load_rgb(
    path_or_bytes: Path | str | bytes,
    *,
    max_pixels: int,
    max_aspect: float = MAX_ASPECT,
    resize_side: int | None = None,
    draft_side: int | None = None,
) -> Image.Image:
    """Decode an image, apply its EXIF orientation and convert it to 8-bit RGB.

    Args:
        path_or_bytes: A file path, or the encoded file contents.
        max_pixels: Largest accepted ``width * height``, checked before decoding; with
            ``resize_side`` also the largest accepted size after the encoder's resize.
        max_aspect: Largest accepted long side / short side, checked before decoding.
        resize_side: The side the encoder scales the short side to (its ``image_size``).
        draft_side: The side the caller will scale the short side down to: a JPEG at least
            twice as large on both sides is decoded at 1/2, 1/4 or 1/8 scale by libjpeg
            (``Image.draft``), never below this side. The size checks use the full header size.

    Returns:
        A loaded ``"RGB"`` image of shape (H, W, 3) uint8 once passed to ``np.asarray``.

    Raises:
        DataError: As :func:`inspect_image`, or the mode cannot be converted to RGB.
    """
    if isinstance(path_or_bytes, bytes | bytearray):
        data, label = bytes(path_or_bytes), "<image bytes>"
    else:
        data, label = _read_bytes(Path(path_or_bytes)), str(path_or_bytes)
    limits = _Limits(max_pixels, max_aspect, resize_side)
    with _decoded(data, label, limits, draft_side=draft_side) as img:
        try:
            upright = ImageOps.exif_transpose(img)
            return to_rgb(upright)
        except _DECODE_ERRORS as exc:
            raise DataError(
                f"{label}: cannot orient or convert mode {img.mode!r} to RGB ({exc}); "
                "re-export it as RGB JPEG/PNG"
            ) from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image of any Pillow mode to 8-bit RGB.

    Transparent pixels are composited on white; 16-bit and 32-bit grey is rescaled to
    0..255 rather than clipped (Pillow's own ``convert("L")`` clips ``I;16`` at 255).

    Args:
        img: A loaded Pillow image.

    Returns:
        An ``"RGB"`` image of the same size.
    """
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in {"I", "F"}:
        return Image.fromarray(_wide_grey_to_uint8(img)).convert("RGB")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    # CMYK (Adobe-inverted JPEGs are un-inverted by Pillow's decoder), L, 1, P, YCbCr, HSV.
    return img.convert("RGB")


def _wide_grey_to_uint8(img: Image.Image) -> np.ndarray:
    """Map 16/32-bit grey (or float) pixels to uint8, shape (H, W).

    16-bit modes, and ``"I"`` images whose values fit in 0..65535 (how Pillow used to open
    16-bit PNGs), are divided by 257 so 65535 maps to 255. Anything else is min-max scaled.
    """
    values = np.asarray(img).astype(np.float64)
    if img.mode in _SIXTEEN_BIT_MODES or (
        img.mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535
    ):
        scaled = values / 257.0
    else:
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
        span = high - low
        scaled = (values - low) * (255.0 / span) if span > 0 else np.zeros_like(values)
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _read_bytes(path: Path) -> bytes:
    """Read a whole file, turning OS errors into ``DataError`` that name the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found; check the path or re-scan the folder") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a folder, not an image file") from exc
    except PermissionError as exc:
        raise DataError(f"{path}: unreadable (permission denied); fix its permissions") from exc
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc})") from exc
    if not data:
        raise DataError(f"{path}: file is empty (0 bytes); re-copy it or remove it")
    return data


def resized_pixels(width: int, height: int, side: int) -> int:
    """Pixels of a ``width`` x ``height`` image once its short side is scaled to ``side``
    (what ``torchvision.transforms.Resize(side)`` allocates before the centre crop)."""
    short, long = sorted((max(width, 1), max(height, 1)))
    return side * int(side * long / short)


@dataclass(frozen=True)
class _Limits:
    """What an image header must satisfy before any pixel is decoded."""

    max_pixels: int
    max_aspect: float = MAX_ASPECT
    resize_side: int | None = None

    def check(self, label: str, width: int, height: int) -> None:
        """Raise DataError when the size, the aspect ratio or the resized size is too large."""
        if width * height > self.max_pixels:
            raise DataError(
                f"{label}: {width}x{height} = {width * height} pixels exceeds the limit of "
                f"{self.max_pixels}; downscale the image or raise max_pixels"
            )
        short, long = sorted((width, height))
        if short < 1 or long > self.max_aspect * short:
            raise DataError(
                f"{label}: {width}x{height} has an aspect ratio of {long / max(short, 1):.0f}:1, "
                f"over the limit of {self.max_aspect:g}:1 (the encoder would crop away nearly "
                "all of it); crop it into tiles or remove it"
            )
        scaled = resized_pixels(width, height, self.resize_side) if self.resize_side else 0
        if scaled > self.max_pixels:
            raise DataError(
                f"{label}: {width}x{height} scaled to a {self.resize_side}-pixel short side is "
                f"{scaled} pixels, over the limit of {self.max_pixels}; crop or downscale it"
            )


@contextmanager
def _decoded(
    data: bytes, label: str, limits: _Limits, *, draft_side: int | None = None
) -> Iterator[Image.Image]:
    """Open ``data`` with Pillow, check its size, fully decode it, and close it afterwards."""
    _keep_truncation_strict()
    img = _open_and_load(data, label, limits, draft_side)
    try:
        yield img
    finally:
        img.close()


def _open_and_load(
    data: bytes, label: str, limits: _Limits, draft_side: int | None = None
) -> Image.Image:
    """Open from bytes, reject oversized or elongated headers, then decode every pixel
    (of a JPEG much larger than ``draft_side``: at a reduced DCT scale)."""
    img = _open(data, label)
    try:
        limits.check(label, *img.size)
        if draft_side and img.format == "JPEG" and min(img.size) >= 2 * draft_side:
            # libjpeg scales by 1/2, 1/4 or 1/8 while decoding, keeping both sides >=
            # draft_side; the mode is left alone (CMYK and L still convert in to_rgb).
            img.draft(img.mode, (draft_side, draft_side))
        img.load()
    except _BOMB_ERRORS as exc:
        img.close()
        raise _bomb_error(label, exc) from exc
    except _DECODE_ERRORS as exc:
        img.close()
        raise DataError(
            f"{label}: truncated or corrupt {img.format or 'image'} ({exc}); "
            "re-download or re-export it, or remove it"
        ) from exc
    except DataError:
        img.close()
        raise
    return img


def gpu_decodable(
    data: bytes,
    label: str,
    *,
    max_pixels: int,
    max_aspect: float = MAX_ASPECT,
    resize_side: int | None = None,
) -> bool:
    """Whether a GPU JPEG decoder (nvJPEG) yields what :func:`load_rgb` would: a baseline
    RGB or grey JPEG without EXIF rotation. Reads the header only.

    Raises:
        DataError: As :func:`load_rgb` for the header: not an image, too large (also after
            the resize to ``resize_side``), too elongated.
    """
    _keep_truncation_strict()
    img = _open(data, label)
    try:
        _Limits(max_pixels, max_aspect, resize_side).check(label, *img.size)
        return (
            img.format == "JPEG"
            and img.mode in {"RGB", "L"}
            and not img.info.get("progressive")
            and _orientation(img) == 1
        )
    finally:
        img.close()


def _open(data: bytes, label: str) -> Image.Image:
    """Open ``data`` lazily (header only), errors as ``DataError`` naming ``label``."""
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise DataError(
            f"{label}: not an image Pillow can read (wrong extension or unsupported format); "
            "remove it or convert it to JPEG/PNG"
        ) from exc
    except _BOMB_ERRORS as exc:
        raise _bomb_error(label, exc) from exc
    except _DECODE_ERRORS as exc:
        raise DataError(
            f"{label}: truncated or corrupt image header ({exc}); re-download or re-export it"
        ) from exc
    return img


def _bomb_error(label: str, exc: BaseException) -> DataError:
    """The ``DataError`` for an image Pillow itself refuses as a decompression bomb."""
    return DataError(
        f"{label}: image too large, refused as a possible decompression bomb ({exc}); "
        "downscale it before ingesting"
    )


def _orientation(img: Image.Image) -> int:
    """The EXIF (or XMP) orientation tag, 1 when absent or unreadable."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:
        log.debug("unreadable EXIF block; assuming upright orientation")
        return 1
    return value if isinstance(value, int) else 1


def _keep_truncation_strict() -> None:
    """Undo a global ``LOAD_TRUNCATED_IMAGES = True`` set elsewhere, which hides corrupt files."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES was set to True by another module; "
            "resetting it to False so truncated images are reported instead of grey-padded"
        )
        ImageFile.LOAD_TRUNCATED_IMAGES = False
