"""Word vectors: bundled GloVe, .vec / GloVe text files, a real fastText .bin with subwords."""

import subprocess
import sys

import numpy as np
import pytest

from embplat.errors import DataError
from embplat.models.vector_files import source_for_file
from embplat.models.wordvectors import (
    VectorSource,
    active_source,
    label_vector,
    open_vectors,
    set_active_source,
)


def unit(v):
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def glove():
    return open_vectors(VectorSource())


def test_bundled_glove_is_the_offline_default(glove, tmp_path):
    assert active_source(tmp_path) == VectorSource()
    assert glove.dim == 50 and len(glove) == 400_000
    assert glove.vector("zebra") is not None and glove.vector("qxzvwk") is None


def test_multi_word_labels_average_their_tokens(glove):
    ankle, boot = unit(glove.vector("ankle")), unit(glove.vector("boot"))
    expected = unit(ankle + boot)
    assert np.allclose(label_vector(glove, "ankle+boot"), expected, atol=1e-6)
    assert np.allclose(label_vector(glove, "killer whale"), label_vector(glove, "killer+whale"))
    # "t-shirt" is a GloVe token itself; an unknown hyphenated word falls back to its parts
    assert np.allclose(label_vector(glove, "t-shirt"), unit(glove.vector("t-shirt")), atol=1e-6)
    assert np.allclose(label_vector(glove, "zebra-qxzvwk"), unit(glove.vector("zebra")), atol=1e-6)
    assert np.isclose(np.linalg.norm(label_vector(glove, "Zebra")), 1.0)


@pytest.mark.reliability
def test_a_label_without_any_known_word_is_an_error_naming_it(glove):
    with pytest.raises(DataError, match=r"label 'qxzvwk\+blorpt'.*vectors load"):
        label_vector(glove, "qxzvwk+blorpt")


def test_vec_and_glove_text_files(tmp_path):
    vec = tmp_path / "tiny.vec"
    vec.write_text("3 4\ncat 1 0 0 0\ndog 0.9 0.1 0 0\ncar 0 0 1 0\n")
    glove_txt = tmp_path / "tiny.txt"
    glove_txt.write_text("cat 1 0 0 0\ndog 0.9 0.1 0 0\n")
    home = tmp_path / "home"
    for path, n in ((vec, 3), (glove_txt, 2)):
        source = source_for_file(path, home)
        vectors = open_vectors(source)
        assert source.kind == "array" and source.origin == path.name
        assert vectors.dim == 4 and len(vectors) == n
        assert np.allclose(vectors.vector("dog"), [0.9, 0.1, 0, 0])
    set_active_source(home, source)
    assert active_source(home) == source
    bad = tmp_path / "bad.txt"
    bad.write_text("cat 1 0 0\ndog 1 0\n")
    with pytest.raises(DataError, match="line 2"):
        source_for_file(bad, home)
    with pytest.raises(DataError, match="does not exist"):
        source_for_file(tmp_path / "missing.vec", home)


TRAIN_FASTTEXT = """
import sys, fasttext
model = fasttext.train_unsupervised(
    sys.argv[1], model="skipgram", dim=16, epoch=3, minCount=1, minn=2, maxn=4, bucket=2000,
    thread=1, verbose=0,
)
model.save_model(sys.argv[2])
"""


def _train_tiny_fasttext(corpus, out):
    """Train in a fresh process, retried: fastText now and then reports a spurious NaN on such
    a tiny corpus, and once it has, later runs in the same process tend to as well."""
    for _ in range(4):
        proc = subprocess.run(
            [sys.executable, "-c", TRAIN_FASTTEXT, str(corpus), str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode == 0:
            return
        assert "NaN" in proc.stderr, proc.stderr
    pytest.fail("fastText kept reporting NaN")


def test_fasttext_bin_gives_out_of_vocabulary_words_subword_vectors(tmp_path):
    import fasttext

    corpus = tmp_path / "corpus.txt"
    sentences = [
        "the zebra runs with the horse across the plain",
        "a striped zebra and a brown horse graze",
        "the shirt and the jacket hang in the closet",
        "a cotton shirt and a wool jacket",
    ]
    corpus.write_text("\n".join(sentences * 50))
    path = tmp_path / "tiny.bin"
    _train_tiny_fasttext(corpus, path)
    model = fasttext.load_model(str(path))
    source = source_for_file(path, tmp_path / "home")
    vectors = open_vectors(source)
    assert source.kind == "fasttext" and vectors.dim == 16
    assert model.get_word_id("zebras") == -1  # out of vocabulary...
    oov = vectors.vector("zebras")
    assert oov is not None and np.any(oov)  # ...yet it has a vector from its n-grams
    near = unit(oov) @ unit(vectors.vector("zebra"))
    far = unit(oov) @ unit(vectors.vector("closet"))
    assert near > far
    assert label_vector(vectors, "striped+zebras").shape == (16,)


@pytest.mark.parametrize(
    ("row", "bad"),
    [
        ("dog 0.9 abc 0 0", "'abc'"),
        ("dog 0.9 0.1 nan 0", "'nan'"),
        ("dog inf 0.1 0 0", "'inf'"),
        ("dog 0.9 -Infinity 0 0", "'-Infinity'"),
        ("dog 0.9 1e40 0 0", "'1e40'"),  # overflows float32 to infinity
    ],
)
@pytest.mark.reliability
def test_values_that_are_not_finite_numbers_name_file_and_line(tmp_path, row, bad):
    path = tmp_path / "broken.vec"
    path.write_text(f"3 4\ncat 1 0 0 0\n{row}\ncar 0 0 1 0\n")
    with pytest.raises(DataError) as caught:
        source_for_file(path, tmp_path / "home")
    assert str(caught.value).startswith(f"{path} line 3: {bad} is not a finite number")
    assert not (tmp_path / "home" / "vectors").exists()  # nothing half-converted left behind
