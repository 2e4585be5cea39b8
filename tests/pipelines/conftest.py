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
