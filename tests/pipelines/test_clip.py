"""open_clip encoders and ``--space clip``: a tiny randomly initialised CLIP configuration,
saved to a weights file and reloaded through the encoder registry, then zero-shot
classification by prompts and text → image search checked against the model's own cosine
similarities (computed here, directly with the model). No network."""

import functools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from embplat.api import Platform
from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.config import load_settings
from embplat.errors import ConfigError, DataError
from embplat.models.encoders import _REGISTRY, get_encoder
from embplat.models.prompt_vectors import PROMPT_TEMPLATES
from embplat.models.registry import BUILTIN_ENCODERS, OPENCLIP_ARCHS, openclip_name
from embplat.pipelines.clip import clip_labels, clip_search
from embplat.pipelines.ingest import ingest_tree
from embplat.workers.context import build_context

open_clip = pytest.importorskip("open_clip")

ARCH = "embplat-tiny-clip"
#: A tiny ViT (32 px, 2 layers) and text transformer (width 64, 2 layers, 2 heads).
CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
#: class folder -> skimage photo; two 32 px crops each, PNG so pixels survive exactly
PHOTOS = {"cat": "chelsea", "cup": "coffee", "rocket": "rocket", "astronaut": "astronaut"}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(encoder name, weights file, the model itself) of a seeded random tiny CLIP."""
    from embplat.models.openclip import register_openclip

    base = tmp_path_factory.mktemp("clip")
    (base / f"{ARCH}.json").write_text(json.dumps(CONFIG))
    open_clip.add_model_config(base / f"{ARCH}.json")
    torch.manual_seed(7)
    model = open_clip.create_model(ARCH, pretrained=None, pretrained_text=False).eval()
    torch.save(model.state_dict(), base / "tiny-clip.pt")
    name = register_openclip(ARCH)
    yield name, base / "tiny-clip.pt", model
    _REGISTRY.pop(name)  # the built-in registry stays as `platform encoders` lists it


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, imagefactory, tiny_clip):
    """A context whose active encoder is the tiny CLIP, with 8 photos ingested (4 classes)."""
    name, weights, _ = tiny_clip
    base = tmp_path_factory.mktemp("clip-catalog")
    for label, photo in PHOTOS.items():
        (base / "data" / label).mkdir(parents=True)
        for i, side in enumerate((200, 120)):
            img = imagefactory.photo(photo, side, side).resize((32, 32))
            img.save(base / "data" / label / f"{label}_{i}.png")
    settings = _settings(base / "home", encoder=name, weights=str(weights))
    ctx = build_context(settings)
    ingest_tree(ctx, base / "data")
    yield ctx, base, settings
    ctx.close()


def _settings(home, **embed):
    settings = load_settings(
        **{"home": home, "index.backend": "exact", "embed.num_workers": 0, "embed.device": "cpu"},
        **{f"embed.{key}": value for key, value in embed.items()},
    )
    settings.catalog.url = None  # never inherit a developer's EMBPLAT_CATALOG_URL
    return settings


def _pixels(path):
    """(1, 3, 32, 32): CLIP's normalisation of a 32 px image (no resize needed)."""
    from PIL import Image

    x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(3, 1, 1)
    return ((x.permute(2, 0, 1) - mean) / std)[None]


@torch.no_grad()
def _images(model, paths):
    feats = model.encode_image(torch.cat([_pixels(p) for p in paths]))
    return torch.nn.functional.normalize(feats, dim=1).numpy()


@functools.cache
def _tokenizer():
    return open_clip.get_tokenizer(ARCH)


@torch.no_grad()
def _texts(model, texts):
    feats = model.encode_text(_tokenizer()(texts))
    return torch.nn.functional.normalize(feats, dim=1).numpy()


def _prompt_vector(model, label):
    mean = _texts(model, [t.format(label) for t in PROMPT_TEMPLATES]).mean(axis=0)
    return mean / np.linalg.norm(mean)


def _all_images(base):
    return sorted((base / "data").glob("*/*.png"))


def test_builtin_architectures_match_open_clip_configs():
    for arch, dim in OPENCLIP_ARCHS.items():
        assert open_clip.get_model_config(arch)["embed_dim"] == dim
        assert BUILTIN_ENCODERS[openclip_name(arch)].dim == dim
    assert openclip_name("ViT-B-32") in _REGISTRY or openclip_name("ViT-B-32") in BUILTIN_ENCODERS


