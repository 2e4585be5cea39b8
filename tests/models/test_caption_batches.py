"""Fine-tuning batches: every pair once an epoch, each image with all its captions."""

import numpy as np
import pytest

from embplat.models.recipes.caption.batches import image_batches, sortish_batches


@pytest.mark.parametrize("batch_size", [1, 4, 10, 64])
def test_image_batches_keep_an_images_captions_together(batch_size):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 30, size=140)
    batches = image_batches(images, batch_size, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(140))
    seen = [set(images[b].tolist()) for b in batches]
    # every pair once, and each image in one batch only: its captions travel together
    assert sum(len(rows) for rows in seen) == len(set(images.tolist()))
    mean = np.mean([len(b) for b in batches])
    assert batch_size / 2 <= mean <= max(batch_size * 2, 10)


def test_sortish_batches_cover_every_pair_once():
    lengths = np.random.default_rng(0).integers(3, 15, size=300)
    batches = sortish_batches(lengths, 16, np.random.default_rng(2))
    assert sorted(np.concatenate(batches).tolist()) == list(range(300))
