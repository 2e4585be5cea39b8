"""The encoders' resize and crop equal torchvision's ``Resize`` + ``CenterCrop`` pixel for
pixel, and ``transform`` equals ``ToTensor`` + ``Normalize`` on top of them."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from embplat.models.encoders import IMAGENET_MEAN, IMAGENET_STD, get_encoder, resize_crop


@pytest.mark.parametrize(
    ("w", "h", "side"),
    [(640, 480, 224), (480, 640, 224), (97, 301, 64), (300, 300, 224), (224, 224, 224),
     (28, 28, 64), (1000, 3, 2), (33, 50, 33), (51, 37, 112)],
)  # fmt: skip
def test_resize_crop_equals_torchvision(w: int, h: int, side: int) -> None:
    rng = np.random.default_rng(w * 7 + h)
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    expected = T.Compose([T.Resize(side), T.CenterCrop(side)])(image)
    got = resize_crop(image, side)
    assert got.size == expected.size == (side, side)
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_transform_equals_torchvision_pipeline() -> None:
    encoder = get_encoder("tiny_cnn", image_size=40)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (53, 71, 3), np.uint8))
    reference = T.Compose(
        [T.Resize(40), T.CenterCrop(40), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )(image)
    assert torch.equal(encoder.transform(image), reference)
