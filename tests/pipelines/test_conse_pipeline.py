"""ConSE use cases on a tiny catalog of real photos: classify among label names, search the
catalog by a word, keep the ConSE collection in line with the catalog."""

import pytest

from embplat.catalog import repo
from embplat.config import load_settings
from embplat.errors import DataError
from embplat.pipelines.conse import KIND, conse_labels, conse_search, conse_space, sync_conse_index
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.remove import remove_images
from embplat.workers.context import build_context

#: class folder -> skimage photo
PHOTOS = {"cat": "chelsea", "cup": "coffee", "rocket": "rocket"}


def _write(root, imagefactory, name, photo, crops=(0, 12)):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for c in crops:
        img = imagefactory.photo(photo, 240, 200).crop((c, c, 240 - c, 200 - c))
        img.save(folder / f"{name}_{c}.jpg", quality=92)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, imagefactory):
    base = tmp_path_factory.mktemp("conse")
    for name, photo in PHOTOS.items():
        _write(base / "data", imagefactory, name, photo)
    settings = load_settings(
        **{
            "home": base / "home",
            "index.backend": "exact",
            "embed.encoder": "tiny_cnn",
            "embed.num_workers": 0,
        }
    )
    settings.catalog.url = None
    ctx = build_context(settings)
    ingest_tree(ctx, base / "data", embed=False)
    yield ctx, base
    ctx.close()


def test_conse_classifies_photos_among_catalog_labels_without_training(catalog):
    ctx, base = catalog
    paths = [base / "data" / name / f"{name}_0.jpg" for name in PHOTOS]
    preds = conse_labels(ctx, paths, k=3)
    assert [p.label for p in preds] == ["cat", "cup", "rocket"]
    p = preds[0]
    assert p.model == "conse-glove-6b-50d-t10" and p.gamma == 0.0 and p.hubness == "none"
    assert p.candidates[0].label == "cat" and len(p.candidates) == 3
    assert p.candidates[0].score >= p.candidates[1].score >= p.candidates[2].score
    [only] = conse_labels(ctx, paths[:1], candidates=["kitten", "airplane", "qxzvwk"], top=5)
    assert only.label == "kitten" and only.model == "conse-glove-6b-50d-t5"
    assert {c.label for c in only.candidates} == {"kitten", "airplane"}  # no vector: skipped
    with pytest.raises(DataError, match="no candidate label"):
        conse_labels(ctx, paths[:1], candidates=["qxzvwk"])
    with ctx.sessions() as session:
        assert repo.get_model(session=session, name=p.model).kind == KIND


def test_conse_search_finds_images_by_word_and_follows_the_catalog(catalog, imagefactory):
    ctx, base = catalog
    hits, used = conse_search(ctx, "cat", k=2)
    assert used == "conse-glove-6b-50d-t10"
    assert [h.label for h in hits] == ["cat", "cat"] and hits[0].score >= hits[1].score
    assert conse_search(ctx, "rocket", k=1)[0][0].label == "rocket"
    space = conse_space(ctx)
    assert space.index.count({"kind": KIND}) == 6
    assert sync_conse_index(ctx, space) == {"added": 0, "removed": 0, "failed": 0}

    _write(base / "data", imagefactory, "cat", "chelsea", crops=(24,))
    ingest_tree(ctx, base / "data", embed=False)  # a ConSE space never blocks ingest
    with ctx.sessions() as session:
        cats = [
            r[0]
            for r in repo.labelled_images(session=session, splits=["train", "valid"])
            if r[2] == "cat"
        ]
    remove_images(ctx, cats[:1])
    assert sync_conse_index(ctx, space) == {"added": 1, "removed": 1, "failed": 0}
    assert space.index.count({"kind": KIND}) == 6
    with pytest.raises(DataError, match="--k must be at least 1"):
        conse_search(ctx, "cat", k=0)
