"""Fidelity metrics of generated profiles, against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from debiasrec.errors import DataError
from debiasrec.metrics.fidelity import (
    genre_distance,
    js_divergence,
    memorisation_rate,
    popularity_distance,
    two_sample_auc,
)


def test_js_divergence_hand_values():
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_divergence([2, 2], [1, 1]) == pytest.approx(0.0)
    # p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4)
    # KL(p||m) = 1/2 log2(2/3) + 1/2 log2(2); KL(q||m) = log2(4/3)
    kl_p = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_q = math.log2(1 / 0.75)
    assert js_divergence([1, 1], [1, 0]) == pytest.approx(0.5 * kl_p + 0.5 * kl_q)
    with pytest.warns(UserWarning, match="empty"):
        assert math.isnan(js_divergence([0, 0], [1, 0]))


def test_two_sample_auc_separable_and_indistinguishable():
    n = 20
    real = sp.csr_matrix((np.ones(n), (np.arange(n), np.zeros(n, int))), shape=(n, 4))
    fake = sp.csr_matrix((np.ones(n), (np.arange(n), np.ones(n, int))), shape=(n, 4))
    res = two_sample_auc(real, fake, rng=0)
    assert res["auc"] == pytest.approx(1.0)
    assert res["n_real"] == n and res["n_generated"] == n
    # identical rows on both sides: every score ties, AUC exactly 0.5
    same = two_sample_auc(real, real.toarray(), rng=0)
    assert same["auc"] == pytest.approx(0.5)
    assert same["auc_ab"] == pytest.approx(0.5) and same["auc_ba"] == pytest.approx(0.5)


def test_two_sample_auc_is_seeded_and_checks_inputs():
    rng = np.random.default_rng(0)
    a = (rng.random((30, 12)) < 0.3).astype(float)
    b = (rng.random((30, 12)) < 0.3).astype(float)
    assert two_sample_auc(a, b, rng=1) == two_sample_auc(a, b, rng=1)
    with pytest.raises(DataError, match="different item counts"):
        two_sample_auc(a, b[:, :5])
    with pytest.warns(UserWarning, match=">= 2"):
        assert math.isnan(two_sample_auc(a[:1], b)["auc"])


def test_popularity_distance_hand_values():
    # 3 items; real popularity: item 0 (2), item 1 (1), item 2 (0) -> ranks 0, 1/2, 1
    real = np.array([[1, 1, 0], [1, 0, 0]])
    same = popularity_distance(real, real)
    assert same["js"] == pytest.approx(0.0) and same["wasserstein_rank"] == pytest.approx(0.0)
    gen = np.array([[0, 0, 1], [0, 0, 1]])  # all mass on rank 1
    res = popularity_distance(real, gen)
    assert res["js"] == pytest.approx(1.0)
    # real rank distribution: 2/3 at 0, 1/3 at 1/2; generated: all at 1
    # W1 = 2/3 * 1 + 1/3 * 1/2 = 5/6
    assert res["wasserstein_rank"] == pytest.approx(5 / 6)


def test_genre_distance_per_group_hand_values():
    genres = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 1]]))  # item 2 has both genres
    real = np.array([[1, 0, 0], [0, 1, 0]])
    gen = np.array([[1, 0, 0], [0, 0, 1]])
    out = genre_distance(real, ["F", "M"], gen, ["F", "M"], genres)
    assert out["F"] == pytest.approx(0.0)
    # M: real genres (0, 1); generated (1/2, 1/2): m = (1/4, 3/4)
    kl_p = math.log2(1 / 0.75)
    kl_q = 0.5 * math.log2(0.5 / 0.25) + 0.5 * math.log2(0.5 / 0.75)
    assert out["M"] == pytest.approx(0.5 * kl_p + 0.5 * kl_q)
    with pytest.warns(UserWarning):
        out = genre_distance(real, ["F", "F"], gen, ["F", "X"], genres)
    assert math.isnan(out["X"])
    with pytest.raises(DataError, match="one entry per profile"):
        genre_distance(real, ["F"], gen, ["F", "M"], genres)


def test_memorisation_rate_hand_values():
    train = np.array([[1, 1, 1, 1, 0], [0, 0, 0, 0, 1]])
    gen = np.array(
        [
            [1, 1, 1, 1, 0],  # copy: Jaccard 1
            [1, 1, 1, 1, 1],  # 4/5 = 0.8 with row 0: counts (threshold inclusive)
            [1, 1, 1, 0, 0],  # 3/4 = 0.75
            [0, 0, 0, 0, 0],  # empty: 0
        ]
    )
    res = memorisation_rate(gen, train, threshold=0.8)
    assert res["rate"] == pytest.approx(0.5)
    assert res["mean_max_jaccard"] == pytest.approx((1 + 0.8 + 0.75 + 0) / 4)
    assert memorisation_rate(gen, train, threshold=0.8, chunk=1) == res
    with pytest.raises(DataError, match="threshold"):
        memorisation_rate(gen, train, threshold=0.0)
