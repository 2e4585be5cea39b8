"""Batch decoding for the embed path: Pillow on threads ahead of the forward pass, nvJPEG on CUDA.

Pillow's JPEG decoder and resize release the GIL, so a few threads decode the next batches
while the encoder runs the current one, in the same process (no worker start-up per batch,
and a Celery prefork child, a daemon, may use them too). Per image a thread only decodes,
resizes and crops to uint8; the float conversion and normalisation run once per batch in
the caller's thread (on the GPU when there is one), so decode threads never use torch's
intra-op pool.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embplat.errors import DataError
from embplat.ingest.images import gpu_decodable, load_rgb
from embplat.models.encoders import ImageEncoder, TorchImageEncoder

log = logging.getLogger(__name__)

Rows = Sequence[tuple[int, str]]
#: (image ids, (B, 3, S, S) batch or None, (image id, error) per file that failed).
Decoded = tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]
#: Fewer JPEGs than this in a batch are decoded by Pillow: nvJPEG's set-up costs more.
MIN_GPU_JPEGS = 4


class BatchDecoder:
    """Decodes one batch of (image id, path) rows for ``encoder``; a bad file never stops it.

    With a :class:`TorchImageEncoder`, images become uint8 tensors (``encoder.prepare``) and
    :meth:`encode` normalises the batch once; any other ``ImageEncoder`` gets its own
    ``transform``. JPEGs much larger than the input side are decoded at reduced DCT scale
    when ``encoder.jpeg_draft`` is set; on CUDA the host batch is pinned, and baseline
    JPEGs are decoded on the GPU when ``encoder.gpu_decode`` is set.
    """

    def __init__(self, encoder: ImageEncoder, max_pixels: int, *, check_resize: bool = False):
        """``check_resize``: also refuse images whose size after the encoder's resize
        exceeds ``max_pixels`` (``load_rgb(resize_side=...)``), as queries do."""
        self.encoder, self.max_pixels = encoder, max_pixels
        self.resize_side = encoder.image_size if check_resize else None
        self.torch_encoder = encoder if isinstance(encoder, TorchImageEncoder) else None
        te = self.torch_encoder
        self.cuda = te is not None and te.device.type == "cuda"
        self.gpu_jpeg = te is not None and self.cuda and te.gpu_decode
        self.draft_side = encoder.image_size if getattr(encoder, "jpeg_draft", False) else None

    def __call__(self, rows: Rows) -> Decoded:
        """Decode ``rows`` → (ids, batch, failures); see :data:`Decoded`."""
        if self.gpu_jpeg:
            return self._decode_on_gpu(rows)
        return self._decode_on_cpu(rows)

    def encode(self, batch: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) batch from this decoder → (B, dim) float32 unit vectors."""
        if self.torch_encoder is not None:
            return self.torch_encoder.encode_uint8(batch)
        return self.encoder.encode_images(batch)

    def _decode_on_cpu(self, rows: Rows) -> Decoded:
        ids: list[int] = []
        tensors: list[torch.Tensor] = []
        bad: list[tuple[int, str]] = []
        for image_id, path in rows:
            try:
                image = load_rgb(
                    path,
                    max_pixels=self.max_pixels,
                    resize_side=self.resize_side,
                    draft_side=self.draft_side,
                )
                te = self.torch_encoder
                tensors.append(te.prepare(image) if te else self.encoder.transform(image))
            except DataError as exc:
                bad.append((image_id, str(exc)))
                continue
            ids.append(image_id)
        if not tensors:
            return ids, None, bad
        batch = torch.stack(tensors)
        # pinned host memory lets the host→device copy run asynchronously
        return ids, (batch.pin_memory() if self.cuda else batch), bad

    def _decode_on_gpu(self, rows: Rows) -> Decoded:
        """nvJPEG for the baseline RGB/grey JPEGs without EXIF rotation, Pillow for the rest
        (CMYK, progressive, rotated, PNG...) and for the whole batch if nvJPEG fails."""
        jpegs: list[tuple[int, bytes]] = []
        others: list[tuple[int, str]] = []
        bad: list[tuple[int, str]] = []
        for image_id, path in rows:
            try:
                data = Path(path).read_bytes()
                if gpu_decodable(
                    data, path, max_pixels=self.max_pixels, resize_side=self.resize_side
                ):
                    jpegs.append((image_id, data))
                    continue
            except OSError:
                pass  # the Pillow path reports it with its usual message
            except DataError as exc:
                bad.append((image_id, str(exc)))
                continue
            others.append((image_id, path))
        if len(jpegs) < MIN_GPU_JPEGS:
            return self._decode_on_cpu(rows)
        try:
            gpu_batch = self._nvjpeg([data for _, data in jpegs])
        except RuntimeError as exc:  # a corrupt file fails the whole nvJPEG batch
            log.debug("GPU JPEG decode failed (%s); decoding the batch with Pillow", exc)
            return self._decode_on_cpu(rows)
        ids, cpu_batch, cpu_bad = self._decode_on_cpu(others)
        batches = [gpu_batch] + ([] if cpu_batch is None else [cpu_batch.to(gpu_batch.device)])
        return [i for i, _ in jpegs] + ids, torch.cat(batches), bad + cpu_bad

    def _nvjpeg(self, datas: list[bytes]) -> torch.Tensor:
        """Encoded JPEGs → (B, 3, S, S) uint8 on the GPU: decode, resize the short side
        (antialiased bilinear, as ``transforms.Resize``), centre-crop."""
        from torchvision.io import ImageReadMode, decode_jpeg
        from torchvision.transforms.v2 import functional as F

        te = self.torch_encoder
        assert te is not None
        side = te.image_size
        encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
        images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=te.device)
        out = [F.center_crop(F.resize(img, [side], antialias=True), [side, side]) for img in images]
        return torch.stack(out)


def prefetched(
    decode: Callable[[Rows], Decoded], chunks: Iterable[Rows], workers: int
) -> Iterator[Decoded]:
    """``decode(chunk)`` for each chunk, in order, computed ``workers`` chunks ahead on
    threads while the caller uses the previous result; 0 workers decodes in this thread.

    ``chunks`` is advanced in the caller's thread (a generator may read the catalog).
    Closing the iterator early cancels the chunks not started yet.
    """
    single = isinstance(chunks, Sequence) and len(chunks) <= 1
    if workers <= 0 or (workers == 1 and single):
        yield from (decode(chunk) for chunk in chunks)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embplat-decode")
    pending: deque[Future[Any]] = deque()
    todo = iter(chunks)
    try:
        for chunk in todo:
            pending.append(pool.submit(decode, chunk))
            if len(pending) > workers:  # one more queued than running: no idle gap
                break
        while pending:
            result = pending.popleft().result()
            following = next(todo, None)
            if following is not None:
                pending.append(pool.submit(decode, following))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
