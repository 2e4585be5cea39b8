"""Query images from a request: multipart uploads or base64 in JSON, checked before decoding.

Each image is refused with a 4xx JSON error when it is over the byte limit (413), or when
its header is not an image Pillow reads or declares more pixels than allowed — a
decompression bomb is refused from its header, before any pixel is decoded (422).
Nothing in a request names a file on the server: images arrive as bytes only.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile

#: Multipart field names that carry images.
IMAGE_FIELDS = ("image", "images", "file")

#: OpenAPI description of the image request bodies (the routes parse them by hand so the
#: limits apply before anything is spooled).
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {
                            "type": "array",
                            "items": {"type": "string", "format": "byte"},
                            "description": "base64-encoded image files",
                        },
                        "names": {"type": "array", "items": {"type": "string"}},
                    },
                }
            },
        }
    }
}


@dataclass(frozen=True)
class Limits:
    """What one request may send."""

    max_bytes: int
    max_images: int
    max_pixels: int


@dataclass(frozen=True)
class Upload:
    """One received image: the name the client gave it and its bytes."""

    name: str
    data: bytes


async def read_images(request: Request, limits: Limits, *, json_body: Any = None) -> list[Upload]:
    """The images of a multipart or JSON request, each checked (see the module docstring).

    Raises:
        HTTPException: 415 another content type; 422 no image, too many, bad base64, not an
            image, too many pixels; 413 an image over the byte limit.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        uploads = await _multipart(request, limits)
    elif kind == "application/json":
        uploads = _base64_images(json_body, limits)
    else:
        raise HTTPException(
            415, f"content type {kind or 'none'!r}: send multipart/form-data or application/json"
        )
    if not uploads:
        raise HTTPException(422, "no image in the request: send a field 'image' (or JSON 'images')")
    if len(uploads) > limits.max_images:
        raise HTTPException(
            422, f"{len(uploads)} images in one request, over the limit of {limits.max_images}"
        )
    for upload in uploads:
        check_image(upload, limits)
    return uploads


def check_image(upload: Upload, limits: Limits) -> None:
    """Refuse an empty, oversized, unreadable or over-large image from its header.

    Raises:
        HTTPException: 413 over the byte limit; 422 otherwise.
    """
    from PIL import Image, UnidentifiedImageError

    if len(upload.data) > limits.max_bytes:
        raise HTTPException(
            413, f"{upload.name}: {len(upload.data)} bytes, over the limit of {limits.max_bytes}"
        )
    if not upload.data:
        raise HTTPException(422, f"{upload.name}: empty file")
    try:
        with Image.open(io.BytesIO(upload.data)) as img:
            width, height = img.size
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise HTTPException(422, f"{upload.name}: not an image (send JPEG or PNG): {exc}") from exc
    except Exception as exc:  # Pillow raises many types on garbage headers
        raise HTTPException(422, f"{upload.name}: unreadable image header ({exc})") from exc
    if width * height > limits.max_pixels:
        raise HTTPException(
            422,
            f"{upload.name}: {width}x{height} pixels, over the limit of {limits.max_pixels}; "
            "downscale it",
        )


async def _multipart(request: Request, limits: Limits) -> list[Upload]:
    try:
        form = await request.form(max_files=limits.max_images + 1, max_fields=64)
    except Exception as exc:  # a malformed body (python-multipart's or Starlette's errors)
        if type(exc).__name__ == "BodyTooLarge":
            raise
        raise HTTPException(422, f"malformed multipart body: {exc}") from exc
    uploads = []
    for field in IMAGE_FIELDS:
        for n, item in enumerate(form.getlist(field)):
            if not isinstance(item, UploadFile):
                raise HTTPException(422, f"field {field!r} must be a file upload, not text")
            data = await item.read(limits.max_bytes + 1)
            uploads.append(Upload(_safe_name(item.filename, n), data))
    return uploads


def _base64_images(body: Any, limits: Limits) -> list[Upload]:
    if not isinstance(body, dict) or not isinstance(body.get("images"), list):
        raise HTTPException(422, 'JSON body must be {"images": ["<base64>", ...]}')
    names = body.get("names") or []
    uploads = []
    for n, item in enumerate(body["images"]):
        if not isinstance(item, str):
            raise HTTPException(422, f"images[{n}] must be a base64 string")
        if len(item) > limits.max_bytes * 4 // 3 + 4:
            raise HTTPException(413, f"images[{n}]: over the limit of {limits.max_bytes} bytes")
        try:
            data = base64.b64decode(item.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise HTTPException(422, f"images[{n}] is not valid base64 ({exc})") from exc
        name = names[n] if n < len(names) and isinstance(names[n], str) else None
        uploads.append(Upload(_safe_name(name, n), data))
    return uploads


def _safe_name(name: str | None, n: int) -> str:
    """A client's file name for display only: its last component, printable, short."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())[:120]
    return base or f"<image {n}>"
