"""Activity grouping of users by their number of training interactions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from debiasrec.data.dataset import Dataset
from debiasrec.data.groups import activity_groups
from debiasrec.errors import DataError


def _ds(counts: list[int]) -> Dataset:
    users = np.repeat(np.arange(len(counts)), counts)
    items = np.concatenate([np.arange(c) for c in counts])
    frame = pd.DataFrame({"user_id": users, "item_id": items})
    return Dataset.from_frames(frame, rating_col=None, timestamp_col=None)


def test_quartile_cuts() -> None:
    counts = [1, 2, 3, 4, 5, 6, 7, 8]  # q25 = 2.75, q75 = 6.25
    g = activity_groups(_ds(counts))
    assert list(g.categories) == ["cold", "mid", "active"] and g.ordered
    by_user = dict(zip(_ds(counts).user_vocab, g, strict=True))
    assert [by_user[u] for u in range(8)] == ["cold"] * 2 + ["mid"] * 4 + ["active"] * 2


def test_bad_arguments() -> None:
    ds = _ds([1, 2, 3])
    with pytest.raises(DataError, match="quantiles"):
        activity_groups(ds, quantiles=(0.8, 0.2))
    with pytest.raises(DataError, match="labels"):
        activity_groups(ds, labels=("a", "a", "b"))
