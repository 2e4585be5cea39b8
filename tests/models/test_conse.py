"""ConSE: convex combinations of class label vectors, on a toy head with known scores and on
the bundled EfficientNet-Lite0 ImageNet head."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from embplat.errors import DataError
from embplat.models.conse import (
    ConseEncoder,
    class_vectors,
    conse_vectors,
    imagenet_categories,
    imagenet_classifier,
)
from embplat.models.wordvectors import VectorSource, label_vector, open_vectors


class ToyHead(nn.Module):
    """Logits fixed per image by its first pixel: image i gets row i of ``logits``."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def forward(self, x):
        return self.logits[x[:, 0, 0, 0].round().long()]


# 4 classes in a 3-d word space; class 3 has no vector (a zero row)
VECTORS = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, 0]], dtype=np.float32)


def test_conse_vector_is_the_probability_weighted_mean_of_the_top_t_classes():
    probs = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4]])
    out = conse_vectors(probs, VECTORS, top=2)
    # image 0: classes 0 and 1, weights 0.5/0.8 and 0.3/0.8
    by_hand = (0.5 * VECTORS[0] + 0.3 * VECTORS[1]) / 0.8
    np.testing.assert_allclose(out[0], by_hand / np.linalg.norm(by_hand), atol=1e-6)
    # image 1: class 3 is the most probable but has no vector, so classes 2 and 1 combine
    by_hand = (0.3 * VECTORS[2] + 0.2 * VECTORS[1]) / 0.5
    np.testing.assert_allclose(out[1], by_hand / np.linalg.norm(by_hand), atol=1e-6)
    np.testing.assert_allclose(conse_vectors(probs, VECTORS, top=1)[0], VECTORS[0])
    with pytest.raises(DataError, match="T >= 1"):
        conse_vectors(probs, VECTORS, top=0)
    with pytest.raises(DataError, match="4 class probabilities but 3"):
        conse_vectors(probs, VECTORS[:3])


def test_encoder_turns_a_toy_heads_scores_into_conse_vectors():
    logits = [[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 3.0, 0.0]]
    encoder = ConseEncoder(ToyHead(logits), VECTORS, key="conse-toy", top=2, image_size=8)
    batch = torch.zeros(2, 3, 8, 8)
    batch[1] = 1.0  # the second image selects the second row of logits
    p = torch.softmax(torch.tensor(logits), dim=1).numpy()
    np.testing.assert_allclose(encoder.probabilities(batch), p, atol=1e-6)
    got = encoder.encode_images(batch)
    w = p[0, :2] / p[0, :2].sum()
    by_hand = w[0] * VECTORS[0] + w[1] * VECTORS[1]
    np.testing.assert_allclose(got[0], by_hand / np.linalg.norm(by_hand), atol=1e-6)
    top2 = [2, 0]  # second image: class 2 (e^3), then the first of the tied classes
    by_hand = (p[1, top2][:, None] * VECTORS[top2]).sum(axis=0)
    np.testing.assert_allclose(got[1], by_hand / np.linalg.norm(by_hand), atol=1e-6)
    assert got.dtype == np.float32 and encoder.dim == 3 and encoder.key == "conse-toy"
    assert encoder.transform(Image.new("RGB", (20, 10))).shape == (3, 8, 8)


def test_class_vectors_leave_unknown_names_as_zero_rows():
    glove = open_vectors(VectorSource())
    rows = class_vectors(glove, ["tabby", "qxzvwk", "ankle boot"])
    np.testing.assert_allclose(rows[0], label_vector(glove, "tabby"))
    assert not rows[1].any() and np.linalg.norm(rows[2]) == pytest.approx(1, abs=1e-5)


def test_imagenet_head_and_names_classify_a_real_photo(imagefactory):
    names = imagenet_categories()
    assert len(names) == 1000 and names[281] == "tabby" and names[0] == "tench"
    glove = open_vectors(VectorSource())
    encoder = ConseEncoder(imagenet_classifier(), class_vectors(glove, names), key="conse-t")
    cat = imagefactory.photo("chelsea", 300, 225)  # skimage's cat
    batch = encoder.transform(cat)[None]
    top5 = np.argsort(-encoder.probabilities(batch)[0])[:5]
    assert {names[i] for i in top5} & {"tabby", "tiger cat", "Egyptian cat"}
    vec = encoder.encode_images(batch)[0]
    candidates = ["cat", "car", "airplane", "shoe"]
    sims = [float(vec @ label_vector(glove, c)) for c in candidates]
    assert candidates[int(np.argmax(sims))] == "cat"
