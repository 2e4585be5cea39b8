"""Where a captioner looked: one panel per generated word, its attention map over the image.

Drawn on matplotlib's Agg canvas through ``matplotlib.figure.Figure`` (no ``pyplot``, no
global backend state), like ``evaluation.plots``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embplat.errors import DataError
from embplat.evaluation.plots import save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

#: Panels per row of the figure.
COLUMNS = 5


def attention_panels(
    image: Image.Image, words: Sequence[str], alphas: np.ndarray, grid: tuple[int, int]
) -> Figure:
    """A figure with one panel per word: the image with that step's attention map over it.

    Args:
        image: the image as the encoder saw it (resized and centre-cropped); another
            aspect ratio is drawn as is, the map stretched over it.
        words: the generated words, the last step usually ``<end>``.
        alphas: (len(words), h * w) attention weights of each step.
        grid: (h, w) of the encoder's feature map.

    Raises:
        DataError: ``alphas`` does not have one row per word of h * w weights.
    """
    from matplotlib.figure import Figure
    from PIL import Image as PILImage

    h, w = grid
    alphas = np.asarray(alphas, dtype=np.float32)
    if alphas.ndim != 2 or alphas.shape != (len(words), h * w) or not len(words):
        raise DataError(
            f"attention needs one row of {h}x{w} = {h * w} weights per word: got "
            f"{len(words)} words and alphas of shape {alphas.shape}"
        )
    rgb = image.convert("RGB")
    pixels = np.asarray(rgb)
    cols = min(COLUMNS, len(words))
    rows = math.ceil(len(words) / cols)
    fig = Figure(figsize=(2.4 * cols, 2.6 * rows), layout="constrained")
    for i, (word, alpha) in enumerate(zip(words, alphas, strict=True)):
        ax = fig.add_subplot(rows, cols, i + 1)
        peak = float(alpha.max()) or 1.0
        small = PILImage.fromarray((alpha.reshape(h, w) / peak * 255).astype(np.uint8), "L")
        heat = np.asarray(small.resize(rgb.size, PILImage.Resampling.BILINEAR)) / 255.0
        ax.imshow(pixels)
        ax.imshow(heat, cmap="gray", alpha=0.6, vmin=0.0, vmax=1.0)
        ax.set_title(word, fontsize=11)
        ax.set_axis_off()
    return fig


def attention_figure(
    image: Image.Image,
    words: Sequence[str],
    alphas: np.ndarray,
    grid: tuple[int, int],
    out: Path,
) -> Path:
    """Write :func:`attention_panels` as a PNG at ``out`` (folders created); returns ``out``.

    Raises:
        DataError: ``alphas`` does not have one row per word of h * w weights.
    """
    return save_png(attention_panels(image, words, alphas, grid), Path(out))
