"""The attention figure: one panel per word, the map drawn over the image, a PNG written."""

import numpy as np
import pytest
from PIL import Image

from embplat.errors import DataError
from embplat.evaluation.attention import attention_figure, attention_panels


def test_one_panel_per_word_and_a_png_is_written(tmp_path):
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    words = ["a", "red", "circle", "left", "of", "a", "blue", "<end>"]
    rng = np.random.default_rng(0)
    alphas = rng.dirichlet(np.ones(12), size=len(words)).astype(np.float32)
    fig = attention_panels(image, words, alphas, (3, 4))
    assert len(fig.axes) == len(words)
    assert [ax.get_title() for ax in fig.axes] == words
    heat = np.asarray(fig.axes[2].get_images()[1].get_array())  # the upsampled map
    assert heat.shape == (64, 64)
    top = np.unravel_index(np.argmax(alphas[2].reshape(3, 4)), (3, 4))
    cell = heat[top[0] * 64 // 3 + 10, top[1] * 16 + 8]
    assert cell > np.median(heat)  # the most attended cell is bright where it lies
    out = attention_figure(image, words, alphas, (3, 4), tmp_path / "sub" / "att.png")
    assert out == tmp_path / "sub" / "att.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(out).size[0] > Image.open(out).size[1]  # two rows of five columns


def test_mismatched_attention_is_refused(tmp_path):
    image = Image.new("RGB", (32, 32))
    with pytest.raises(DataError, match="one row of 2x2 = 4 weights per word"):
        attention_figure(image, ["a", "<end>"], np.ones((2, 9)), (2, 2), tmp_path / "x.png")
    with pytest.raises(DataError, match="per word"):
        attention_figure(image, ["a"], np.ones((2, 4)), (2, 2), tmp_path / "x.png")
