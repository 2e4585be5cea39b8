"""Parallel decode for the embed path: JPEG draft decoding, threads ahead of the forward pass,
per-image errors inside a batch, and batched query embedding."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embplat.catalog import repo
from embplat.catalog.db import make_engine, session_factory, transaction, upgrade
from embplat.ingest.decode import BatchDecoder, prefetched
from embplat.ingest.embedding import embed_images
from embplat.ingest.images import load_rgb
from embplat.ingest.register import register_items
from embplat.ingest.scan import scan_tree
from embplat.models import get_encoder
from embplat.retrieval.exact import ExactIndex

MAX = 10**8


def test_draft_decodes_a_large_jpeg_smaller_but_alike(tmp_path: Path, imagefactory) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(imagefactory.encode(imagefactory.photo("chelsea", 512, 384), "JPEG"))
    full = load_rgb(path, max_pixels=MAX)
    drafted = load_rgb(path, max_pixels=MAX, draft_side=64)
    assert full.size == (512, 384)
    assert drafted.size == (128, 96)  # 1/4 scale: the largest keeping both sides >= 64
    encoder = get_encoder("tiny_cnn", image_size=64)
    a, b = (encoder.prepare(i).float() for i in (full, drafted))
    assert (a - b).abs().mean() < 4.0  # of 255: the same picture at the encoder's input size


def test_draft_leaves_small_jpegs_and_other_formats_alone(bad_images, imagefactory) -> None:
    for name in ("good_jpeg", "gray_png", "palette_transparent_png", "cmyk_jpeg"):
        plain = np.asarray(load_rgb(bad_images[name], max_pixels=MAX))
        drafted = np.asarray(load_rgb(bad_images[name], max_pixels=MAX, draft_side=40))
        assert np.array_equal(plain, drafted), name


def test_draft_keeps_exif_rotation_and_cmyk_conversion(tmp_path: Path, imagefactory) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = tmp_path / "rotated.jpg"
    rotated.write_bytes(
        imagefactory.encode(imagefactory.photo("chelsea", 400, 200), "JPEG", exif=exif)
    )
    assert load_rgb(rotated, max_pixels=MAX, draft_side=32).size == (50, 100)
    cmyk = tmp_path / "cmyk.jpg"
    source = imagefactory.photo("chelsea", 400, 200)
    cmyk.write_bytes(imagefactory.encode(source.convert("CMYK"), "JPEG", quality=95))
    drafted = load_rgb(cmyk, max_pixels=MAX, draft_side=32)
    assert drafted.mode == "RGB" and drafted.size == (100, 50)  # 1/4 scale
    expected = np.asarray(source.resize((100, 50), Image.Resampling.BOX), dtype=float)
    assert np.abs(np.asarray(drafted, dtype=float) - expected).mean() < 12.0


def test_uint8_path_matches_transform() -> None:
    encoder = get_encoder("tiny_cnn", image_size=40)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)) for _ in range(3)]
    import torch

    floats = torch.stack([encoder.transform(i) for i in images])
    uint8 = torch.stack([encoder.prepare(i) for i in images])
    assert torch.equal(encoder.normalize(uint8), floats)
    assert np.allclose(encoder.encode_uint8(uint8), encoder.encode_images(floats), atol=1e-6)


def test_prefetched_keeps_order_and_decodes_ahead() -> None:
    chunks = [[(i, str(i))] for i in range(7)]
    for workers in (0, 1, 3):
        out = list(prefetched(lambda rows: ([rows[0][0]], None, []), chunks, workers))
        assert [ids for ids, _, _ in out] == [[i] for i in range(7)]


@pytest.fixture
def cataloged(tmp_path, fmnist_root):
    """25 cataloged images of the tiny tree, the 12th replaced by a truncated JPEG."""
    root = tmp_path / "tree"
    shutil.copytree(fmnist_root, root)
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    upgrade(engine)
    sessions = session_factory(engine)
    scan = scan_tree(root)
    with transaction(sessions) as s:
        class_ids = repo.ensure_classes(session=s, names=scan.classes)
    reg = register_items(
        scan.items[:25],
        sessions=sessions,
        class_ids=class_ids,
        unseen=set(),
        valid_fraction=0.0,
        max_pixels=MAX,
    )
    with sessions() as s:
        broken = repo.get_images(session=s, ids=[reg.added[11]])[0].path
    data = Path(broken).read_bytes()
    Path(broken).write_bytes(data[: len(data) // 2])
    return sessions, reg.added, broken


def _embed(sessions, ids, encoder, name, num_workers):
    with transaction(sessions) as s:
        model = repo.ensure_model(
            session=s,
            name=encoder.key,
            encoder=encoder.name,
            weights="random",
            dim=encoder.dim,
            image_size=encoder.image_size,
            config={},
        )
        coll = repo.ensure_collection(
            session=s, name=name, model_id=model.id, backend="exact", dim=encoder.dim
        )
    index = ExactIndex(name, encoder.dim)
    report = embed_images(
        ids,
        sessions=sessions,
        encoder=encoder,
        index=index,
        collection_id=coll.id,
        batch_size=4,
        num_workers=num_workers,
        commit_every=10,
        max_pixels=MAX,
    )
    return report, index


def test_parallel_embed_equals_sequential_and_reports_the_bad_file(cataloged) -> None:
    sessions, ids, broken = cataloged
    encoder = get_encoder("tiny_cnn", image_size=48)
    seq, seq_index = _embed(sessions, ids, encoder, "seq", num_workers=0)
    par, par_index = _embed(sessions, ids, encoder, "par", num_workers=3)
    assert seq.done == par.done == 24
    assert [p for p, _ in seq.failed] == [p for p, _ in par.failed] == [broken]
    assert "truncated or corrupt" in par.failed[0][1]
    assert list(par_index._ids) == list(seq_index._ids)  # same points, same order
    assert np.allclose(par_index._vectors, seq_index._vectors, atol=1e-6)


def test_batch_decoder_matches_per_image_transform(cataloged) -> None:
    sessions, ids, _ = cataloged
    encoder = get_encoder("tiny_cnn", image_size=48)
    with sessions() as s:
        rows = [(i.id, i.path) for i in repo.get_images(session=s, ids=ids[:8])]
    decoder = BatchDecoder(encoder, MAX)
    got_ids, batch, bad = decoder(rows)
    assert got_ids == [i for i, _ in rows] and not bad
    import torch

    reference = torch.stack([encoder.transform(load_rgb(p, max_pixels=MAX)) for _, p in rows])
    assert np.allclose(decoder.encode(batch), encoder.encode_images(reference), atol=1e-6)


def test_classify_batches_queries_with_the_same_predictions(tmp_path, fmnist_root) -> None:
    from embplat.config import load_settings
    from embplat.pipelines.classify import classify
    from embplat.pipelines.ingest import ingest_tree
    from embplat.workers.context import build_context

    settings = load_settings(
        **{
            "home": tmp_path / "home",
            "index.backend": "exact",
            "embed.encoder": "tiny_cnn",
            "embed.batch_size": 3,
            "embed.num_workers": 1,
        }
    )
    settings.catalog.url = None
    ctx = build_context(settings)
    try:
        ingest_tree(ctx, fmnist_root)
        queries = sorted(fmnist_root.rglob("*.jpg"))[:8]
        queries.insert(4, tmp_path / "missing.jpg")
        failures: list = []
        together = classify(ctx, queries, k=3, failures=failures)
        assert [f.path for f in failures] == [str(tmp_path / "missing.jpg")]
        alone = [classify(ctx, [q], k=3)[0] for q in queries if q.exists()]
        assert [p.path for p in together] == [p.path for p in alone]
        assert [p.label for p in together] == [p.label for p in alone]
        for a, b in zip(together, alone, strict=True):
            assert [n.path for n in a.neighbours] == [n.path for n in b.neighbours]
            assert np.allclose([n.score for n in a.neighbours], [n.score for n in b.neighbours])
    finally:
        ctx.close()


class _FailingOnCall:
    """An encoder wrapper whose ``call``-th forward pass raises (a crash mid-job)."""

    def __init__(self, encoder, call: int):
        self.inner, self.left = encoder, call

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_images(self, batch):
        self.left -= 1
        if self.left == 0:
            raise RuntimeError("forward pass failed")
        return self.inner.encode_images(batch)


def test_a_crash_keeps_the_committed_units_and_a_rerun_finishes(cataloged) -> None:
    sessions, ids, broken = cataloged
    encoder = get_encoder("tiny_cnn", image_size=48)
    # units of 10 images in batches of 4: forward calls 1-3 are unit 1, 4-6 unit 2, 7 unit 3
    failing = _FailingOnCall(encoder, call=7)
    with pytest.raises(RuntimeError, match="forward pass failed"):
        _embed(sessions, ids, failing, "crash", num_workers=2)
    with sessions() as s:
        stored = repo.count_embeddings(session=s, collection_id=1)
    assert stored == 19  # two units committed, less the broken file
    report, _ = _embed(sessions, ids, encoder, "crash", num_workers=2)
    assert report.done == 5 and [p for p, _ in report.failed] == [broken]
