"""Yao & Huang unfairness metrics, hand-checked on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debiasrec.debias.inproc.regularizers import focf_unfairness
from debiasrec.metrics import DegenerateMetricWarning
from debiasrec.metrics.yao import YAO_METRICS, yao_unfairness

# item 0: g preds (0.9, 0.5) targets (1, 0) -> E_g[y]-E_g[r] = 0.7-0.5 = 0.2
#         h preds (0.2,) target (1,)        -> E_h[y]-E_h[r] = 0.2-1.0 = -0.8
# item 1: g preds (0.4,) target (0,)        -> 0.4
#         h preds (0.6, 0.8) targets (1, 1) -> 0.7-1.0 = -0.3
# item 2: only h -> ignored by the item-wise metrics
PRED = np.array([0.9, 0.5, 0.2, 0.4, 0.6, 0.8, 0.3])
TARGET = np.array([1, 0, 1, 0, 1, 1, 0])
ITEMS = np.array([0, 0, 0, 1, 1, 1, 2])
G = np.array([True, True, False, True, False, False, False])


def test_yao_hand_checked():
    out = yao_unfairness(PRED, TARGET, ITEMS, G)
    assert out["value"] == pytest.approx((abs(0.2 + 0.8) + abs(0.4 + 0.3)) / 2)
    assert out["absolute"] == pytest.approx((abs(0.2 - 0.8) + abs(0.4 - 0.3)) / 2)
    # under: max(0, r - y): item0 g 0, h 0.8; item1 g 0, h 0.3
    assert out["under"] == pytest.approx((0.8 + 0.3) / 2)
    # over: max(0, y - r): item0 g 0.2, h 0; item1 g 0.4, h 0
    assert out["over"] == pytest.approx((0.2 + 0.4) / 2)
    assert out["non_parity"] == pytest.approx(abs(1.8 / 3 - 1.9 / 4))


def test_yao_one_group_is_nan():
    with pytest.warns(DegenerateMetricWarning):
        out = yao_unfairness(PRED, TARGET, ITEMS, np.ones(7, bool))
    assert all(np.isnan(out[k]) for k in YAO_METRICS)


@pytest.mark.parametrize("kind", YAO_METRICS)
def test_torch_regularizer_matches_metric(kind):
    want = yao_unfairness(PRED, TARGET, ITEMS, G)[kind]
    got = focf_unfairness(
        torch.tensor(PRED),
        torch.tensor(TARGET),
        torch.tensor(ITEMS),
        torch.tensor(G),
        3,
        kind,
        smooth=False,
    )
    assert float(got) == pytest.approx(want)
