import pytest

from embplat.errors import ConfigError
from embplat.pipelines.classify import UNKNOWN, classify
from embplat.pipelines.ingest import ingest_tree


def test_classify_rejects_below_the_threshold_as_unknown(
    context_factory, fmnist_root, fmnist_queries
):
    ctx = context_factory("exact", encoder="tiny_cnn")
    queries = [sorted((fmnist_queries / c).iterdir())[0] for c in ("coat", "sandal", "bag")]
    with pytest.raises(ConfigError, match="reject-on"):
        classify(ctx, queries, reject_below=0.5, reject_on="margin")  # fails before any work
    ingest_tree(ctx, fmnist_root)
    plain = classify(ctx, queries, k=5)
    assert all(p.label != UNKNOWN and p.best_label is None for p in plain)

    # a share can never exceed 1, so every prediction is rejected, its winner kept aside
    rejected = classify(ctx, queries, k=5, reject_below=1.01)
    assert [p.label for p in rejected] == [UNKNOWN] * 3
    assert [p.best_label for p in rejected] == [p.label for p in plain]
    assert rejected[0].as_dict()["best_label"] == plain[0].label

    # on the nearest score: a threshold between two queries' top scores splits them
    tops = sorted(p.neighbours[0].score for p in plain)
    cut = (tops[0] + tops[1]) / 2
    by_score = classify(ctx, queries, k=5, reject_below=cut, reject_on="score")
    assert sum(p.label == UNKNOWN for p in by_score) == 1
    for p, q in zip(by_score, plain, strict=True):
        assert (p.label == UNKNOWN) == (q.neighbours[0].score < cut)
