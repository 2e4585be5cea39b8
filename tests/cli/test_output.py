import math

import numpy as np
import pytest

from embplat.cli.ingest import parse_models
from embplat.cli.output import comma_list, fmt_metric


@pytest.mark.parametrize(
    ("value", "items"),
    [
        (None, []),
        ("", []),
        (" , ", []),
        ("a", ["a"]),
        ("ankle boot, bag,,coat ", ["ankle boot", "bag", "coat"]),
    ],
)
def test_comma_list_strips_items_and_drops_empty_ones(value, items):
    assert comma_list(value) == items


def test_models_option_takes_all_none_or_names():
    assert parse_models(" ALL ") is None
    assert parse_models("none") == []
    assert parse_models("m1, m2") == ["m1", "m2"]


@pytest.mark.parametrize(
    ("value", "digits", "shown"),
    [
        (None, 4, "—"),
        (0.123456, 4, "0.1235"),
        (0.123456, 3, "0.123"),
        (np.float32(0.5), 4, "0.5000"),
        (40, 4, "40"),
        (np.int64(7), 3, "7"),
        (math.nan, 4, "nan"),
    ],
)
def test_metric_values_have_one_format(value, digits, shown):
    assert fmt_metric(value, digits) == shown
