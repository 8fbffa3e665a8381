"""ActivityReweight: every user, not every interaction, counts (hand-computed weights)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from debiasrec.data import Dataset
from debiasrec.debias.pre import TRANSFORMS, ActivityReweight
from debiasrec.errors import ConfigError
from debiasrec.testing import TransformContract


class TestActivityReweight(TransformContract):
    component = ActivityReweight
    params = {"beta": 0.5}


def _ds(weights: np.ndarray | None = None) -> Dataset:
    # user a: 1 interaction, user b: 4 interactions
    return Dataset(
        np.array([0, 1, 1, 1, 1]),
        np.array([0, 0, 1, 2, 3]),
        user_vocab=pd.Index(["a", "b"]),
        item_vocab=pd.Index([10, 11, 12, 13]),
        weights=weights,
    )


def test_weights_by_hand() -> None:
    out = ActivityReweight(beta=1.0).apply(_ds())
    # raw n_u^-1: a -> 1, b -> 1/4 each; mean over 5 rows = 2/5; normalised: 2.5, 0.625 x 4
    np.testing.assert_allclose(out.weights, [2.5, 0.625, 0.625, 0.625, 0.625])
    per_user = np.bincount(out.users, weights=out.weights)
    np.testing.assert_allclose(per_user, [2.5, 2.5])  # beta = 1: every user the same total
    half = ActivityReweight(beta=0.5).apply(_ds())
    raw = np.array([1.0, 0.5, 0.5, 0.5, 0.5])
    np.testing.assert_allclose(half.weights, raw / raw.mean(), rtol=1e-6)
    assert ActivityReweight(beta=0.5).apply(_ds()).weights.mean() == pytest.approx(1.0)


def test_beta_zero_changes_nothing_and_existing_weights_multiply() -> None:
    np.testing.assert_allclose(ActivityReweight(beta=0.0).apply(_ds()).weights, np.ones(5))
    prior = np.array([2.0, 1.0, 1.0, 1.0, 1.0])
    out = ActivityReweight(beta=1.0).apply(_ds(prior))
    raw = np.array([2.0, 0.25, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(out.weights, raw / raw.mean(), rtol=1e-6)


def test_registered_sweepable_and_validated() -> None:
    assert TRANSFORMS.lookup("activity_reweight") is ActivityReweight
    assert ActivityReweight.sweep_key == "beta" and ActivityReweight.sets_weights
    with pytest.raises(ConfigError, match="beta"):
        ActivityReweight(beta=1.5)
    t = ActivityReweight(beta=1.0)
    t.apply(_ds())
    assert t.report_["user_weight_min"] == pytest.approx(t.report_["user_weight_max"])
