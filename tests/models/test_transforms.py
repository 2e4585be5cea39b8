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


def test_a_cpu_batch_runs_in_cache_sized_pieces_with_the_same_vectors(monkeypatch) -> None:
    import embplat.models.encoders as encoders

    encoder = get_encoder("tiny_cnn", image_size=32, device="cpu")
    batch = torch.randn(10, 3, 32, 32)
    whole = encoder.encode_images(batch)
    sizes: list[int] = []
    real = encoder.module.forward
    monkeypatch.setattr(encoder.module, "forward", lambda x: sizes.append(len(x)) or real(x))
    monkeypatch.setattr(encoders, "CPU_FORWARD_PIXELS", 4 * 32 * 32)
    pieces = encoder.encode_images(batch)
    assert sizes == [4, 4, 2]
    assert np.allclose(pieces, whole, atol=1e-6)
    assert encoders.cpu_forward_batch(224 * 224) == 1 and encoders.cpu_forward_batch(10**9) == 1
