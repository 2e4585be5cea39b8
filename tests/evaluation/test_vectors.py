"""Labelled vectors and classes held out as never enrolled."""

import numpy as np
import pytest

from embplat.errors import ConfigError
from embplat.evaluation.vectors import SplitVectors, hold_out


def _vectors(classes: list[str]) -> SplitVectors:
    ids = [f"{c}{i}" for i, c in enumerate(classes)]
    rows = np.arange(len(classes) * 2, dtype=np.float32).reshape(-1, 2)
    return SplitVectors(ids, classes, [f"/{i}.jpg" for i in ids], rows)


def test_labels_where_and_concatenation():
    v = _vectors(["b", "a", "b"])
    assert v.labels(["a", "b"]).tolist() == [1, 0, 1]
    kept = v.where(np.array([True, False, True]))
    assert kept.ids == ["b0", "b2"] and kept.vectors.tolist() == [[0, 1], [4, 5]]
    both = kept + v.where(np.array([False, True, False]))
    assert both.classes == ["b", "b", "a"] and len(both) == 3 and both.paths[-1] == "/a1.jpg"


def test_hold_out_takes_the_unknown_classes_out_of_queries_and_references():
    queries, refs = _vectors(["a", "b", "c", "c"]), _vectors(["a", "b", "c"])
    same = hold_out(queries, refs, ())
    assert same[0] is queries and same[1] is refs and len(same[2]) == 0
    known, kept, held = hold_out(queries, refs, ["c"])
    assert known.classes == ["a", "b"] and kept.classes == ["a", "b"]
    assert held.ids == ["c2", "c3"]
    with pytest.raises(ConfigError, match=r"\['zebra'\] have no query"):
        hold_out(queries, refs, ["zebra"])
    with pytest.raises(ConfigError, match="leaves nothing known"):
        hold_out(queries, refs, ["a", "b", "c"])
