"""The public Python API: the README's example runs, inputs of every kind agree (in-memory
ones never touch the disk), vector queries build no encoder, and ``import embplat`` stays
light."""

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
from embplat.catalog import repo
from embplat.config import load_settings
from embplat.errors import ConfigError, DataError, NotFoundError
from embplat.retrieval import point_id

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


def test_vector_and_point_queries_build_no_encoder(platform, monkeypatch):
    dim = platform.context.spaces.space().index.dim
    expected = platform.search(vector=np.ones(dim), k=3).to_dict()
    with Platform(settings=platform.settings) as fresh:

        def no_encoder():
            raise AssertionError("a vector query built the image encoder")

        monkeypatch.setattr(fresh.context.spaces, "make_encoder", no_encoder)
        assert fresh.search(vector=np.ones(dim), k=3).to_dict() == expected
        key = fresh.models()[0].name  # the active encoder's model key
        first = expected["matches"][0]["image_id"]
        with fresh.context.sessions() as session:
            sha = repo.get_images(session=session, ids=[first])[0].sha256
        by_point = fresh.search(point_id=point_id(sha, key), k=1).matches[0]
        assert (by_point.image_id, by_point.score) == (first, pytest.approx(1.0, abs=1e-5))
        with pytest.raises(NotFoundError, match="not in index"):
            fresh.search(point_id="00000000-0000-0000-0000-000000000000")
        with pytest.raises(ConfigError, match="pretrained encoder"):
            fresh.search(vector=np.ones(dim), model=key)


def test_in_memory_images_are_never_written_to_disk(platform, fmnist_queries, monkeypatch):
    path = sorted((fmnist_queries / "coat").iterdir())[0]
    expected = platform.classify(path, k=5)
    by_image = platform.search(image=path, k=3)

    def no_folder(*args, **kwargs):
        raise AssertionError("an in-memory query image was written to a temporary folder")

    monkeypatch.setattr("tempfile.TemporaryDirectory", no_folder)
    for same in (path.read_bytes(), Image.open(path), np.asarray(Image.open(path).convert("L"))):
        got = platform.classify(same, k=5)
        assert (got.label, got.neighbours) == (expected.label, expected.neighbours)
        assert got.source == "<image 0>"
        assert platform.search(image=same, k=3).matches == by_image.matches
    failed = platform.classify_many([path.read_bytes()[:50], path], k=5, names=["cut.jpg", "ok"])
    assert isinstance(failed[0], Failure) and failed[0].source == "cut.jpg"
    assert "<image" not in failed[0].error and failed[1].label == expected.label


def test_search_kinds_need_their_model(platform, fmnist_queries):
    query = sorted((fmnist_queries / "bag").iterdir())[0]
    with pytest.raises(NotFoundError, match="no visual-semantic model"):
        platform.search(image=query, kind="label")
    with pytest.raises(NotFoundError, match="no visual-semantic model"):
        platform.zero_shot([query])
    with pytest.raises(DataError, match="needs model="):
        platform.search(image=query.read_bytes(), kind="caption")
    with pytest.raises(DataError, match="finds images"):
        platform.search(text="a bag", kind="label")
    with pytest.raises(DataError, match="kind must be one of"):
        platform.search(image=query, kind="point")


def test_a_borrowed_context_is_left_open(platform):
    with pytest.raises(ConfigError, match="needs the settings"):
        Platform(context=platform.context)
    borrower = Platform(settings=platform.settings, context=platform.context)
    borrower.close()
    assert borrower.context is platform.context and platform.classes()


def test_a_text_search_with_a_sentence_index(tmp_path):
    from embplat.ingest.scenes import build_scenes
    from embplat.pipelines.sentences import index_captions, search_sentences

    scenes = build_scenes(tmp_path / "scenes", images=10, size=64)
    with Platform(settings=_settings(tmp_path / "home")) as p:
        assert p.ingest(scenes, embed=False)["captions"] == 50
        assert index_captions(p.context) == 50
        hits, used = search_sentences(p.context, "a red circle above a square", k=3)
        found = p.search(text="a red circle above a square", k=3, model=used)
    assert found.model == used == "sentences-minilm"
    assert [(m.image_id, m.score) for m in found.matches] == [(h.image_id, h.score) for h in hits]
