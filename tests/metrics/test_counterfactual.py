"""Counterfactual list metrics on hand-made lists (values computed by hand in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from debiasrec.errors import DataError
from debiasrec.metrics.counterfactual import (
    holm,
    jaccard,
    prag,
    serp,
    snsr,
    snsr_permutation_test,
    snsv,
)

A = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, -1]])
N = np.array([[1, 2, 3], [3, 2, 1], [1, 4, 5], [7, 8, 9]])


def test_jaccard() -> None:
    # same set; same set reversed; {1} of {1,2,3,4,5}; disjoint
    np.testing.assert_allclose(jaccard(A, N), [1.0, 1.0, 0.2, 0.0])


def test_serp() -> None:
    # weights K - rank + 1 = 3, 2, 1 over K(K+1)/2 = 6: all found; all found; only rank 1; none
    np.testing.assert_allclose(serp(A, N), [1.0, 1.0, 0.5, 0.0])


def test_prag() -> None:
    # row 0: all 3 pairs agree. row 1: reversed, 0 of 3. row 2: neutral positions 1->0, 2->absent,
    # 3->absent: (1,2) and (1,3) agree, (2,3) both absent -> disagree: 2/3. row 3: one pair (1,2),
    # both absent -> 0.
    np.testing.assert_allclose(prag(A, N), [1.0, 0.0, 2 / 3, 0.0])


def test_shape_mismatch() -> None:
    with pytest.raises(DataError):
        jaccard(A, N[:, :2])


def test_snsr_snsv_and_holm() -> None:
    sims = np.array([[1.0, 0.5], [0.0, 0.5]])  # value means 0.75 and 0.25
    assert snsr(sims) == pytest.approx(0.5)
    assert snsv(sims) == pytest.approx(0.25)
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan")})
    # sorted 0.01*3 = 0.03; 0.03*2 = 0.06; max(0.06, 0.04*1) = 0.06
    assert adj["a"] == pytest.approx(0.03) and adj["c"] == pytest.approx(0.06)
    assert adj["b"] == pytest.approx(0.06) and np.isnan(adj["d"])


def test_permutation_test_detects_a_real_effect_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    noise = rng.random((2, 300))
    effect = np.vstack([rng.random(300) * 0.5 + 0.5, rng.random(300) * 0.5])
    assert snsr_permutation_test(effect, n_perm=200, rng=1) < 0.01
    assert snsr_permutation_test(noise, n_perm=200, rng=1) > 0.05