def test_reloaded_weights_give_the_models_vectors_in_one_space(tiny_clip, catalog):
    from embplat.models.text.openclip import text_tower

    name, weights, model = tiny_clip
    encoder = get_encoder(name, weights=str(weights), device="cpu")
    tower = text_tower(encoder)
    assert encoder.dim == tower.dim == CONFIG["embed_dim"] and encoder.image_size == 32
    assert encoder.key == f"{name}-tiny_clip"
    paths = _all_images(catalog[1])[:3]
    got = encoder.encode_images(torch.cat([_pixels(p) for p in paths]))
    np.testing.assert_allclose(got, _images(model, paths), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    texts = ["a photo of a rocket", "a zebra"]
    vectors = tower.encode_texts(texts)
    np.testing.assert_allclose(vectors, _texts(model, texts), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_text_search_ranks_images_by_the_models_cosine(catalog, tiny_clip):
    ctx, base, settings = catalog
    model = tiny_clip[2]
    paths = _all_images(base)
    text = "a photo of a rocket"
    cosine = _images(model, paths) @ _texts(model, [text])[0]
    expected = [str(paths[i]) for i in np.argsort(-cosine)]
    hits, used = clip_search(ctx, text, k=3)
    assert used == ctx.spaces.space().key
    assert [h.path for h in hits] == expected[:3]
    by_path = dict(zip(map(str, paths), cosine, strict=True))
    np.testing.assert_allclose([h.score for h in hits], [by_path[h.path] for h in hits], atol=1e-4)
    # the same through the Python API, with a class filter
    with Platform(settings=settings, context=ctx) as platform:
        found = platform.search(text=text, k=2, space="clip", label="cup")
    cups = [p for p in expected if "/cup/" in p]
    assert [m.path for m in found.matches] == cups and found.model == used


def test_zero_shot_picks_the_nearest_prompt_among_all_classes(catalog, tiny_clip):
    ctx, base, settings = catalog
    model = tiny_clip[2]
    with transaction(ctx.sessions) as session:  # a class without images competes too
        repo.ensure_classes(session=session, names=["zebra"], roles={"zebra": "unseen"})
    names = sorted([*PHOTOS, "zebra"])
    prompts = np.stack([_prompt_vector(model, n) for n in names])
    paths = _all_images(base)
    scores = _images(model, paths) @ prompts.T
    answers = clip_labels(ctx, paths, k=len(names))
    for path, row, answer in zip(paths, scores, answers, strict=True):
        assert answer.label == names[int(np.argmax(row))], path
        assert [c.label for c in answer.candidates] == [names[i] for i in np.argsort(-row)]
        np.testing.assert_allclose(
            [c.score for c in answer.candidates], np.sort(row)[::-1], atol=1e-5
        )
    zebra = next(c for c in answers[0].candidates if c.label == "zebra")
    assert zebra.role == "unseen"
    [only] = clip_labels(ctx, paths[:1], candidates=["zebra", "horse"], k=2)
    assert {c.label for c in only.candidates} == {"zebra", "horse"}
    # image → labels through the Python API: classify and search agree
    with Platform(settings=settings, context=ctx) as platform:
        [shot] = platform.zero_shot([paths[0]], k=3, space="clip")
        labels = platform.search(image=paths[0], kind="label", k=3, space="clip")
    assert shot.label == answers[0].label == labels.matches[0].label
    assert [m.label for m in labels.matches] == [c.label for c in answers[0].candidates[:3]]


def test_a_zero_shot_class_needs_no_word_vector_with_a_text_tower(catalog, tiny_clip):
    from embplat.pipelines.zero_shot_classes import add_zero_shot_class

    ctx, base, _ = catalog
    added = add_zero_shot_class(ctx, "qxzvwk")  # no GloVe word, but CLIP embeds any name
    assert added == {"class": "qxzvwk", "role": "unseen", "models": []}
    [answer] = clip_labels(ctx, _all_images(base)[:1], k=len(PHOTOS) + 2)
    assert "qxzvwk" in {c.label for c in answer.candidates}


def test_weights_errors_name_the_file(tiny_clip, tmp_path):
    name = tiny_clip[0]
    missing = tmp_path / "nowhere" / "clip.pt"
    with pytest.raises(ConfigError, match=f"weights file {missing} does not exist"):
        get_encoder(name, weights=str(missing), device="cpu")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=f"weights file {corrupt} cannot be loaded"):
        get_encoder(name, weights=str(corrupt), device="cpu")
    other = tmp_path / "other.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, other)
    with pytest.raises(ConfigError, match=f"weights file {other} cannot be loaded into {ARCH}"):
        get_encoder(name, weights=str(other), device="cpu")
    with pytest.raises(ConfigError, match="no weights 'laion9x' for"):
        get_encoder(name, weights="laion9x", device="cpu")


def test_space_clip_needs_an_open_clip_encoder(tmp_path, imagefactory):
    ctx = build_context(_settings(tmp_path / "home", encoder="tiny_cnn"))
    try:
        with pytest.raises(ConfigError, match="tiny_cnn has no text tower"):
            clip_search(ctx, "a cat")
        from embplat.pipelines.zero_shot_classes import add_zero_shot_class

        with pytest.raises(DataError, match="qxzvwk"):  # no word vector and no text tower
            add_zero_shot_class(ctx, "qxzvwk")
        assert add_zero_shot_class(ctx, "zebra")["role"] == "unseen"
    finally:
        ctx.close()


def test_cli_searches_and_classifies_in_the_clip_space(catalog, tiny_clip, monkeypatch):
    from embplat.cli.app import app

    ctx, base, _ = catalog
    name, weights, model = tiny_clip
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.setenv("EMBPLAT_HOME", str(base / "home"))
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
    ctx.close()  # the CLI opens the same home
    flags = ["--encoder", name, "--weights", str(weights), "--backend", "exact", "--device", "cpu"]
    runner = CliRunner()
    out = runner.invoke(app, [*flags, "search", "--text", "a cup", "--space", "clip", "--json"])
    assert out.exit_code == 0, out.output
    paths = _all_images(base)
    cosine = _images(model, paths) @ _texts(model, ["a cup"])[0]
    assert json.loads(out.stdout)["matches"][0]["path"] == str(paths[int(np.argmax(cosine))])
    out = runner.invoke(app, [*flags, "classify", str(paths[0]), "--space", "clip", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)[0]["label"] in {*PHOTOS, "zebra"}
    out = runner.invoke(app, ["--encoder", "tiny_cnn", "--backend", "exact", "search", "--text",
                              "a cup", "--space", "clip"])  # fmt: skip
    assert out.exit_code == 2 and "no text tower" in out.output


def test_other_encoders_never_import_open_clip():
    code = (
        "import sys\n"
        "from embplat.models.encoders import get_encoder, list_encoders\n"
        "assert 'openclip-vit-b-32' in list_encoders()\n"
        "get_encoder('tiny_cnn', device='cpu')\n"
        "print(sorted({'open_clip', 'timm'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
