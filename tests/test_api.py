"""The public Python API: the README's example runs, inputs of every kind agree, and
``import embplat`` stays light."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embplat.api import Classification, Failure, Platform
from embplat.config import load_settings
from embplat.errors import ConfigError, DataError, NotFoundError

README = Path(__file__).resolve().parents[1] / "README.md"


def _settings(home: Path):
    settings = load_settings(**{"home": home, "embed.encoder": "tiny_cnn", "embed.num_workers": 0})
    settings.catalog.url = None
    return settings


@pytest.fixture(scope="module")
def platform(tmp_path_factory, fmnist_root):
    home = tmp_path_factory.mktemp("api") / "home"
    with Platform(settings=_settings(home)) as p:
        p.ingest(fmnist_root)
        yield p


def test_import_embplat_is_light_and_exports_the_platform():
    code = "import embplat, sys, json; print(json.dumps([dir(embplat), 'torch' in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, torch_loaded = json.loads(out.stdout)
    assert "Platform" in names and not torch_loaded
    import embplat

    assert embplat.Platform is Platform


def test_readme_example_runs(tmp_path, fmnist_root, fmnist_queries, monkeypatch):
    block = re.search(
        r"## Python API and HTTP service.*?```python\n(.*?)```", README.read_text(), re.S
    ).group(1)
    # the example's folders, as `make sample-data` builds them
    (tmp_path / "data" / "fmnist").mkdir(parents=True)
    (tmp_path / "data" / "fmnist" / "JPEGImages").symlink_to(fmnist_root)
    coat = tmp_path / "data" / "queries" / "JPEGImages" / "coat"
    coat.mkdir(parents=True)
    (coat / "coat_00051.jpg").write_bytes(
        sorted((fmnist_queries / "coat").iterdir())[0].read_bytes()
    )
    monkeypatch.chdir(tmp_path)
    for key in [k for k in __import__("os").environ if k.startswith("EMBPLAT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("EMBPLAT_EMBED_ENCODER", "tiny_cnn")
    monkeypatch.setenv("EMBPLAT_EMBED_NUM_WORKERS", "0")
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    answer = namespace["answer"]
    assert isinstance(answer, Classification) and answer.label
    assert (tmp_path / ".embplat" / "catalog.sqlite3").is_file()


def test_every_input_kind_gives_the_same_answer(platform, fmnist_queries):
    path = sorted((fmnist_queries / "trouser").iterdir())[0]
    expected = platform.classify(path, k=5)
    image = Image.open(path)
    for same in (
        str(path),
        path.read_bytes(),
        image,
        np.asarray(image.convert("RGB")),
        path.open("rb"),
    ):
        got = platform.classify(same, k=5)
        assert (got.label, got.tallies, got.neighbours) == (
            expected.label,
            expected.tallies,
            expected.neighbours,
        )
    assert expected.source == str(path) and expected.to_dict()["neighbours"][0]["image_id"]


def test_classify_many_reports_bad_images_in_place(platform, fmnist_queries):
    good = sorted((fmnist_queries / "bag").iterdir())[0]
    answers = platform.classify_many([b"not an image", good, good.parent / "missing.jpg"], k=3)
    assert [type(a) for a in answers] == [Failure, Classification, Failure]
    assert answers[0].source == "<image 0>" and "not an image" in answers[0].error
    with pytest.raises(DataError, match="not an image"):
        platform.classify(b"garbage")
    with pytest.raises(DataError, match="uint8"):
        platform.classify(np.zeros((8, 8), dtype=np.float64))


def test_search_kinds_and_their_errors(platform, fmnist_queries):
    query = sorted((fmnist_queries / "sneaker").iterdir())[0]
    by_image = platform.search(image=query, k=3, split="train")
    assert len(by_image.matches) == 3 and by_image.matches[0].score >= by_image.matches[-1].score
    dim = platform.context.spaces.space().index.dim
    only_bags = platform.search(vector=np.ones(dim), k=2, label="bag")
    assert {m.label for m in only_bags.matches} == {"bag"}
    with pytest.raises(DataError, match="exactly one"):
        platform.search(k=3)
    with pytest.raises(DataError, match="finite numbers"):
        platform.search(vector=[1.0, 2.0])
    with pytest.raises(NotFoundError):
        platform.search(point_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFoundError, match="no visual-semantic model"):
        platform.search(text="a red circle")


def test_add_class_from_images_and_catalog_views(platform, fmnist_queries, tmp_path):
    bags = [p.read_bytes() for p in sorted((fmnist_queries / "bag").iterdir())]
    summary = platform.add_class("new bag", bags)
    assert summary["added"] == len(bags) and platform.job(summary["job_id"]).kind == "enrol"
    assert platform.classify(bags[0], k=1).label == "new bag"
    with pytest.raises(DataError, match="not allowed"):
        platform.add_class("../escape", bags)
    assert "new bag" in {c.name for c in platform.classes()}
    assert platform.image(1).id == 1 and platform.models()[0].kind == "encoder"
    with pytest.raises(ConfigError, match="unknown Platform options"):
        Platform(tmp_path, colour="red")
