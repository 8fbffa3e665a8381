"""Bad inputs to the loaders, purify and the splits: one DataError/ConfigError that names the file,
row or field -- per class of bad input, not only the example that was reported."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from debiasrec.data.loaders import (
    attribute_names,
    check_delimiter,
    from_pandas,
    load,
    load_table,
)
from debiasrec.data.purify import PurifyConfig, load_dataset, purify
from debiasrec.data.split import check_ratios, make_split, random_split, temporal_split
from debiasrec.errors import ConfigError, DataError


@pytest.fixture
def csvs(tmp_path):
    inter = tmp_path / "inter.csv"
    inter.write_text("user_id,item_id,rating\n1,10,4\n1,11,3\n2,10,5\n2,12,2\n3,11,1\n3,12,4\n")
    users = tmp_path / "users.csv"
    users.write_text("user_id,gender,age\n1,F,20\n2,M,30\n3,F,40\n")
    return inter, users


# ---------------------------------------------------------------------------- delimiter


@pytest.mark.parametrize(
    ("delimiter", "needle"),
    [
        (";;", "exactly one character"),
        ("::", "exactly one character"),
        ("ab", "exactly one character"),
        ("", "exactly one character"),
        ("\n", "cannot separate fields"),
        ("\r", "cannot separate fields"),
        ('"', "cannot separate fields"),
    ],
    ids=["double-semicolon", "double-colon", "two-letters", "empty", "newline", "cr", "quote"],
)
def test_bad_delimiter_is_one_config_error(delimiter, needle, csvs) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        load_table(csvs[0], delimiter=delimiter)
    assert repr(delimiter) in str(info.value)
    with pytest.raises(ConfigError, match=needle):  # the dispatcher and load_dataset alike
        load_dataset(str(csvs[0]), delimiter=delimiter)


@pytest.mark.parametrize("spelling", ["\t", "\\t", "tab"])
def test_tab_delimiter_spellings(spelling, tmp_path) -> None:
    path = tmp_path / "inter.txt"
    path.write_text("user_id\titem_id\n1\t10\n2\t11\n")
    assert check_delimiter(spelling) == "\t"
    raw = load_table(path, delimiter=spelling)
    assert raw.interactions["item_id"].tolist() == [10, 11]


def test_wrong_delimiter_hints_at_it(csvs) -> None:
    with pytest.raises(DataError, match="is the delimiter right"):
        load_table(csvs[0], delimiter="|")


def test_unknown_encoding(csvs) -> None:
    with pytest.raises(ConfigError, match="unknown text encoding 'utf-9'"):
        load_table(csvs[0], encoding="utf-9")


def test_options_that_do_not_apply_to_atomic_folders(tmp_path) -> None:
    folder = tmp_path / "atomic"
    folder.mkdir()
    (folder / "atomic.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match=r"\['delimiter'\] do not apply to RecBole atomic"):
        load(folder, delimiter=",")


# ---------------------------------------------------------------------------- repeated names


@pytest.mark.parametrize(
    "names", ["gender,gender", ["gender", "gender"], "gender,age,gender", ["age", "age"]]
)
def test_repeated_attribute_is_one_config_error(names, csvs) -> None:
    with pytest.raises(ConfigError, match="given more than once"):
        attribute_names(names)
    with pytest.raises(ConfigError, match="given more than once"):
        load_table(csvs[0], csvs[1], sensitive=names)
    with pytest.raises(ConfigError, match="given more than once"):
        purify(load_table(csvs[0], csvs[1]), sensitive=names)  # names given to purify only


def test_attribute_names_keeps_order_and_rejects_non_text() -> None:
    assert attribute_names(" gender , age ,") == ["gender", "age"]
    assert attribute_names(["age", "gender"]) == ["age", "gender"]
    with pytest.raises(ConfigError, match="non-empty text"):
        attribute_names(["gender", ""])
    with pytest.raises(ConfigError, match="non-empty text"):
        attribute_names(["gender", 3])  # type: ignore[list-item]


# ---------------------------------------------------------------------------- ids that are not scalars


def _parquet(tmp_path, name: str, frame: pd.DataFrame):
    path = tmp_path / name
    frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize(
    ("column", "values", "what"),
    [
        ("user_id", [[1, 2], [3]], "a list"),
        ("item_id", [[10], [11, 12]], "a list"),
        ("user_id", [{"a": 1}, {"a": 2}], "a dict"),
        ("item_id", [{"x": "y"}, {"x": "z"}], "a dict"),
        ("user_id", [b"u1", b"u2"], "bytes"),
        ("item_id", [b"i1", b"i2"], "bytes"),
        ("rating", [[4.0], [5.0]], "a list"),
        ("timestamp", [[1], [2]], "a list"),
    ],
    ids=["user-list", "item-list", "user-dict", "item-dict", "user-bytes", "item-bytes",
         "rating-list", "timestamp-list"],
)  # fmt: skip
def test_interaction_columns_holding_non_scalars(column, values, what, tmp_path) -> None:
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": [10, 11], "rating": [4.0, 5.0],
                          "timestamp": [1, 2]})  # fmt: skip
    frame[column] = pd.Series(values, dtype=object)
    path = _parquet(tmp_path, "inter.parquet", frame)
    with pytest.raises(DataError) as info:
        load_table(path)
    msg = str(info.value)
    assert str(path) in msg and repr(column) in msg and f"holds {what}" in msg
    assert "data row 1" in msg and "2 such rows" in msg
    with pytest.raises(DataError, match=f"holds {what}"):  # in-memory frames alike
        from_pandas(frame)


def test_non_scalar_in_a_later_row_is_located() -> None:
    frame = pd.DataFrame({"user_id": pd.Series([1, 2, [3, 4]], dtype=object), "item_id": [1, 2, 3]})
    with pytest.raises(DataError, match=r"data row 3 holds a list \(\[3, 4\]; 1 such rows\)"):
        from_pandas(frame)


@pytest.mark.parametrize("table", ["users", "items"])
def test_table_ids_holding_lists(table, tmp_path) -> None:
    inter = _parquet(tmp_path, "inter.parquet", pd.DataFrame({"user_id": [1], "item_id": [2]}))
    col = "user_id" if table == "users" else "item_id"
    frame = pd.DataFrame({col: pd.Series([[1], [2]], dtype=object), "gender": ["F", "M"]})
    path = _parquet(tmp_path, f"{table}.parquet", frame)
    with pytest.raises(DataError, match=f"{table} file {path}: column '{col}'.*a list"):
        load_table(inter, **{table: path})


def test_sensitive_column_holding_lists(tmp_path) -> None:
    inter = _parquet(tmp_path, "inter.parquet", pd.DataFrame({"user_id": [1], "item_id": [2]}))
    frame = pd.DataFrame({"user_id": [1, 2], "gender": pd.Series([["F"], ["M"]], dtype=object)})
    path = _parquet(tmp_path, "users.parquet", frame)
    with pytest.raises(DataError, match=f"users file {path}: column 'gender'.*a list"):
        load_table(inter, path, sensitive=["gender"])


def test_mixed_text_and_number_ids_are_scalars() -> None:
    frame = pd.DataFrame({"user_id": pd.Series(["a", 1, None], dtype=object), "item_id": [1, 2, 3]})
    raw = from_pandas(frame)
    assert raw.interactions["user_id"].tolist()[:2] == ["a", 1]


# ---------------------------------------------------------------------------- narrow ids


def test_integer_ids_are_read_as_int32_when_they_fit(tmp_path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("user_id,item_id,timestamp\n1,2147483647,5000000000\n2,-5,1\n")
    raw = load_table(path)
    assert raw.interactions["user_id"].dtype == np.int32
    assert raw.interactions["item_id"].dtype == np.int32
    assert raw.interactions["timestamp"].dtype == np.int64  # not an id: kept as read
    assert raw.interactions["item_id"].tolist() == [2147483647, -5]
    big = tmp_path / "big.csv"
    big.write_text("user_id,item_id\n1,2147483648\n")
    assert load_table(big).interactions["item_id"].dtype == np.int64  # does not fit: kept


def test_int32_ids_give_the_same_dataset(tmp_path) -> None:
    """Reading ids narrower changes no id, code or count."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.integers(0, 50, 400) * 1000,
                          "item_id": rng.integers(0, 30, 400) + 7})  # fmt: skip
    path = tmp_path / "inter.csv"
    frame.to_csv(path, index=False)
    ds, _ = purify(load_table(path))
    ref, _ = purify(from_pandas(frame))  # int64 ids
    assert ds.user_vocab.astype(np.int64).tolist() == ref.user_vocab.tolist()
    assert ds.item_vocab.astype(np.int64).tolist() == ref.item_vocab.tolist()
    np.testing.assert_array_equal(ds.users, ref.users)
    np.testing.assert_array_equal(ds.items, ref.items)


