"""The search page in a real headless browser (Debian's chromium and chromium-driver)."""

from __future__ import annotations

from pathlib import Path

import pytest
from servers import api_settings, start_server, stop

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SEEN = ["trouser", "bag", "sneaker"]


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.is_file() and DRIVER.is_file()):
        pytest.skip("needs Debian's chromium and chromium-driver (`make install` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def devise_server(tmp_path_factory, fmnist_root):
    """A home with 3 seen classes and a tiny DeViSE model trained on them, served."""
    from embplat.api import Platform
    from embplat.ingest.fashion_mnist import build_fashion_mnist
    from embplat.pipelines.train import train_recipe

    base = tmp_path_factory.mktemp("page")
    root = build_fashion_mnist(base / "data", per_class=16, classes=SEEN)
    config = {
        "encoder": "tiny_cnn",
        "image_size": 32,
        "batch_size": 8,
        "lr": 1e-2,
        "device": "cpu",
        "stage1_epochs": 1,
        "freeze_epochs": 2,
        "unfreeze_epochs": 1,
    }
    with Platform(settings=api_settings(base / "home")) as platform:
        platform.ingest(root, embed=False)
        train_recipe(platform.context, "devise", config)
        classifier = {k: v for k, v in config.items() if k != "stage1_epochs"}
        train_recipe(platform.context, "classifier", classifier)
    running = start_server(base / "home", base / "serve.log")
    yield running
    stop(running)


def _hits(driver, count: int) -> list[tuple[str, bool]]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def loaded(d):
        cells = d.find_elements(By.CSS_SELECTOR, "#results .hit")
        # label cells (zero-shot, softmax) have no picture
        images = [i for c in cells for i in c.find_elements(By.TAG_NAME, "img")]
        done = len(cells) == count and all(
            d.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images
        )
        return cells if done else False

    cells = WebDriverWait(driver, 60).until(loaded)
    return [(c.find_element(By.CLASS_NAME, "label").text, True) for c in cells]


def test_upload_an_image_and_see_its_class(browser, server, platform_api, fmnist_queries):
    from selenium.webdriver.common.by import By

    query = sorted((fmnist_queries / "trouser").iterdir())[0]
    expected = platform_api.classify(query, k=10)
    browser.get(server.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(query))
    labels = [label for label, _ in _hits(browser, 10)]
    assert labels == [m.label for m in expected.neighbours]
    assert browser.find_element(By.ID, "vote").get_attribute("data-label") == expected.label
    links = browser.find_elements(By.CSS_SELECTOR, "#results .hit a")
    assert links[0].get_attribute("href").endswith(f"/images/{expected.neighbours[0].image_id}")


def test_type_a_class_name_on_a_devise_model_and_see_its_images(browser, devise_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from embplat.api import Platform

    browser.get(devise_server.url + "/")
    WebDriverWait(browser, 30).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) > 1
    )
    model = Select(browser.find_element(By.ID, "model"))
    model.select_by_value("devise-1")
    k = browser.find_element(By.ID, "k")
    k.clear()
    k.send_keys("6")
    browser.find_element(By.ID, "text").send_keys("trouser")
    browser.find_element(By.ID, "go").click()
    labels = [label for label, _ in _hits(browser, 6)]
    with Platform(settings=api_settings(devise_server.home)) as platform:
        expected = platform.search(text="trouser", k=6, model="devise-1")
    assert labels == [m.label for m in expected.matches]
    assert set(labels) <= set(SEEN)
    assert "devise-1" in browser.find_element(By.ID, "status").text


def _choose(browser, url: str, *, model: str = "", space: str = "encoder") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(url + "/")
    WebDriverWait(browser, 30).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) > 2
    )
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    Select(browser.find_element(By.ID, "space")).select_by_value(space)


def test_the_space_selector_classifies_among_labels(browser, devise_server, fmnist_queries):
    from selenium.webdriver.common.by import By

    from embplat.api import Platform

    query = sorted((fmnist_queries / "bag").iterdir())[0]
    _choose(browser, devise_server.url, space="semantic")
    browser.find_element(By.ID, "file").send_keys(str(query))
    labels = [label for label, _ in _hits(browser, len(SEEN))]
    with Platform(settings=api_settings(devise_server.home)) as platform:
        [expected] = platform.zero_shot([query], k=10)
    assert labels == [f"{c.label} ({c.role})" for c in expected.candidates]
    vote = browser.find_element(By.ID, "vote")
    assert vote.get_attribute("data-label") == expected.label
    assert "model devise-1" in vote.text and "votes" not in vote.text


def test_a_softmax_answer_shows_its_probability(browser, devise_server, fmnist_queries):
    from selenium.webdriver.common.by import By

    from embplat.api import Platform

    query = sorted((fmnist_queries / "bag").iterdir())[0]
    _choose(browser, devise_server.url, model="classifier-1")
    browser.find_element(By.ID, "file").send_keys(str(query))
    labels = [label for label, _ in _hits(browser, len(SEEN))]
    with Platform(settings=api_settings(devise_server.home)) as platform:
        expected = platform.classify(query, k=10, model="classifier-1")
    assert expected.method == "softmax" and labels == list(expected.probabilities)
    vote = browser.find_element(By.ID, "vote").text
    assert f"p={expected.confidence:.2f}" in vote and "softmax" in vote
    assert "votes" not in vote
