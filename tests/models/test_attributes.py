"""Class attributes (AwA2's predicate matrix) as label vectors: reading the files, keeping
them in the data home, and looking up classes and predicates."""

import numpy as np
import pytest

from embplat.errors import ConfigError, DataError
from embplat.models.attributes import (
    AttributeTable,
    parse_attribute_values,
    read_awa_attributes,
    store_attributes,
    write_awa_attributes,
)
from embplat.models.wordvectors import label_vector, open_vectors, resolve_source

CLASSES = ["zebra", "killer+whale", "dalmatian"]
PREDICATES = ["black", "white", "stripes", "spots", "water"]
MATRIX = np.array(
    [[80, 90, 100, 0, 0], [100, 70, 0, 10, 100], [60, 100, 0, 100, 0]], dtype=np.float32
)


def _awa(tmp_path, matrix_text=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "classes.txt").write_text(
        "".join(f"{i}\t{c}\n" for i, c in enumerate(CLASSES, 1)), encoding="utf-8"
    )
    write_awa_attributes(tmp_path, AttributeTable(CLASSES, PREDICATES, MATRIX))
    if matrix_text is not None:
        (tmp_path / "predicate-matrix-continuous.txt").write_text(matrix_text, encoding="utf-8")
    return tmp_path


def test_the_awa2_files_round_trip_and_unknown_values_read_as_zero(tmp_path):
    table = read_awa_attributes(_awa(tmp_path))
    assert table is not None
    assert (table.classes, table.predicates) == (CLASSES, PREDICATES)
    np.testing.assert_array_equal(table.matrix, MATRIX)
    rows = "-1 90 100 0 0\n100 70 0 10 100\n60 100 0 100 0\n"
    table = read_awa_attributes(_awa(tmp_path / "unknown", rows))
    assert table.matrix[0, 0] == 0  # AwA's -1: unknown
    assert read_awa_attributes(tmp_path / "nothing") is None


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ("1 2 3\n1 2 3 4 5\n1 2 3 4 5\n", r"continuous.txt:1: 3 values, expected 5"),
        ("1 2 3 4 x\n", r"continuous.txt:1: not a row of numbers"),
        ("1 2 3 4 5\n1 2 3 4 5\n", r"2 rows, but .*classes.txt lists 3 classes"),
        ("1 2 3 4 nan\n1 2 3 4 5\n1 2 3 4 5\n", r"expected 5 finite numbers"),
    ],
)
def test_a_malformed_matrix_is_refused_naming_the_file_and_line(tmp_path, rows, match):
    with pytest.raises(DataError, match=match):
        read_awa_attributes(_awa(tmp_path, rows))


def test_a_predicate_name_with_a_space_is_refused_not_cut(tmp_path):
    _awa(tmp_path)
    (tmp_path / "predicates.txt").write_text("1\tblack\nwhite fur\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"predicates.txt:2: expected .* must not contain spaces"):
        read_awa_attributes(tmp_path)


def test_classes_map_to_their_rows_and_predicate_texts_to_those_predicates(tmp_path):
    source = store_attributes(AttributeTable(CLASSES, PREDICATES, MATRIX), tmp_path)
    vectors = open_vectors(source)
    assert vectors.dim == 5
    for spelling in ("killer+whale", "Killer Whale", "killer_whale"):
        np.testing.assert_allclose(
            label_vector(vectors, spelling), MATRIX[1] / np.linalg.norm(MATRIX[1]), rtol=1e-6
        )
    half = 0.5**0.5
    np.testing.assert_allclose(label_vector(vectors, "black stripes"), [half, 0, half, 0, 0])
    with pytest.raises(DataError, match=r"'giraffe' is neither a class .* nor made of its"):
        label_vector(vectors, "giraffe")
    empty = store_attributes(AttributeTable(["ghost"], PREDICATES, np.zeros((1, 5))), tmp_path)
    with pytest.raises(DataError, match="class 'ghost' has no attribute set"):
        label_vector(open_vectors(empty), "ghost")


def test_each_table_is_kept_so_a_model_keeps_the_one_it_was_trained_on(tmp_path):
    with pytest.raises(ConfigError, match="no class attributes in the data home"):
        resolve_source("attributes", tmp_path)
    first = store_attributes(AttributeTable(CLASSES, PREDICATES, MATRIX), tmp_path)
    assert resolve_source("attributes", tmp_path) == first
    assert store_attributes(AttributeTable(CLASSES, PREDICATES, MATRIX), tmp_path) == first
    changed = MATRIX.copy()
    changed[0, 0] = 0
    second = store_attributes(AttributeTable(CLASSES, PREDICATES, changed), tmp_path)
    assert second != first and resolve_source("attributes", tmp_path) == second
    assert open_vectors(first).vector("zebra")[0] == 80  # the first table is still there
    assert open_vectors(second).vector("zebra")[0] == 0
    with pytest.raises(DataError, match="3 classes and 2 predicates"):
        AttributeTable(CLASSES, PREDICATES[:2], MATRIX)


def test_a_class_row_is_added_once_and_checked_against_the_predicates():
    table = AttributeTable(CLASSES, PREDICATES, MATRIX)
    grown = table.with_row("skunk", parse_attribute_values("black=100, white=60,stripes"))
    assert grown.classes == [*CLASSES, "skunk"] and table.classes == CLASSES
    np.testing.assert_array_equal(grown.matrix[-1], [100, 60, 100, 0, 0])
    assert grown.with_row("Skunk", {"black": 100, "white": 60, "stripes": 100}) is grown
    assert table.with_row("zebra", dict(zip(PREDICATES, MATRIX[0].tolist(), strict=True))) is table
    for values, match in [
        ({"black": 50}, "already has other attributes"),
        ({"wings": 100}, r"'wings' are not predicates of this table; known: black, white"),
        ({"black": -1}, "non-negative"),
        ({"black": 0}, "at least one positive"),
    ]:
        with pytest.raises(DataError, match=match):
            table.with_row("zebra" if "already" in match else "bat", values)
    for spec, match in [("black=lots", "'lots' is not a number"), ("black,,white", "no predicate")]:
        with pytest.raises(ConfigError, match=match):
            parse_attribute_values(spec)


def test_store_without_making_current_keeps_the_current_table(tmp_path):
    first = store_attributes(AttributeTable(CLASSES, PREDICATES, MATRIX), tmp_path)
    grown = AttributeTable(CLASSES, PREDICATES, MATRIX).with_row("bat", {"black": 100})
    other = store_attributes(grown, tmp_path, make_current=False)
    assert other != first and resolve_source("attributes", tmp_path) == first
    assert open_vectors(other).vector("bat") is not None