# ---------------------------------------------------------------------------- empty sensitive columns


@pytest.mark.parametrize("policy", ["drop", "own_group", "error"])
@pytest.mark.parametrize("blank", [None, "", "  "], ids=["missing", "empty", "spaces"])
def test_all_missing_sensitive_column_names_users_file_and_attribute(policy, blank, csvs) -> None:
    users = csvs[1].with_name("users_blank.csv")
    users.write_text(
        "user_id,gender,age\n" + "".join(f"{u},{blank or ''},{a}\n" for u, a in ((1, 20), (2, 30)))
    )
    raw = load_table(csvs[0], users)
    with pytest.raises(DataError) as info:
        purify(raw, PurifyConfig(missing_sensitive=policy), sensitive=["gender"])
    msg = str(info.value)
    assert "'gender'" in msg and str(users) in msg and "is empty" in msg
    assert "age" in msg  # the other columns are listed


def test_empty_sensitive_column_in_ml_style_data_names_the_table() -> None:
    inter = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4]})
    users = pd.DataFrame({"user_id": [1, 2], "gender": [None, None], "job": ["a", "b"]})
    with pytest.raises(DataError, match="'gender' is empty in users table.*'job'"):
        purify(from_pandas(inter, users), sensitive=["gender"])


def test_single_group_warns_with_users_file(csvs) -> None:
    users = csvs[1].with_name("users_f.csv")
    users.write_text("user_id,gender\n1,F\n2,F\n3,F\n")
    with pytest.warns(UserWarning, match=rf"'gender' has a single group \('F'\).*{users}"):
        ds, _ = purify(load_table(csvs[0], users), sensitive=["gender"])
    assert ds.n_users == 3  # legal: kept, only the gaps will be NaN


