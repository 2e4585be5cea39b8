"""Text encoders: registry, tokenizer and vocabulary, glove, gru, and the real MiniLM."""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from embplat.errors import ConfigError, DataError
from embplat.models.text import (
    TextOptions,
    TrainableTextEncoder,
    Vocabulary,
    get_text_encoder,
    list_text_encoders,
    register_text_encoder,
    text_tokens,
    tokenize,
)
from embplat.models.wordvectors import VectorSource, label_vector, open_vectors

CAPTIONS = [
    "A red circle above a blue square.",
    "a blue square below a red circle",
    "Two dogs play on the grass; one is brown.",
]
LONG = " ".join(["circle"] * 9_000 + ["square"] * 1_000)


def test_registry_lists_the_builtins_without_importing_torch():
    code = (
        "import sys\nfrom embplat.models.text import list_text_encoders\n"
        "from embplat.models.recipes.matching.config import MatchingConfig\n"
        "MatchingConfig(text_encoder='minilm')\n"
        "print(list_text_encoders(), 'torch' in sys.modules,"
        " 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['glove', 'gru', 'minilm'] False False"


def test_unknown_encoder_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown text encoder 'bert'.*glove, gru, minilm"):
        get_text_encoder("bert")


def test_a_registered_encoder_is_built_by_name():
    class Constant:
        name, key, dim, trainable = "const", "const", 2, False

        def encode_texts(self, texts):
            return np.tile(np.array([[1, 0]], np.float32), (len(texts), 1))

    register_text_encoder("const")(lambda options: Constant())
    assert "const" in list_text_encoders()
    assert get_text_encoder("const").encode_texts(["a", "b"]).shape == (2, 2)


def test_tokenizer_keeps_words_and_drops_punctuation():
    assert tokenize("A red-haired man's T-shirt, 2 dogs!") == [
        "a",
        "red-haired",
        "man's",
        "t-shirt",
        "2",
        "dogs",
    ]
    assert tokenize("Ein Hund läuft über die Wiese") == [
        "ein",
        "hund",
        "läuft",
        "über",
        "die",
        "wiese",
    ]
    assert tokenize("snake_case __ words") == ["snake", "case", "words"]
    start = time.perf_counter()
    assert text_tokens(LONG, max_tokens=32) == ["circle"] * 32
    assert time.perf_counter() - start < 0.05


@pytest.mark.parametrize("text", ["", "   ", "?!…"])
def test_a_text_without_words_is_an_error_naming_it(text):
    with pytest.raises(DataError, match=re.escape(f"text 4 {text!r} has no words")):
        text_tokens(text, max_tokens=8, position=4)


def test_vocabulary_is_deterministic_and_pads():
    vocab = Vocabulary.from_texts(CAPTIONS)
    assert vocab.words[:2] == ("<pad>", "<unk>")
    assert vocab.words[2:4] == ("a", "blue")  # most frequent first, ties alphabetical
    assert Vocabulary.from_texts(reversed(CAPTIONS)) == vocab
    assert len(Vocabulary.from_texts(CAPTIONS, min_count=2)) == 2 + 5
    ids = vocab.encode(["a red circle", "a zebra"], max_tokens=8)
    assert ids.shape == (2, 3) and ids.dtype == np.int64
    assert ids[1].tolist() == [vocab.ids(["a"])[0], 1, 0]
    with pytest.raises(DataError, match="text 1 'Zebra Gnu': none of its words"):
        vocab.encode(["a circle", "Zebra Gnu"], max_tokens=8, strict=True)
    with pytest.raises(ConfigError, match="starts with"):
        Vocabulary(("a", "b"))


@pytest.fixture(scope="module")
def glove():
    return get_text_encoder("glove", TextOptions(max_tokens=32))


def test_glove_is_the_mean_of_unit_word_vectors(glove):
    vectors = glove.encode_texts(["ankle boot", *CAPTIONS])
    assert vectors.shape == (4, 50) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # today's label vectors, for class names
    assert np.allclose(
        vectors[0], label_vector(open_vectors(VectorSource()), "ankle+boot"), atol=1e-6
    )
    # punctuation and case do not change a caption's vector
    same = glove.encode_texts(["a red circle above a blue square"])[0]
    assert np.allclose(vectors[1], same, atol=1e-6)
    assert glove.key == "glove-glove_6b_50d" and not glove.trainable


def test_glove_truncates_a_10000_word_caption(glove):
    start = time.perf_counter()
    long, short = glove.encode_texts([LONG, "circle"])
    assert time.perf_counter() - start < 1
    assert np.allclose(long, short, atol=1e-6)  # its first 32 words are all "circle"


def test_glove_refuses_a_text_it_has_no_word_for(glove):
    with pytest.raises(DataError, match=r"text 1 'qxzvwk blorpt': none of its words has a vector"):
        glove.encode_texts(["a dog", "qxzvwk blorpt"])
    with pytest.raises(DataError, match="text 0 '' has no words"):
        glove.encode_texts([""])
    # a word without a vector among known ones is skipped
    assert np.allclose(glove.encode_texts(["dog qxzvwk"]), glove.encode_texts(["dog"]), atol=1e-6)


@pytest.fixture(scope="module")
def gru():
    torch.manual_seed(0)
    vocab = Vocabulary.from_texts([*CAPTIONS, "qxzvwk"])
    return get_text_encoder("gru", TextOptions(vocabulary=vocab.words, hidden=16, max_tokens=12))


def test_gru_needs_a_vocabulary():
    with pytest.raises(ConfigError, match="needs a vocabulary"):
        get_text_encoder("gru")


def test_gru_starts_from_the_word_vectors(gru):
    glove = open_vectors(VectorSource())
    row = gru.vocabulary.ids(["circle"])[0]
    assert torch.allclose(gru.embedding.weight[row], torch.tensor(glove.vector("circle")))
    assert not gru.embedding.weight[0].any()  # <pad>
    unknown = gru.vocabulary.ids(["qxzvwk"])[0]  # no vector: random, of the same scale
    known = gru.embedding.weight[2:unknown].norm(dim=1).mean()
    assert known / 3 < gru.embedding.weight[unknown].norm() < known * 3


def test_gru_encodes_unit_vectors_independent_of_padding(gru):
    assert isinstance(gru, TrainableTextEncoder) and gru.trainable and gru.dim == 16
    vectors = gru.encode_texts(CAPTIONS)
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    alone = gru.encode_texts([CAPTIONS[1]])[0]
    assert np.allclose(alone, vectors[1], atol=1e-5)  # packed: padding never enters the GRU
    assert np.allclose(
        gru.encode_texts([LONG])[0], gru.encode_texts([" ".join(["circle"] * 12)])[0]
    )


def test_gru_refuses_a_query_it_knows_no_word_of_and_trains(gru):
    with pytest.raises(DataError, match="none of its words is among the"):
        gru.encode_texts(["Ein Hund läuft"])
    ids = gru.token_ids(["Ein Hund läuft", CAPTIONS[0]])  # training input: <unk>, no error
    assert ids[0, :3].tolist() == [1, 1, 1]
    gru(ids).sum().backward()
    assert gru.embedding.weight.grad is not None and gru.gru.weight_hh_l0.grad.abs().sum() > 0


MINILM_CHECK = """
import json, numpy as np
from embplat.errors import DataError
from embplat.models.text import get_text_encoder
enc = get_text_encoder("minilm")
v = enc.encode_texts([
    "a red circle above a blue square",
    "above a blue square there is a red circle",
    "the stock market fell sharply on tuesday",
    "x " * 10000,
])
try:
    enc.encode_texts(["a dog", "  "])
    error = ""
except DataError as exc:
    error = str(exc)
print(json.dumps({
    "dim": enc.dim, "dtype": str(v.dtype), "norms": np.linalg.norm(v, axis=1).tolist(),
    "paraphrase": float(v[0] @ v[1]), "unrelated": float(v[0] @ v[2]), "error": error,
}))
"""


def test_minilm_loads_offline_and_ranks_a_paraphrase_first(tmp_path):
    """The real all-MiniLM-L6-v2, in a process with no Hugging Face cache and no network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "EMBPLAT_"))}
    env |= {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TRANSFORMERS_OFFLINE": "1"}
    env |= {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    proc = subprocess.run(
        [sys.executable, "-c", MINILM_CHECK], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["dim"] == 384 and out["dtype"] == "float32"
    assert np.allclose(out["norms"], 1, atol=1e-4)
    assert out["paraphrase"] > 0.8 > 0.3 > out["unrelated"]
    assert out["error"] == "text 1 '  ' is empty; give a non-empty sentence"
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").rglob("*.safetensors"))
