"""Calibration metrics: hand-computed C_KL and JS cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from debiasrec.metrics import DegenerateMetricWarning
from debiasrec.metrics.calibration import divergence, miscalibration, tier_features

# items: 0 = A, 1 = B, 2 = A|B, 3 = no genre
FEATS = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float))


def test_ckl_hand_computed() -> None:
    hist = sp.csr_matrix(np.array([[1, 1, 0, 0]], dtype=float))  # p = (0.5, 0.5)
    val = miscalibration(np.array([[0]]), hist, FEATS, 1)  # q = (1, 0)
    qt = (0.99 * 1 + 0.01 * 0.5, 0.01 * 0.5)
    expected = 0.5 * math.log(0.5 / qt[0]) + 0.5 * math.log(0.5 / qt[1])
    assert val[0] == pytest.approx(expected, rel=1e-12)


def test_multi_genre_item_split_and_genreless_item_ignored() -> None:
    hist = sp.csr_matrix(np.array([[1, 1, 0, 0]], dtype=float))
    # item 2 gives (0.5, 0.5) -> q = p exactly; item 3 carries no mass and must not dilute q
    val = miscalibration(np.array([[2, 3]]), hist, FEATS, 2)
    assert val[0] == pytest.approx(0.0, abs=1e-12)
    worse = miscalibration(np.array([[0, 3]]), hist, FEATS, 2)
    assert worse[0] > 0.5


def test_empty_history_is_nan_with_warning() -> None:
    hist = sp.csr_matrix(np.array([[0, 0, 0, 1], [1, 0, 0, 0]], dtype=float))
    with pytest.warns(DegenerateMetricWarning):
        val = miscalibration(np.array([[0], [0]]), hist, FEATS, 1)
    assert np.isnan(val[0]) and val[1] == pytest.approx(0.0, abs=1e-12)


def test_js_symmetric_and_bounded() -> None:
    p = np.array([1.0, 0.0, 0.0])
    q = np.array([0.0, 0.0, 1.0])
    assert divergence(p, q, "js") == pytest.approx(math.log(2))
    r = np.array([0.2, 0.3, 0.5])
    assert divergence(p, r, "js") == pytest.approx(divergence(r, p, "js"))
    hist = sp.csr_matrix(np.array([[1, 0, 0]], dtype=float))
    tiers = tier_features(np.array([0, 1, 2]))
    v = miscalibration(np.array([[2]]), hist, tiers, 1, kind="js", alpha=0.0)
    assert v[0] == pytest.approx(math.log(2))
