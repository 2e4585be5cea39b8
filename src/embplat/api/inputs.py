"""Query images as the Python API accepts them, turned into what the use cases read.

Classify and search by image (``embplat.pipelines.query``) take a path or encoded bytes and
decode either with the same checks as ingest (pixel limits, aspect ratio, truncation), so
an in-memory image — bytes, a file object, a PIL image, a numpy array — is handed over as
bytes (:func:`query_images`) and its answer equals the CLI's for the same file. PIL images
and arrays are encoded as PNG (lossless). The use cases that read files only (zero-shot
labels, captions) get them in a private temporary folder (:func:`query_files`: mode 0700,
removed on exit).
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Union

from embplat.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

#: What the API accepts as one image.
ImageInput = Union[
    str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], "Image.Image", "np.ndarray"
]

#: Pillow modes PNG stores as they are; any other mode is converted to RGB first.
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"})
#: File suffix per Pillow format, for uploaded class images (ingest scans by suffix).
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp"}
SUFFIXES["TIFF"] = ".tif"
#: Class names an upload may create: no separators, no dot-dot, printable.
_CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}$")


def is_path(image: object) -> bool:
    """Whether ``image`` names a file (a str or path-like) rather than holding pixels."""
    return isinstance(image, str | os.PathLike)


def source_of(image: object, n: int) -> str:
    """How an answer names its query: the path, a file object's name, else ``<image n>``."""
    if is_path(image):
        return str(os.fspath(image))  # type: ignore[call-overload]
    name = getattr(image, "name", None)
    return os.path.basename(name) if isinstance(name, str) and name else f"<image {n}>"


def image_bytes(image: Any) -> bytes:
    """The encoded bytes of an in-memory image (bytes, file object, PIL image, array).

    Raises:
        DataError: an unsupported type, or an array that is not an (H, W[, 3|4]) uint8 image.
    """
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if hasattr(image, "read"):
        data = image.read()
        if not isinstance(data, bytes):
            raise DataError("a file object given as an image must be opened in binary mode ('rb')")
        return data
    return _png(_as_pil(image))


def query_images(images: Sequence[Any]) -> list[Path | bytes]:
    """What the query use cases read: a path as a ``Path``, anything else as encoded bytes.

    Raises:
        DataError: an unsupported type or array (see :func:`image_bytes`).
    """
    return [Path(image) if is_path(image) else image_bytes(image) for image in images]


@contextmanager
def query_files(images: Sequence[Any]) -> Iterator[list[Path]]:
    """One readable path per image, in order: paths as given, in-memory images written into
    a private temporary folder that is removed when the block ends."""
    folder: tempfile.TemporaryDirectory[str] | None = None
    try:
        paths = []
        for n, image in enumerate(images):
            if is_path(image):
                paths.append(Path(image))
                continue
            if folder is None:
                folder = tempfile.TemporaryDirectory(prefix="embplat-query-")
            path = Path(folder.name) / f"query-{n}"
            path.write_bytes(image_bytes(image))
            paths.append(path)
        yield paths
    finally:
        if folder is not None:
            folder.cleanup()


def save_uploads(folder: Path, images: Sequence[Any]) -> Path:
    """Write ``images`` into ``folder`` (created), each named by its content's hash with the
    suffix of its format, so ingest scans them; returns ``folder``.

    Raises:
        DataError: no image, or one Pillow cannot identify.
    """
    import hashlib

    if not images:
        raise DataError(f"no image given for class {folder.name!r}")
    folder.mkdir(parents=True, exist_ok=True)
    for n, image in enumerate(images):
        data = Path(image).read_bytes() if is_path(image) else image_bytes(image)
        suffix = suffix_of(data, source_of(image, n))
        (folder / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}").write_bytes(data)
    return folder


def check_class_name(name: str) -> str:
    """``name`` when it is safe as a folder name for uploaded images.

    Raises:
        DataError: it is empty, too long, or holds a path separator or other odd character.
    """
    if not _CLASS_NAME.match(name) or ".." in name:
        raise DataError(
            f"class name {name!r} is not allowed for uploads: use 1-64 letters, digits, "
            "spaces or _ . + - (starting with a letter or digit)"
        )
    return name


def suffix_of(data: bytes, label: str) -> str:
    """The file suffix of encoded image ``data`` from its header (``.jpg``, ``.png``...).

    Raises:
        DataError: Pillow cannot identify it as an image of a supported format.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{label}: not an image Pillow can read; send a JPEG or PNG") from exc
    if fmt not in SUFFIXES:
        raise DataError(f"{label}: {fmt or 'unknown'} images are not accepted; send a JPEG or PNG")
    return SUFFIXES[fmt]


def _as_pil(image: Any) -> Image.Image:
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    import numpy as np

    if isinstance(image, np.ndarray):
        shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))
        if image.dtype != np.uint8 or not shape_ok:
            raise DataError(
                f"a numpy image must be uint8 of shape (H, W), (H, W, 3) or (H, W, 4), got "
                f"{image.dtype} {image.shape}; convert it with (x * 255).astype('uint8')"
            )
        return Image.fromarray(image)
    raise DataError(
        f"cannot use a {type(image).__name__} as an image: give a path, bytes, a binary file "
        "object, a PIL image or a numpy array"
    )


def _png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    (img if img.mode in _PNG_MODES else img.convert("RGB")).save(buffer, format="PNG")
    return buffer.getvalue()
