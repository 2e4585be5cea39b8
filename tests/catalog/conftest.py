from collections.abc import Callable
from typing import Any

import pytest

from embplat.catalog import repo
from embplat.catalog.db import make_engine, session_factory, transaction, upgrade


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def catalog_url(request, tmp_path):
    """The same catalog tests on SQLite and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def sessions(catalog_url):
    """A session factory on a catalog at schema head (SQLite, then PostgreSQL)."""
    engine = make_engine(catalog_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def image_row() -> Callable[..., dict[str, Any]]:
    """``image_row(sha, class_id, path="")``: the columns of an image, as ``add_images`` takes."""

    def make(sha: str, class_id: int, path: str = "") -> dict[str, Any]:
        return {
            "sha256": sha,
            "path": path or f"/x/{sha}.jpg",
            "class_id": class_id,
            "split": "train",
            "width": 4,
            "height": 4,
            "mode": "RGB",
            "nbytes": 10,
        }

    return make


@pytest.fixture
def model_id(sessions) -> int:
    """The id of a registered model ``m`` (4-d)."""
    with transaction(sessions) as s:
        return repo.ensure_model(
            session=s, name="m", encoder="e", weights="w", dim=4, image_size=8, config={}
        ).id