def test_two_groups_do_not_warn(csvs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        purify(load_table(csvs[0], csvs[1]), sensitive=["gender"])


def test_nothing_left_after_purification_says_why(csvs, tmp_path) -> None:
    users = tmp_path / "other_users.csv"
    users.write_text("user_id,gender\n7,F\n8,M\n")
    with pytest.raises(DataError) as info:
        load_dataset(str(csvs[0]), users=str(users), sensitive=["gender"])
    msg = str(info.value)
    assert "no interaction" in msg and str(csvs[0]) in msg and "unknown_user 6" in msg


# ---------------------------------------------------------------------------- kept rows, dedup


def test_kept_rows_point_at_the_input_rows(csvs) -> None:
    inter = pd.DataFrame(
        {"user_id": [1, None, 2, 1, 3], "item_id": [10, 11, 12, 10, 13], "rating": [1, 2, 3, 4, 5]}
    )
    ds, rep = purify(from_pandas(inter), PurifyConfig(duplicates="keep_last"))
    assert rep.kept_rows.tolist() == [2, 3, 4]  # row 1: no user; row 0: repeated, last kept
    assert ds.ratings.tolist() == [3.0, 4.0, 5.0]
    assert "kept_rows" not in rep.to_dict()


def _reference_duplicates(key: np.ndarray, ts: np.ndarray | None, keep: str) -> np.ndarray:
    """The old rule: duplicated by row order, or by a stable sort on time."""
    if ts is None:
        return pd.Series(key).duplicated(keep=keep).to_numpy()
    order = np.argsort(ts, kind="stable")
    out = np.empty(len(key), dtype=bool)
    out[order] = pd.Series(key[order]).duplicated(keep=keep).to_numpy()
    return out


@given(
    pairs=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 4)),
                   min_size=1, max_size=40),
    keep=st.sampled_from(["keep_first", "keep_last"]),
    with_ts=st.booleans(),
)  # fmt: skip
@settings(max_examples=150, deadline=None)
def test_duplicates_match_the_reference_rule(pairs, keep, with_ts) -> None:
    """Only repeated pairs are sorted now; the rows kept are those of the full-sort rule."""
    frame = pd.DataFrame(pairs, columns=["user_id", "item_id", "timestamp"])
    if not with_ts:
        frame = frame.drop(columns="timestamp")
    ds, rep = purify(from_pandas(frame), PurifyConfig(duplicates=keep))
    key = frame["user_id"].to_numpy() * 10 + frame["item_id"].to_numpy()
    ts = frame["timestamp"].to_numpy() if with_ts else None
    dup = _reference_duplicates(key, ts, "first" if keep == "keep_first" else "last")
    assert rep.kept_rows.tolist() == np.flatnonzero(~dup).tolist()
    assert rep.removed["duplicate"] == int(dup.sum())


