"""Zero-shot and classifier options over real HTTP: ``POST /classify`` with ``space``,
``gamma``, ``hubness``, ``top``, ``unseen_only``, a classifier ``model`` and ``knn``, and
``/search`` with ``space`` and ``hubness``, answer exactly as :class:`embplat.api.Platform`
(the gamma applied included); bad values are 4xx errors that name them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import Server, api_settings, start_server, stop

pytestmark = pytest.mark.slow

SEEN = ["trouser", "bag", "sneaker"]
TRAIN = {
    "encoder": "tiny_cnn",
    "image_size": 32,
    "batch_size": 8,
    "lr": 1e-2,
    "device": "cpu",
    "freeze_epochs": 1,
    "unfreeze_epochs": 1,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fmnist_root: Path) -> Iterator[Server]:
    """A home with 3 seen classes and unseen ``sandal``, a tiny classifier and a tiny DeViSE
    model (with its stored calibration) trained on it, served."""
    from embplat.api import Platform
    from embplat.ingest.fashion_mnist import build_fashion_mnist
    from embplat.pipelines.train import train_recipe

    base = tmp_path_factory.mktemp("zero-shot")
    root = build_fashion_mnist(
        base / "data", per_class=12, classes=[*SEEN, "sandal"], unseen=["sandal"]
    )
    settings = api_settings(base / "home")
    settings.ingest.valid_fraction = 0.3  # a validation split to calibrate gamma on
    with Platform(settings=settings) as platform:
        platform.ingest(root)
        train_recipe(platform.context, "classifier", TRAIN)
        train_recipe(platform.context, "devise", {**TRAIN, "stage1_epochs": 0})
    running = start_server(base / "home", base / "serve.log")
    yield running
    stop(running)


@pytest.fixture
def api(trained: Server) -> Iterator[Any]:
    from embplat.api import Platform

    with Platform(settings=api_settings(trained.home)) as platform:
        yield platform


def _images(server: Server) -> list[Path]:
    """One image of each class (the unseen one included)."""
    root = server.home.parent / "data" / "JPEGImages"
    return [sorted((root / name).iterdir())[0] for name in [*SEEN, "sandal"]]


def _post(client: httpx.Client, paths: list[Path], **params: object) -> httpx.Response:
    files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    return client.post("/classify", params=params, files=files)


def _same(served: Any, expected: Any) -> bool:
    """Equal JSON, floats within 1e-5 (two processes, one BLAS each)."""
    if isinstance(expected, float) and isinstance(served, float):
        return math.isclose(served, expected, abs_tol=1e-5)
    if isinstance(expected, dict) and isinstance(served, dict):
        return served.keys() == expected.keys() and all(
            _same(served[key], expected[key]) for key in expected
        )
    if isinstance(expected, list) and isinstance(served, list):
        return len(served) == len(expected) and all(map(_same, served, expected))
    return bool(served == expected)


ZERO_SHOT = {
    "stored gamma": {"space": "semantic", "k": 4},
    "explicit gamma": {"space": "semantic", "gamma": 0.25},
    "no calibration": {"space": "semantic", "gamma": 0.0, "unseen_only": True},
    "csls": {"space": "semantic", "hubness": "csls", "k": 3},
    "isoftmax with gamma": {"space": "semantic", "hubness": "isoftmax", "gamma": 0.1},
    "labels capped at 10": {"space": "semantic", "k": 50},
    "conse": {"space": "conse", "top": 3, "k": 2},
}


@pytest.mark.parametrize("case", list(ZERO_SHOT), ids=str)
def test_zero_shot_classify_equals_the_python_api(trained, api, case):
    params = ZERO_SHOT[case]
    paths = _images(trained)
    with trained.client() as client:
        response = _post(client, paths, **params)
    assert response.status_code == 200, response.text
    served = response.json()["results"]
    options = {key: value for key, value in params.items() if key != "k"}
    expected = api.zero_shot(
        paths, k=min(int(params.get("k", 10)), 10), names=[p.name for p in paths], **options
    )
    assert _same(served, [a.to_dict() for a in expected])
    labels = 1 if params.get("unseen_only") else 4  # sandal, or every class
    assert len(served[0]["candidates"]) == min(int(params.get("k", 10)), 10, labels)


def test_the_applied_gamma_is_in_the_json(trained, api):
    from embplat.catalog import repo

    with api.context.sessions() as session:
        config = repo.get_model(session=session, name="devise-1").config
    stored = config["gzsl_calibration"]["gamma"]
    with trained.client() as client:
        default = _post(client, _images(trained)[:1], space="semantic").json()["results"][0]
        forced = _post(client, _images(trained)[:1], space="semantic", gamma=0.25).json()
        csls = _post(client, _images(trained)[:1], space="semantic", hubness="csls").json()
    assert isinstance(stored, float) and default["gamma"] == pytest.approx(stored)
    assert default["model"] == "devise-1" and default["notes"] == []
    assert forced["results"][0]["gamma"] == 0.25
    # the stored gamma is calibrated on cosines: not applied under a hubness correction
    assert csls["results"][0]["gamma"] == 0.0 and "csls" in csls["results"][0]["notes"][0]


@pytest.mark.parametrize("knn", [False, True], ids=["softmax", "knn"])
def test_a_classifier_model_answers_as_the_python_api(trained, api, knn):
    paths = _images(trained)
    with trained.client() as client:
        response = _post(client, paths, model="classifier-1", k=3, knn=knn)
    assert response.status_code == 200, response.text
    served = response.json()["results"]
    names = [p.name for p in paths]
    expected = api.classify_many(paths, k=3, model="classifier-1", knn=knn, names=names)
    assert _same(served, [a.to_dict() for a in expected])
    assert {a["method"] for a in served} == {"knn" if knn else "softmax"}


def test_search_spaces_equal_the_python_api(trained, api):
    sandal = _images(trained)[-1]
    upload = {"image": (sandal.name, sandal.read_bytes(), "image/jpeg")}
    with trained.client() as client:
        semantic = client.post("/search", params={"space": "semantic", "k": 3}, files=upload)
        labels = client.post("/search", params={"kind": "label", "k": 4}, files=upload)
        text = client.get("/search", params={"text": "bag", "hubness": "csls", "k": 3})
        conse = client.get("/search", params={"text": "bag", "space": "conse", "k": 3})
        expanded = client.get("/search", params={"text": "bag", "expand": 5, "k": 3})
    assert semantic.status_code == labels.status_code == text.status_code == 200
    expected = api.search(image=sandal, k=3, space="semantic").to_dict()
    assert _same(semantic.json()["matches"], expected["matches"])
    assert semantic.json()["model"] == "devise-1"  # the newest DeViSE model's image space
    assert _same(
        labels.json()["matches"], api.search(image=sandal, k=4, kind="label").to_dict()["matches"]
    )
    expected = api.search(text="bag", k=3, hubness="csls").to_dict()
    assert _same(text.json(), expected)
    assert conse.status_code == 200, conse.text
    assert _same(conse.json(), api.search(text="bag", k=3, space="conse").to_dict())
    assert conse.json()["model"].startswith("conse-")
    assert _same(expanded.json(), api.search(text="bag", k=3, expand=5).to_dict())


BAD = {
    "space": ("POST", "/classify", {"space": "devise"}, "'devise'"),
    "hubness": ("POST", "/classify", {"space": "semantic", "hubness": "hubs"}, "'hubs'"),
    "top": ("POST", "/classify", {"space": "conse", "top": 0}, "top"),
    "gamma nan": ("POST", "/classify", {"space": "semantic", "gamma": "nan"}, "'nan'"),
    "gamma text": ("POST", "/classify", {"space": "semantic", "gamma": "high"}, "'high'"),
    "search space": ("GET", "/search", {"text": "bag", "space": "words"}, "'words'"),
    "search hubness": ("GET", "/search", {"text": "bag", "hubness": "x"}, "'x'"),
    "conse image search": ("POST", "/search", {"space": "conse"}, "'conse'"),
    "expand conse": ("GET", "/search", {"text": "bag", "space": "conse", "expand": 3}, "expand"),
    "expand negative": ("GET", "/search", {"text": "bag", "expand": -1}, "expand"),
    "not a DeViSE model": ("POST", "/classify", {"space": "semantic", "model": "classifier-1"}, ""),
}


@pytest.mark.parametrize("case", list(BAD), ids=str)
def test_bad_zero_shot_values_are_4xx_naming_them(trained, case):
    method, url, params, named = BAD[case]
    path = _images(trained)[0]
    files = {"image": (path.name, path.read_bytes(), "image/jpeg")} if method == "POST" else None
    with trained.client() as client:
        response = client.request(method, url, params=params, files=files)
    assert 400 <= response.status_code < 500, response.text
    detail = response.json()["detail"]
    assert named in detail and "Traceback" not in response.text


def test_a_conse_model_is_refused_with_the_space_to_use(trained, api):
    from embplat.errors import ConfigError

    sandal = _images(trained)[-1]
    with trained.client() as client:
        registered = _post(client, [sandal], space="conse")  # registers conse-<vectors>-t10
        name = registered.json()["results"][0]["model"]
        by_model = _post(client, [sandal], model=name)
        search = client.post(
            "/search",
            params={"model": name},
            files={"image": (sandal.name, sandal.read_bytes(), "image/jpeg")},
        )
    assert name.startswith("conse-")
    for response in (by_model, search):
        assert response.status_code == 422, response.text
        assert "--space conse" in response.json()["detail"]
    with pytest.raises(ConfigError, match="ConSE space"):
        api.classify(sandal, model=name)


def test_the_platform_checks_space_and_hubness(api):
    from embplat.errors import ConfigError, DataError

    with pytest.raises(DataError, match="'devise'"):
        api.zero_shot([], space="devise")
    with pytest.raises(ConfigError, match="'hubs'"):
        api.zero_shot([], space="conse", hubness="hubs")
    with pytest.raises(DataError, match="'words'"):
        api.search(text="bag", space="words")
