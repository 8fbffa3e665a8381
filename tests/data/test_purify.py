"""Purification: every reason counted exactly, every policy, and the report invariant."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from debiasrec.data.fetch import recbole_ml100k_dir
from debiasrec.data.loaders import RawData, from_pandas, load_ml100k
from debiasrec.data.purify import REASONS, PurifyConfig, PurifyReport, load_dataset, purify
from debiasrec.errors import DataError


def raw_from(
    inter: dict,
    users: dict | None = None,
    items: dict | None = None,
    sensitive: list[str] | None = None,
) -> RawData:
    return from_pandas(
        pd.DataFrame(inter),
        None if users is None else pd.DataFrame(users),
        None if items is None else pd.DataFrame(items),
        sensitive=sensitive,
        name="t",
    )


def check_invariant(ds, report: PurifyReport) -> None:
    assert report.input_rows - sum(report.removed.values()) == report.output_rows
    assert report.output_rows == ds.n_interactions


# ---------------------------------------------------------------------------- row reasons


def test_missing_ids() -> None:
    raw = raw_from({"user_id": [1, None, 2, 3], "item_id": ["a", "b", " ", "c"]})
    ds, rep = purify(raw)
    assert rep.removed["missing_id"] == 2
    assert ds.interactions_frame()["user_id"].tolist() == [1, 3]
    assert ds.interactions_frame()["user_id"].dtype == np.int64  # float ids from the NaN undone
    check_invariant(ds, rep)


def test_non_numeric_rating_is_counted_not_raised() -> None:
    raw = raw_from(
        {"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2], "rating": ["5", "x", None, 3]}
    )
    ds, rep = purify(raw)
    assert rep.removed["non_numeric_rating"] == 2
    assert ds.ratings.tolist() == [5.0, 3.0]
    check_invariant(ds, rep)


def test_rating_out_of_range() -> None:
    raw = raw_from({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2], "rating": [0, 6, 1, 5]})
    ds, rep = purify(raw, PurifyConfig(rating_range=(1, 5)))
    assert rep.removed["rating_out_of_range"] == 2
    assert ds.ratings.tolist() == [1.0, 5.0]
    _, rep_no_range = purify(raw)
    assert rep_no_range.removed["rating_out_of_range"] == 0  # only the float32-range check ran


def test_rating_policies_need_a_rating_column() -> None:
    raw = raw_from({"user_id": [1], "item_id": [1]})
    with pytest.raises(DataError, match=r"no 'rating' column"):
        purify(raw, PurifyConfig(implicit_threshold=4))


def test_timestamps_parsed_or_counted() -> None:
    ts = [
        "881250949",
        881250949.0,
        "2020-01-01T00:00:00",
        "2020-01-02 00:00:00+01:00",
        "soon",
        None,
    ]
    raw = raw_from({"user_id": [1, 2, 3, 4, 5, 6], "item_id": [1] * 6, "timestamp": ts})
    ds, rep = purify(raw)
    assert rep.removed["unparseable_timestamp"] == 2
    assert ds.timestamps.tolist() == [881250949, 881250949, 1577836800, 1577919600]
    check_invariant(ds, rep)


def test_float_timestamps_become_int_seconds() -> None:
    raw = raw_from({"user_id": [1, 2], "item_id": [1, 1], "timestamp": [881250949.0, 881250950.7]})
    ds, rep = purify(raw)
    assert ds.timestamps.dtype == np.int64
    assert ds.timestamps.tolist() == [881250949, 881250950]
    assert rep.removed["unparseable_timestamp"] == 0


def test_unknown_user_and_item() -> None:
    raw = raw_from(
        {"user_id": [1, 2, 9, 1, 2], "item_id": ["a", "a", "a", "zz", "b"]},
        users={"user_id": [1, 2, 3]},
        items={"item_id": ["a", "b"]},
    )
    ds, rep = purify(raw)
    assert rep.removed["unknown_user"] == 1
    assert rep.removed["unknown_item"] == 1
    assert rep.removed_users["no_interactions"] == 1  # user 3
    assert list(ds.user_vocab) == [1, 2]
    check_invariant(ds, rep)


def test_users_table_duplicate_and_missing_ids() -> None:
    raw = raw_from(
        {"user_id": [1, 2], "item_id": [1, 1]},
        users={"user_id": [1, 1, None, 2], "gender": ["F", "M", "M", "M"]},
        sensitive=["gender"],
    )
    ds, rep = purify(raw)
    assert rep.removed_users["duplicate_id"] == 1
    assert rep.removed_users["missing_id"] == 1
    assert [str(g) for g in ds.user_groups("gender")] == ["F", "M"]  # first row of user 1 kept
    assert any("more than once" in n for n in rep.notes)


# ---------------------------------------------------------------------------- sensitive policy


def _sens_raw() -> RawData:
    return raw_from(
        {"user_id": [1, 1, 2, 2, 2, 3], "item_id": [1, 2, 1, 2, 3, 1]},
        users={"user_id": [1, 2, 3, 4], "gender": ["F", None, "M", ""], "age": [20, 30, None, 40]},
        sensitive=["gender", "age"],
    )


def test_missing_sensitive_drop() -> None:
    ds, rep = purify(_sens_raw())
    assert rep.removed["user_missing_sensitive"] == 4  # user 2 (3 rows), user 3 (1 row)
    assert rep.removed_users["missing_sensitive"] == 3  # users 2, 3, 4
    assert rep.removed_users["no_interactions"] == 0
    assert list(ds.user_vocab) == [1]
    check_invariant(ds, rep)


def test_missing_sensitive_drop_restricted_to_one_attribute() -> None:
    ds, rep = purify(_sens_raw(), sensitive=["age"])
    assert ds.schema.sensitive_names == ["age"]
    assert rep.removed["user_missing_sensitive"] == 1  # only user 3 lacks an age
    assert list(ds.user_vocab) == [1, 2]
    assert rep.removed_users == {
        "missing_id": 0,
        "duplicate_id": 0,
        "missing_sensitive": 1,
        "no_interactions": 1,
    }


def test_missing_sensitive_own_group() -> None:
    ds, rep = purify(_sens_raw(), PurifyConfig(missing_sensitive="own_group"))
    assert "user_missing_sensitive" not in rep.removed
    assert ds.n_interactions == 6
    assert [str(g) for g in ds.user_groups("gender")] == ["F", "unknown", "M"]
    assert [str(g) for g in ds.user_groups("age")] == ["18-24", "25-34", "unknown"]
    assert list(ds.user_groups("age").categories)[-2:] == ["56+", "unknown"]
    assert ds.schema.attr("gender").kind == "categorical"  # 3 groups now
    assert any("put in group 'unknown'" in n for n in rep.notes)
    assert rep.removed_users["no_interactions"] == 1  # user 4 had no rows


def test_missing_sensitive_error_names_user() -> None:
    with pytest.raises(
        DataError,
        match=r"user 2 has no value for sensitive attribute 'gender' \(2 users in all, e\.g\. "
        r"\[2, 4\]\)",
    ):
        purify(_sens_raw(), PurifyConfig(missing_sensitive="error"))


def test_unknown_sensitive_name() -> None:
    with pytest.raises(
        DataError,
        match=r"unknown sensitive attribute 'race'; declared: \['gender', 'age'\], "
        r"user columns: \['gender', 'age'\]",
    ):
        purify(_sens_raw(), sensitive=["race"])


def test_undeclared_user_column_can_be_named() -> None:
    raw = raw_from(
        {"user_id": [1, 2], "item_id": [1, 1]},
        users={"user_id": [1, 2], "country": ["DE", "FR"]},
    )
    ds, _ = purify(raw, sensitive=["country"])
    assert ds.schema.attr("country").kind == "binary"


def test_binary_attribute_with_three_values_fails_early() -> None:
    raw = raw_from(
        {"user_id": [1, 2, 3], "item_id": [1, 1, 1]},
        users={"user_id": [1, 2, 3], "gender": ["F", "M", "M"]},
        sensitive=["gender"],
    )
    raw.users.loc[2, "gender"] = "X"
    with pytest.raises(DataError, match=r"'gender' is declared binary but has 3 values"):
        purify(raw)


# ---------------------------------------------------------------------------- duplicates


def _dups(with_ts: bool = True) -> RawData:
    inter = {"user_id": [1, 1, 1, 2], "item_id": [7, 7, 8, 7], "rating": [2, 5, 3, 4]}
    if with_ts:
        inter["timestamp"] = [20, 10, 30, 40]  # the 2-star row is the later one
    return raw_from(inter)


def test_duplicates_keep_last_by_timestamp() -> None:
    ds, rep = purify(_dups())
    assert rep.removed["duplicate"] == 1
    assert ds.interactions_frame()["rating"].tolist() == [2.0, 3.0, 4.0]


def test_duplicates_keep_first_by_timestamp() -> None:
    ds, rep = purify(_dups(), PurifyConfig(duplicates="keep_first"))
    assert rep.removed["duplicate"] == 1
    assert ds.interactions_frame()["rating"].tolist() == [5.0, 3.0, 4.0]


def test_duplicates_by_row_order_without_timestamp() -> None:
    ds, _ = purify(_dups(with_ts=False))
    assert ds.ratings.tolist() == [5.0, 3.0, 4.0]
    ds, _ = purify(_dups(with_ts=False), PurifyConfig(duplicates="keep_first"))
    assert ds.ratings.tolist() == [2.0, 3.0, 4.0]


def test_duplicates_error() -> None:
    with pytest.raises(
        DataError, match=r"repeat the pair \(user 1, item 7\) at rows \[0, 1\] .*1 repeated rows"
    ):
        purify(_dups(), PurifyConfig(duplicates="error"))


# ---------------------------------------------------------------------------- threshold, k-core


def test_implicit_threshold() -> None:
    raw = raw_from({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2], "rating": [1, 3, 4, 5]})
    ds, rep = purify(raw, PurifyConfig(implicit_threshold=4))
    assert rep.removed["below_implicit_threshold"] == 2
    assert ds.ratings.tolist() == [4.0, 5.0]
    assert list(ds.user_vocab) == [2]


def test_kcore_is_iterative() -> None:
    # item c has 1 row -> removed; then user C has 1 row -> removed; items a, b keep 2 each.
    raw = raw_from(
        {"user_id": ["A", "A", "B", "B", "C", "C"], "item_id": ["a", "b", "a", "b", "b", "c"]}
    )
    ds, rep = purify(raw, PurifyConfig(min_user_interactions=2, min_item_interactions=2))
    assert rep.removed["kcore"] == 2
    assert list(ds.user_vocab) == ["A", "B"]
    assert list(ds.item_vocab) == ["a", "b"]
    check_invariant(ds, rep)


def test_kcore_users_only() -> None:
    raw = raw_from({"user_id": [1, 1, 1, 2], "item_id": [1, 2, 3, 1]})
    ds, rep = purify(raw, PurifyConfig(min_user_interactions=3))
    assert rep.removed["kcore"] == 1
    assert ds.n_users == 1


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        PurifyConfig(min_user_interaction=5)  # typo
    with pytest.raises(ValidationError):
        PurifyConfig(rating_range=(5, 1))
    with pytest.raises(ValidationError):
        PurifyConfig(duplicates="drop")


# ---------------------------------------------------------------------------- report


def test_report_outputs() -> None:
    ds, rep = purify(_dups(), PurifyConfig(rating_range=(1, 5)))
    assert list(rep.removed) == [
        "missing_id",
        "non_numeric_rating",
        "rating_out_of_range",
        "unparseable_timestamp",
        "duplicate",
    ]
    frame = rep.to_frame()
    assert list(frame.columns) == ["scope", "reason", "count"]
    assert frame.set_index("reason").loc["duplicate", "count"] == 1
    d = rep.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["input_rows"] == 4 and d["output_rows"] == 3
    text = str(rep)
    assert "interactions read" in text and "duplicate" in text
    assert text.splitlines()[-1].split()[-1] == "3"


def test_reason_order_is_documented() -> None:
    assert REASONS[0] == "missing_id" and REASONS[-1] == "kcore" and len(REASONS) == 10


# ---------------------------------------------------------------------------- real data


@pytest.mark.skipif(recbole_ml100k_dir() is None, reason="recbole==1.2.1 not installed")
def test_ml100k_implicit_and_kcore() -> None:
    raw = load_ml100k(recbole_ml100k_dir())
    ds, rep = purify(raw, PurifyConfig(implicit_threshold=4, rating_range=(1, 5)))
    assert rep.removed["below_implicit_threshold"] == 100_000 - 55_375
    assert ds.n_interactions == 55_375
    ds2, rep2 = load_dataset(
        "ml-100k",
        purify_config=PurifyConfig(min_user_interactions=30, min_item_interactions=30),
        sensitive=["gender"],
    )
    assert ds2.schema.sensitive_names == ["gender"]
    counts_u, counts_i = ds2.user_counts(), ds2.item_counts()
    assert counts_u.min() >= 30 and counts_i.min() >= 30
    assert rep2.removed["kcore"] == 100_000 - ds2.n_interactions
    assert rep2.removed["kcore"] > 0


# ---------------------------------------------------------------------------- property


_ids = st.one_of(st.none(), st.integers(0, 5), st.sampled_from(["", " "]))
_ratings = st.one_of(st.none(), st.integers(-1, 7), st.floats(allow_nan=True), st.just("x"))
_ts = st.one_of(st.none(), st.integers(0, 10**9), st.just("2021-03-04"), st.just("bad"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(_ids, _ids, _ratings, _ts), max_size=40),
    genders=st.lists(st.sampled_from(["F", "M", None]), min_size=5, max_size=5),
    dup=st.sampled_from(["keep_last", "keep_first"]),
    miss=st.sampled_from(["drop", "own_group"]),
    rng=st.one_of(st.none(), st.just((1.0, 5.0))),
    thr=st.one_of(st.none(), st.just(3.0)),
    ku=st.integers(0, 3),
    ki=st.integers(0, 3),
)
def test_report_invariant(rows, genders, dup, miss, rng, thr, ku, ki) -> None:
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"], dtype=object)
    users = pd.DataFrame({"user_id": [0, 1, 2, 3, 4], "gender": genders})
    raw = from_pandas(inter, users, sensitive=["gender"])
    cfg = PurifyConfig(
        duplicates=dup,
        missing_sensitive=miss,
        rating_range=rng,
        implicit_threshold=thr,
        min_user_interactions=ku,
        min_item_interactions=ki,
    )
    if all(g is None for g in genders):  # nobody has a value: one clear error, by policy
        with pytest.raises(DataError, match="'gender' is empty in users table"):
            purify(raw, cfg)
        return
    try:
        ds, rep = purify(raw, cfg)
    except DataError as exc:  # a 3-valued "binary" after own_group is impossible: it is recast
        raise AssertionError(f"purify raised on legal input: {exc}") from exc
    assert rep.input_rows == len(rows)
    check_invariant(ds, rep)
    assert all(v >= 0 for v in rep.removed.values())
    assert list(rep.removed) == [r for r in REASONS if r in rep.removed]
    if ds.n_interactions:
        pairs = ds.users.astype(np.int64) * ds.n_items + ds.items
        assert len(np.unique(pairs)) == len(pairs)


def test_rating_beyond_float32_is_counted_out_of_range():
    import pandas as pd

    from debiasrec.data.loaders import from_pandas
    from debiasrec.data.purify import purify

    inter = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1], "rating": [4.0, 1e300, 3.0]})
    ds, report = purify(from_pandas(inter))
    assert report.removed["rating_out_of_range"] == 1
    assert ds.n_interactions == 2
    assert np.isfinite(ds.ratings).all()
