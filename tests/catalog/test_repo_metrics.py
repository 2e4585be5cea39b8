import math

import numpy as np
import pytest

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import NotFoundError

MODEL = {"kind": "metric", "encoder": "tiny_cnn", "weights": "w.pt", "dim": 16, "image_size": 32}


def test_metrics_are_upserted_and_compared_side_by_side(sessions):
    with transaction(sessions) as s:
        a = repo.ensure_model(session=s, name="metric-1", **MODEL).id
        b = repo.ensure_model(session=s, name="devise-1", **{**MODEL, "kind": "devise"}).id
        written = repo.record_metrics(
            session=s,
            model_id=a,
            split="test",
            values={
                "precision_at_1": 0.5,
                "NMI": np.float32(0.25),
                "queries": 40,
                "AMI": math.nan,
                "weighted": False,  # not a number: skipped
                "per_class": {"x": 1},  # not a number: skipped
            },
        )
        assert written == 4
        repo.record_metrics(session=s, model_id=b, split="test", values={"precision_at_1": 0.75})
        repo.record_metrics(session=s, model_id=a, split="valid", values={"precision_at_1": 0.6})
    with transaction(sessions) as s:  # re-evaluation overwrites, other names stay
        repo.record_metrics(session=s, model_id=a, split="test", values={"precision_at_1": 0.55})
    with transaction(sessions) as s:
        both = repo.model_metrics(session=s, names=["metric-1", "devise-1"], split="test")
        assert list(both) == ["metric-1", "devise-1"]
        assert both["metric-1"] == {"AMI": None, "NMI": 0.25, "precision_at_1": 0.55, "queries": 40}
        assert both["devise-1"] == {"precision_at_1": 0.75}
        every = repo.model_metrics(session=s, names=["metric-1"])
        assert every["metric-1"]["valid/precision_at_1"] == 0.6
        assert every["metric-1"]["test/precision_at_1"] == 0.55
        assert repo.record_metrics(session=s, model_id=a, split="test", values={}) == 0
        with pytest.raises(NotFoundError, match=r"'metric-9'.*known: devise-1, metric-1"):
            repo.model_metrics(session=s, names=["metric-1", "metric-9"])