def test_duplicates_error_names_the_first_repeated_pair() -> None:
    frame = pd.DataFrame({"user_id": [1, 2, 3, 2], "item_id": [5, 6, 7, 6]})
    with pytest.raises(DataError, match=r"pair \(user 2, item 6\) at rows \[1, 3\]"):
        purify(from_pandas(frame), PurifyConfig(duplicates="error"))


# ---------------------------------------------------------------------------- split ratios


@pytest.mark.parametrize(
    "ratios", [(0.5, 0.5, 0.5), (8, 1, 1), (0.7, 0.1, 0.1), (0.9, 0.05, 0.1), (1, 1, 1)]
)
@pytest.mark.parametrize("method", ["random", "temporal"])
def test_ratios_not_summing_to_one_are_rejected(ratios, method) -> None:
    ds, _ = purify(from_pandas(pd.DataFrame({"user_id": [1] * 10, "item_id": range(10),
                                             "timestamp": range(10)})))  # fmt: skip
    with pytest.raises(ConfigError, match=r"sum to .*not 1.*normalise=True"):
        make_split(ds, method, ratios)
    split = make_split(ds, method, ratios, normalise=True)  # explicit: rescaled
    assert sum(len(p) for p in split) == 10


def test_ratios_within_rounding_of_one_are_accepted() -> None:
    assert check_ratios((0.7, 0.2, 0.1)) == pytest.approx((0.7, 0.2, 0.1))
    assert check_ratios((1 / 3, 1 / 3, 1 / 3)) == pytest.approx((1 / 3,) * 3)
    assert check_ratios((8, 1, 1), normalise=True) == pytest.approx((0.8, 0.1, 0.1))
    with pytest.raises(ConfigError, match="three finite"):
        check_ratios((0, 0, 0), normalise=True)


def test_normalised_split_equals_the_unit_sum_split() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"user_id": rng.integers(0, 20, 300), "item_id": rng.integers(0, 50, 300),
                          "timestamp": rng.integers(0, 10**6, 300)})  # fmt: skip
    ds, _ = purify(from_pandas(frame))
    a = random_split(ds, (8, 1, 1), rng=1, normalise=True)
    b = random_split(ds, (0.8, 0.1, 0.1), rng=1)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.users, y.users)
        np.testing.assert_array_equal(x.items, y.items)
    c = temporal_split(ds, (8, 1, 1), normalise=True)
    d = temporal_split(ds, (0.8, 0.1, 0.1))
    assert [len(p) for p in c] == [len(p) for p in d]


# ---------------------------------------------------------------------------- Ctrl-C while reading


def test_interrupts_are_held_until_the_read_ends() -> None:
    import os
    import signal

    from debiasrec.data.loaders import interrupts_deferred

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT has a non-default handler in this process")
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("after the first Ctrl-C")  # held: the block goes on
    assert reached and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C stops at once
        reached.append("never")
    assert reached == ["after the first Ctrl-C"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupts_deferred():  # no Ctrl-C: nothing raised
        pass
