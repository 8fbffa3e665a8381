"""describe(): exact statistics on a tiny dataset, and the real ML-100K gender split."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from debiasrec.data.describe import describe, format_description, gini
from debiasrec.data.fetch import recbole_ml100k_dir
from debiasrec.data.loaders import from_pandas, load_ml100k
from debiasrec.data.purify import purify


@pytest.fixture
def tiny():
    # users: F has 1 user with 4 rows; M has 2 users with 1 row each. items: a=4, b=1, c=1, d=0
    inter = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 3],
            "item_id": ["a", "b", "c", "a", "a", "a"],
            "rating": [5, 4, 3, 5, 1, 2],
            "timestamp": [10, 20, 30, 40, 50, 60],
        }
    )
    users = pd.DataFrame({"user_id": [1, 2, 3], "gender": ["F", "M", "M"]})
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "title": ["A", "B", "C", "D"]})
    raw = from_pandas(inter, users, items, sensitive=["gender"], name="tiny")
    return purify(raw)


def test_gini_known_values() -> None:
    assert gini(np.array([5, 5, 5, 5])) == 0.0
    assert gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)
    # sorted (1, 1, 4): sum (2i-n-1) x = -2*1 + 0*1 + 2*4 = 6; / (3*6) = 1/3
    assert gini(np.array([4, 1, 1])) == pytest.approx(1 / 3)
    assert math.isnan(gini(np.array([])))
    assert math.isnan(gini(np.zeros(3)))


def test_describe_tiny(tiny) -> None:
    ds, report = tiny
    d = describe(ds, report)
    assert json.loads(json.dumps(d)) is not None  # JSON-serialisable
    # keyed duplicates: user 1 rated 'a' twice -> one removed; item 'd' has no interactions
    assert report.removed["duplicate"] == 1
    assert (d["n_users"], d["n_items"], d["n_interactions"]) == (3, 3, 5)
    assert d["density"] == pytest.approx(5 / 9)
    assert d["ratings"]["counts"] == {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1}
    assert d["ratings"]["mean"] == pytest.approx(3.0)
    assert d["timestamps"] == {"min": 20, "max": 60}
    assert d["interactions_per_user"] == {"min": 1.0, "median": 1.0, "mean": 5 / 3, "max": 3.0}
    groups = {g["group"]: g for g in d["sensitive"]["gender"]["groups"]}
    assert groups["F"]["n_users"] == 1 and groups["M"]["n_users"] == 2
    assert groups["F"]["n_interactions"] == 3 and groups["M"]["n_interactions"] == 2
    assert groups["F"]["interaction_share"] == pytest.approx(0.6)
    assert groups["M"]["user_share"] == pytest.approx(2 / 3)
    assert groups["M"]["mean_per_user"] == pytest.approx(1.0)
    assert d["sensitive"]["gender"]["kind"] == "binary"
    # item counts a=3, b=1, c=1 -> gini (-2*1 + 0*1 + 2*3) / (3*5) = 4/15;
    # top 10% and top 20% of 3 items = 1 item = 3/5 of interactions
    assert d["popularity"]["gini"] == pytest.approx(4 / 15)
    assert d["popularity"]["top10_share"] == pytest.approx(0.6)
    assert d["popularity"]["top20_share"] == pytest.approx(0.6)
    assert d["purification"]["removed_items"]["no_interactions"] == 1
    text = format_description(d)
    assert "dataset tiny" in text
    assert "sensitive attribute gender (binary)" in text
    assert "  F            1   33.3%             3   60.0%       3.0" in text
    assert "- duplicate" in text


def test_describe_without_report_or_ratings() -> None:
    raw = from_pandas(pd.DataFrame({"user_id": [1, 2], "item_id": [1, 1]}))
    ds, _ = purify(raw)
    d = describe(ds)
    assert d["ratings"] is None and d["purification"] is None and d["sensitive"] == {}
    assert d["popularity"]["gini"] == 0.0
    assert "purification" not in format_description(d)


def test_empty_group_warns_and_gives_nan() -> None:
    raw = from_pandas(
        pd.DataFrame({"user_id": [1, 2], "item_id": [1, 1]}),
        pd.DataFrame({"user_id": [1, 2], "age": [20, 30]}),
        sensitive=["age"],
    )
    ds, _ = purify(raw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = describe(ds)
    empty = [str(w.message).split()[2] for w in caught]
    assert empty == ["age=<18", "age=35-44", "age=45-49", "age=50-55", "age=56+"]
    groups = {g["group"]: g for g in d["sensitive"]["age"]["groups"]}
    assert groups["18-24"]["n_users"] == 1
    assert math.isnan(groups["<18"]["mean_per_user"])
    assert groups["<18"]["n_interactions"] == 0


@pytest.mark.skipif(recbole_ml100k_dir() is None, reason="recbole==1.2.1 not installed")
def test_describe_ml100k_gender() -> None:
    ds, rep = purify(load_ml100k(recbole_ml100k_dir()))
    d = describe(ds, rep)
    g = {x["group"]: x for x in d["sensitive"]["gender"]["groups"]}
    assert (g["F"]["n_users"], g["M"]["n_users"]) == (273, 670)
    assert (g["F"]["n_interactions"], g["M"]["n_interactions"]) == (25_740, 74_260)
    assert d["ratings"]["counts"] == {"1": 6110, "2": 11370, "3": 27145, "4": 34174, "5": 21201}
    assert d["density"] == pytest.approx(100_000 / (943 * 1682))
    assert d["purification"]["output_rows"] == 100_000
