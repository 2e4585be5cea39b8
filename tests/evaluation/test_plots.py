"""PNG plots: the confusion matrix, as bytes and as a file."""

import io

import numpy as np
from PIL import Image

from embplat.evaluation.plots import confusion_figure, png_bytes, save_png


def test_confusion_figure_as_bytes_and_file(tmp_path):
    fig = confusion_figure(["a", "b"], np.array([[3, 1], [0, 2]]), "title")
    assert [t.get_text() for t in fig.axes[0].texts] == ["3", "1", "2"]  # zero cells stay empty
    with Image.open(io.BytesIO(png_bytes(fig))) as img:
        assert img.format == "PNG"
    out = save_png(fig, tmp_path / "sub" / "c.png")
    assert out.read_bytes().startswith(b"\x89PNG")
