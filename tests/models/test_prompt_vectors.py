"""Prompt-ensembled label vectors (the ``minilm`` word-vector source) and named sources."""

import zlib

import numpy as np
import pytest

from embplat.errors import DataError
from embplat.models.prompt_vectors import PROMPT_TEMPLATES, PromptVectors
from embplat.models.wordvectors import (
    NAMED_SOURCES,
    LabelSpace,
    VectorSource,
    label_matrix,
    label_vector,
    open_vectors,
    resolve_source,
)


class FakeSentences:
    """A deterministic sentence encoder: a seeded random unit vector per text; counts calls."""

    dim = 6

    def __init__(self):
        self.seen: list[str] = []

    def encode_texts(self, texts):
        self.seen += list(texts)
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) for t in texts]
        return np.stack([r / np.linalg.norm(r) for r in rows]).astype(np.float32)


def test_a_label_vector_is_the_normalised_mean_of_its_prompts():
    fake = FakeSentences()
    vectors = PromptVectors(VectorSource(kind="minilm", origin="fake"), fake)
    got = label_vector(vectors, "ankle+boot")  # the phrase, not a mean of word vectors
    texts = [t.format("ankle boot") for t in PROMPT_TEMPLATES]
    assert fake.seen == texts and texts[0] == "a photo of a ankle boot."
    mean = FakeSentences().encode_texts(texts).mean(axis=0)
    np.testing.assert_allclose(got, mean / np.linalg.norm(mean), atol=1e-6)
    label_vector(vectors, "ankle_boot")
    assert len(fake.seen) == len(texts)  # cached by its words
    batch = vectors.phrases(["coat", "ankle boot", "sandal"])
    np.testing.assert_allclose(batch[1], got, atol=1e-6)
    np.testing.assert_allclose(batch[0], label_vector(vectors, "coat"), atol=1e-6)
    assert vectors.vector("coat") is not None and vectors.dim == 6
    with pytest.raises(DataError, match="no words"):
        label_vector(vectors, "+")


def test_named_sources_resolve_before_files(tmp_path):
    assert resolve_source("minilm", tmp_path) == NAMED_SOURCES["minilm"]
    assert resolve_source("minilm", tmp_path).kind == "minilm"
    assert resolve_source("glove", tmp_path) == VectorSource()
    assert resolve_source("", tmp_path) == VectorSource()  # the active (default) vectors
    with pytest.raises(DataError, match="does not exist"):
        resolve_source(str(tmp_path / "minilm.vec"), tmp_path)


def test_minilm_prompt_vectors_are_offline_384d_and_centre_like_glove():
    vectors = open_vectors(NAMED_SOURCES["minilm"])
    names = ["coat", "jacket", "sneaker", "running+shoe"]
    m = label_matrix(vectors, names)
    assert m.shape == (4, 384) and np.allclose(np.linalg.norm(m, axis=1), 1, atol=1e-5)
    sims = m @ m.T
    assert sims[0, 1] > sims[0, 2] and sims[2, 3] > sims[2, 0]  # coat~jacket, sneaker~shoe
    space = LabelSpace(vectors, m.mean(axis=0))
    assert space.vector("coat").shape == (384,) and space.matrix(names).shape == (4, 384)


def test_devise_builds_onto_minilm_prompt_vectors(tmp_path):
    from embplat.models.recipes.devise import Devise, DeviseConfig

    built = Devise().build(DeviseConfig(vectors="minilm"), ["coat", "sandal", "bag"], home=tmp_path)
    assert built.recipe.head.out_dim == 384 and built.extras["label_vectors"].shape == (3, 384)
    assert (
        built.lineage["vectors"]["kind"] == "minilm" and len(built.lineage["label_center"]) == 384
    )
