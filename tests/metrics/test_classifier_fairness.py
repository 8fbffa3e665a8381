"""classifier_by_group: accuracy, TPR/FPR per group and the equal-opportunity difference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from debiasrec.errors import DataError
from debiasrec.metrics import DegenerateMetricWarning, classifier_by_group


def test_hand_computed_rates_and_eod() -> None:
    # group a: y = 1 1 1 0, p = 1 0 1 0 -> acc 3/4, TPR 2/3, FPR 0
    # group b: y = 1 1 0 0, p = 1 1 1 0 -> acc 3/4, TPR 1,   FPR 1/2
    y = np.array([1, 1, 1, 0, 1, 1, 0, 0])
    p = np.array([1, 0, 1, 0, 1, 1, 1, 0])
    g = np.array(["a"] * 4 + ["b"] * 4)
    df = classifier_by_group(y, p, g, attr="age").set_index(["metric", "group"])
    v = df["value"]
    assert v[("accuracy", "all")] == pytest.approx(6 / 8)
    assert v[("tpr", "all")] == pytest.approx(4 / 5)
    assert v[("fpr", "all")] == pytest.approx(1 / 3)
    assert v[("tpr", "age=a")] == pytest.approx(2 / 3)
    assert v[("tpr", "age=b")] == pytest.approx(1.0)
    assert v[("fpr", "age=b")] == pytest.approx(0.5)
    assert v[("eod", "age")] == pytest.approx(1 / 3)
    assert v[("gap_fpr", "age")] == pytest.approx(0.5)
    assert v[("gap_accuracy", "age")] == pytest.approx(0.0)
    assert df.loc[("tpr", "age=a"), "n"] == 3 and df.loc[("fpr", "age=a"), "n"] == 1
    assert list(df.reset_index().columns) == ["metric", "group", "value", "n"]


def test_group_without_positives_gives_nan_tpr_and_warning() -> None:
    y = np.array([1, 0, 0, 0])
    p = np.array([1, 1, 0, 0])
    g = pd.Categorical(["a", "a", "b", "b"])
    with pytest.warns(DegenerateMetricWarning, match="eod"):
        df = classifier_by_group(y, p, g).set_index(["metric", "group"])
    assert np.isnan(df.loc[("tpr", "group=b"), "value"])
    assert np.isnan(df.loc[("eod", "group"), "value"])
    assert df.loc[("gap_fpr", "group"), "value"] == pytest.approx(1.0)


def test_bad_input() -> None:
    with pytest.raises(DataError, match="0/1"):
        classifier_by_group(np.array([0, 2]), np.array([0, 1]), ["a", "b"])
    with pytest.raises(DataError, match="y_pred"):
        classifier_by_group(np.array([0, 1]), np.array([0, 1, 1]), ["a", "b"])
    with pytest.raises(DataError, match="length"):
        classifier_by_group(np.array([0, 1]), np.array([0, 1]), ["a"])
