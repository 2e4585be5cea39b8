import shutil
from pathlib import Path

import pytest

from embplat.config import load_settings
from embplat.workers.context import build_context

#: Real ImageNet weights at a reduced input size: the real model, ~10x cheaper than 224 px.
TEST_IMAGE_SIZE = 64


def make_context(
    home: Path, backend: str = "nmslib", encoder: str = "efficientnet_lite0", **overrides
):
    settings = load_settings(
        **{
            "home": home,
            "index.backend": backend,
            "embed.encoder": encoder,
            "embed.image_size": TEST_IMAGE_SIZE if encoder == "efficientnet_lite0" else None,
            "embed.num_workers": 0,
            **overrides,
        }
    )
    settings.catalog.url = None  # never inherit a developer's EMBPLAT_CATALOG_URL
    return build_context(settings)


@pytest.fixture
def context_factory(tmp_path):
    made = []

    def factory(backend="nmslib", home=None, **kw):
        ctx = make_context(home or tmp_path / "home", backend, **kw)
        made.append(ctx)
        return ctx

    yield factory
    for ctx in made:
        ctx.close()


@pytest.fixture
def tree_copy(tmp_path, fmnist_root):
    """A private copy of the tiny AwA2 tree (tests may add or break files in it)."""
    dst = tmp_path / "awa2"
    shutil.copytree(fmnist_root.parent, dst)
    return dst / "JPEGImages"


#: A small matching model: glove captions, infonce, on the tiny encoder's cached vectors.
MATCHING_CONFIG = {
    "text_encoder": "glove",
    "loss": "infonce",
    "freeze_epochs": 30,
    "embed_dim": 64,
    "batch_size": 32,
    "lr": 1e-2,
    "device": "cpu",
    "encoder": "tiny_cnn",
}


@pytest.fixture(scope="session")
def scenes_root(tmp_path_factory):
    """60 captioned scenes (Flickr8k layout: 48 train, 6 dev, 6 test images, 5 captions each)."""
    from embplat.ingest.scenes import build_scenes

    return build_scenes(tmp_path_factory.mktemp("scenes") / "scenes", images=60, size=64)


@pytest.fixture(scope="session")
def matching_trained(tmp_path_factory, scenes_root):
    """A context (exact index, ``tiny_cnn``) holding the scenes and a trained matching model
    named ``m``; shared by the tests that only read it."""
    from embplat.pipelines.ingest import ingest_tree
    from embplat.pipelines.train import train_recipe

    ctx = make_context(tmp_path_factory.mktemp("matching") / "home", "exact", encoder="tiny_cnn")
    ingest_tree(ctx, scenes_root)
    train_recipe(ctx, "matching", {**MATCHING_CONFIG, "name": "m"})
    yield ctx
    ctx.close()


@pytest.fixture
def matching_config():
    """A copy of :data:`MATCHING_CONFIG` (a small, quick matching model)."""
    return dict(MATCHING_CONFIG)
