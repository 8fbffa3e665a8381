"""Dataset: construction rules, read-only arrays, matrices, groups, round trips, fingerprint."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

import debiasrec.data
from debiasrec.data.dataset import Dataset
from debiasrec.data.schema import ML1M_AGE_BINS, Schema, SensitiveAttr
from debiasrec.errors import DataError

SCHEMA = Schema(
    sensitive=(
        SensitiveAttr(name="gender", kind="binary"),
        SensitiveAttr(name="age", kind="ordinal", bins=ML1M_AGE_BINS),
        SensitiveAttr(name="occupation"),
    ),
    item_categories=("genres",),
)


def _inter() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u2", "u1", "u1", "u3", "u2"],
            "item_id": [20, 10, 30, 10, 30],
            "rating": [4.0, 5.0, 3.0, 1.0, 2.0],
            "timestamp": [30, 10, 20, 40, 50],
        }
    )


def _users() -> pd.DataFrame:
    # u4 has no interactions; the table order is not sorted.
    return pd.DataFrame(
        {
            "user_id": ["u3", "u1", "u4", "u2"],
            "gender": ["M", "F", "F", "M"],
            "age": [56, 1, 17, 18],  # ML-1M codes / raw ages
            "occupation": ["writer", "artist", None, "writer"],
        }
    )


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [30, 10, 20, 40],
            "title": ["C", "A", "B", "D"],
            "genres": [("Drama",), ("Comedy", "Animation"), ["Drama", "Comedy"], None],
        }
    )


@pytest.fixture
def ds() -> Dataset:
    return Dataset.from_frames(_inter(), _users(), _items(), schema=SCHEMA, name="tiny")


# ---------------------------------------------------------------------------- from_frames


def test_vocab_from_interactions_is_sorted_unique_ids() -> None:
    d = Dataset.from_frames(_inter())
    assert d.user_vocab.tolist() == ["u1", "u2", "u3"]
    assert d.item_vocab.tolist() == [10, 20, 30]
    assert d.user_vocab.name == "user_id" and d.item_vocab.name == "item_id"
    assert d.users.tolist() == [1, 0, 0, 2, 1]
    assert d.items.tolist() == [1, 0, 2, 0, 2]
    assert d.user_table.shape == (3, 0) and d.item_table.shape == (3, 0)
    assert d.ratings.tolist() == [4.0, 5.0, 3.0, 1.0, 2.0]
    assert d.timestamps.tolist() == [30, 10, 20, 40, 50]
    assert d.users.dtype == np.int32 and d.items.dtype == np.int32
    assert d.ratings.dtype == np.float32 and d.timestamps.dtype == np.int64


def test_vocab_from_tables_keeps_table_order_and_unused_ids(ds: Dataset) -> None:
    assert ds.user_vocab.tolist() == ["u3", "u1", "u4", "u2"]
    assert ds.item_vocab.tolist() == [30, 10, 20, 40]
    assert (ds.n_users, ds.n_items, ds.n_interactions, len(ds)) == (4, 4, 5, 5)
    assert ds.users.tolist() == [3, 1, 1, 0, 3]
    assert ds.items.tolist() == [2, 1, 0, 1, 0]
    # The id column moves into the vocabulary; row c of the table describes code c.
    assert list(ds.user_table.columns) == ["gender", "age", "occupation"]
    assert ds.user_table["gender"].tolist() == ["M", "F", "F", "M"]
    assert ds.item_table["title"].tolist() == ["C", "A", "B", "D"]
    assert ds.name == "tiny"
    assert repr(ds) == (
        "Dataset(name='tiny', users=4, items=4, interactions=5, "
        "sensitive=['gender', 'age', 'occupation'])"
    )


def test_optional_rating_and_timestamp_columns() -> None:
    d = Dataset.from_frames(_inter()[["user_id", "item_id"]])
    assert d.ratings is None and d.timestamps is None
    d = Dataset.from_frames(_inter(), rating_col=None, timestamp_col=None)
    assert d.ratings is None and d.timestamps is None


def test_custom_column_names() -> None:
    inter = _inter().rename(columns={"user_id": "u", "item_id": "i", "rating": "r"})
    d = Dataset.from_frames(inter, user_col="u", item_col="i", rating_col="r")
    assert d.user_vocab.tolist() == ["u1", "u2", "u3"]
    assert d.ratings.tolist() == [4.0, 5.0, 3.0, 1.0, 2.0]


def test_ids_match_across_str_and_int_types() -> None:
    users = pd.DataFrame({"user_id": [2, 1], "gender": ["F", "M"]})
    inter = pd.DataFrame({"user_id": ["1", "2", "1"], "item_id": [5, 5, 6]})
    d = Dataset.from_frames(inter, users)
    assert d.users.tolist() == [1, 0, 1]


def test_unknown_user_names_the_id() -> None:
    inter = _inter()
    inter.loc[3, "user_id"] = "u9"
    with pytest.raises(DataError, match=r"interactions name user 'u9' absent from the user table"):
        Dataset.from_frames(inter, _users(), _items())


def test_unknown_item_names_the_id() -> None:
    inter = _inter()
    inter.loc[2, "item_id"] = 99
    with pytest.raises(DataError, match=r"interactions name item 99 absent from the item table"):
        Dataset.from_frames(inter, _users(), _items())


@pytest.mark.parametrize("kind", ["user", "item"])
def test_duplicate_ids_in_a_table(kind: str) -> None:
    users, items = _users(), _items()
    if kind == "user":
        users = pd.concat([users, users.iloc[[1]]], ignore_index=True)
        dup = "'u1'"
    else:
        items = pd.concat([items, items.iloc[[2]]], ignore_index=True)
        dup = "20"
    with pytest.raises(DataError, match=f"{kind} table lists {kind} id {dup} more than once"):
        Dataset.from_frames(_inter(), users, items)


@pytest.mark.parametrize("kind", ["user", "item"])
def test_missing_ids_in_a_table(kind: str) -> None:
    users, items = _users(), _items()
    if kind == "user":
        users.loc[2, "user_id"] = None
    else:
        items["item_id"] = items["item_id"].astype("float64")
        items.loc[3, "item_id"] = np.nan
    with pytest.raises(DataError, match=f"{kind} table has 1 rows without a {kind} id"):
        Dataset.from_frames(_inter(), users, items)


def test_missing_columns() -> None:
    with pytest.raises(DataError, match=r"interactions have no column 'item_id'; columns: "):
        Dataset.from_frames(_inter().drop(columns=["item_id"]))
    with pytest.raises(DataError, match=r"user table has no column 'user_id'"):
        Dataset.from_frames(_inter(), _users().rename(columns={"user_id": "uid"}))


def test_missing_ids_in_interactions() -> None:
    inter = _inter()
    inter.loc[0, "user_id"] = None
    with pytest.raises(DataError, match="missing user or item ids; run purify"):
        Dataset.from_frames(inter)


def test_missing_or_non_numeric_timestamps_and_ratings() -> None:
    inter = _inter()
    inter["timestamp"] = inter["timestamp"].astype("float64")
    inter.loc[1, "timestamp"] = np.nan
    with pytest.raises(DataError, match=r"'timestamp' \(timestamps\) has 1 missing values"):
        Dataset.from_frames(inter)
    inter = _inter()
    inter["rating"] = ["4", "five", "3", "1", "2"]
    with pytest.raises(DataError, match=r"'rating' \(ratings\) is not numeric"):
        Dataset.from_frames(inter)


def test_sensitive_column_must_exist() -> None:
    with pytest.raises(DataError, match=r"'occupation' is declared but the user table has no"):
        Dataset.from_frames(_inter(), _users().drop(columns=["occupation"]), schema=SCHEMA)


def test_constructor_checks() -> None:
    vocab = pd.Index(["a", "b"])
    with pytest.raises(DataError, match=r"different lengths \(2 vs 1\)"):
        Dataset(np.array([0, 1]), np.array([0]), user_vocab=vocab, item_vocab=vocab)
    with pytest.raises(DataError, match="ratings has length 1, expected 2"):
        Dataset([0, 1], [0, 1], user_vocab=vocab, item_vocab=vocab, ratings=[1.0])
    with pytest.raises(DataError, match="user codes out of range"):
        Dataset([0, 2], [0, 1], user_vocab=vocab, item_vocab=vocab)
    with pytest.raises(DataError, match="item codes out of range"):
        Dataset([0, 1], [-1, 1], user_vocab=vocab, item_vocab=vocab)
    with pytest.raises(DataError, match="user_table must have one row per user code"):
        Dataset([0], [0], user_vocab=vocab, item_vocab=vocab, user_table=pd.DataFrame({"x": [1]}))
    with pytest.raises(DataError, match="user vocabulary lists user id 'a' more than once"):
        Dataset([0], [0], user_vocab=pd.Index(["a", "a"]), item_vocab=vocab)


def test_empty_dataset() -> None:
    vocab = pd.Index(["a", "b"])
    d = Dataset(np.array([], int), np.array([], int), user_vocab=vocab, item_vocab=vocab)
    assert d.n_interactions == 0
    assert d.csr().shape == (2, 2) and d.csr().nnz == 0
    assert d.user_counts().tolist() == [0, 0]


# ---------------------------------------------------------------------------- read-only


def test_arrays_are_read_only(ds: Dataset) -> None:
    for arr in (ds.users, ds.items, ds.ratings, ds.timestamps):
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0


def test_constructor_neither_freezes_nor_aliases_the_callers_arrays() -> None:
    users = np.array([0, 1, 1], dtype=np.int32)
    items = np.array([1, 0, 1], dtype=np.int32)
    ratings = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    vocab = pd.Index(["a", "b"])
    d = Dataset(users, items, user_vocab=vocab, item_vocab=vocab, ratings=ratings)
    users[0] = 1  # the caller's array stays writable...
    ratings[:] = 0
    assert d.users.tolist() == [0, 1, 1]  # ...and the dataset does not change with it
    assert d.ratings.tolist() == [1.0, 2.0, 3.0]


# ---------------------------------------------------------------------------- matrices


def test_csr_binarises_and_sums_duplicates() -> None:
    inter = pd.DataFrame(
        {"user_id": [1, 1, 1, 2], "item_id": [7, 7, 8, 8], "rating": [4.0, 2.5, 1.0, 5.0]}
    )
    d = Dataset.from_frames(inter)
    ones = d.csr()
    assert ones.dtype == np.float32
    assert ones.shape == (2, 2) and ones.nnz == 3
    assert ones.toarray().tolist() == [[1.0, 1.0], [0.0, 1.0]]
    assert d.csr("rating").toarray().tolist() == [[6.5, 1.0], [0.0, 5.0]]
    assert d.csr() is ones  # cached
    assert d.user_counts().tolist() == [3, 1]
    assert d.item_counts().tolist() == [2, 2]


def test_csr_errors() -> None:
    d = Dataset.from_frames(_inter()[["user_id", "item_id"]], name="implicit")
    with pytest.raises(DataError, match="dataset 'implicit' has no ratings"):
        d.csr("rating")
    with pytest.raises(DataError, match="csr values must be 'ones' or 'rating', got 'count'"):
        d.csr("count")


def test_counts_include_users_and_items_without_interactions(ds: Dataset) -> None:
    assert ds.user_counts().tolist() == [1, 2, 0, 2]
    assert ds.item_counts().tolist() == [2, 2, 1, 0]


def test_item_category_matrix() -> None:
    items = pd.DataFrame(
        {
            "item_id": [1, 2, 3, 4, 5, 6, 7],
            "genres": pd.Series(
                [
                    ("Drama",),
                    ["Comedy", "Animation", "Comedy"],  # repeated category counts once
                    None,
                    np.nan,
                    pd.NA,
                    "Horror",  # a scalar is one category
                    np.array(["Drama", None], dtype=object),
                ],
                dtype=object,
            ),
        }
    )
    inter = pd.DataFrame({"user_id": [1], "item_id": [1]})
    d = Dataset.from_frames(inter, items=items)
    m, cats = d.item_category_matrix("genres")
    assert cats == ["Animation", "Comedy", "Drama", "Horror"]
    assert m.shape == (7, 4) and m.dtype == np.float32
    assert m.toarray().tolist() == [
        [0, 0, 1, 0],
        [1, 1, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 1],
        [0, 0, 1, 0],
    ]
    cats.append("mutated")  # the cached list is not handed out
    assert d.item_category_matrix("genres")[1] == ["Animation", "Comedy", "Drama", "Horror"]
    with pytest.raises(DataError, match=r"item table has no column 'genre'; columns: "):
        d.item_category_matrix("genre")


# ---------------------------------------------------------------------------- groups


def test_user_groups_binary(ds: Dataset) -> None:
    g = ds.user_groups("gender")
    assert g.tolist() == ["M", "F", "F", "M"]
    assert list(g.categories) == ["F", "M"]
    assert ds.user_groups("gender") is g  # cached


def test_user_groups_ordinal_ml1m_ages(ds: Dataset) -> None:
    g = ds.user_groups("age")
    assert g.tolist() == ["56+", "<18", "<18", "18-24"]
    assert g.ordered
    assert list(g.categories) == ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]


def test_user_groups_categorical_keeps_missing(ds: Dataset) -> None:
    g = ds.user_groups("occupation")
    assert list(g.categories) == ["artist", "writer"]
    assert g.codes.tolist() == [1, 0, -1, 1]


def test_user_groups_intersection(ds: Dataset) -> None:
    g = ds.user_groups("gender&age")
    assert g.tolist() == ["M&56+", "F&<18", "F&<18", "M&18-24"]
    assert len(g.categories) == 14
    assert list(g.categories[:3]) == ["F&<18", "F&18-24", "F&25-34"]
    assert g.categories[-1] == "M&56+"
    assert ds.user_groups("gender & age").tolist() == g.tolist()  # spaces allowed
    # A user with a missing value in any part is missing in the intersection.
    three = ds.user_groups("gender&occupation&age")
    assert three.codes[2] == -1
    assert three[1] == "F&artist&<18"


def test_unknown_attribute_lists_available(ds: Dataset) -> None:
    with pytest.raises(DataError, match=r"unknown sensitive attribute 'race'") as exc:
        ds.user_groups("race")
    assert "['gender', 'age', 'occupation']" in str(exc.value)
    with pytest.raises(DataError, match=r"unknown sensitive attribute 'race'"):
        ds.user_groups("gender&race")


def test_user_groups_binary_with_three_values_is_a_data_error() -> None:
    users = pd.DataFrame({"user_id": [1, 2, 3], "gender": ["F", "M", "X"]})
    schema = Schema(sensitive=(SensitiveAttr(name="gender", kind="binary"),))
    d = Dataset.from_frames(pd.DataFrame({"user_id": [1], "item_id": [1]}), users, schema=schema)
    with pytest.raises(DataError, match="declared binary but has 3 values"):
        d.user_groups("gender")


# ---------------------------------------------------------------------------- subsets, frames


def test_subset_shares_vocab_and_tables(ds: Dataset) -> None:
    sub = ds.subset(np.array([True, False, True, False, True]), name="part")
    assert sub.name == "part"
    assert sub.users.tolist() == [3, 1, 3]
    assert sub.items.tolist() == [2, 0, 0]
    assert sub.ratings.tolist() == [4.0, 3.0, 2.0]
    assert sub.timestamps.tolist() == [30, 20, 50]
    assert sub.user_vocab.equals(ds.user_vocab) and sub.item_vocab.equals(ds.item_vocab)
    assert sub.user_table.equals(ds.user_table) and sub.item_table.equals(ds.item_table)
    assert sub.schema == ds.schema
    assert sub.user_counts().tolist() == [0, 1, 0, 2]  # same code space
    assert not sub.users.flags.writeable
    by_index = ds.subset(np.array([4, 0]))
    assert by_index.name == "tiny"
    assert by_index.users.tolist() == [3, 3]
    assert by_index.items.tolist() == [0, 2]


def test_with_interactions(ds: Dataset) -> None:
    other = ds.with_interactions(np.array([2]), np.array([3]), name="new")
    assert other.name == "new" and other.ratings is None and other.timestamps is None
    assert other.interactions_frame().to_dict("records") == [{"user_id": "u4", "item_id": 40}]
    assert other.user_vocab.equals(ds.user_vocab)


def test_interactions_frame_round_trips_original_ids(ds: Dataset) -> None:
    frame = ds.interactions_frame()
    assert frame["user_id"].tolist() == ["u2", "u1", "u1", "u3", "u2"]
    assert frame["item_id"].tolist() == [20, 10, 30, 10, 30]
    assert frame["rating"].tolist() == [4.0, 5.0, 3.0, 1.0, 2.0]
    assert frame["timestamp"].tolist() == [30, 10, 20, 40, 50]
    codes = ds.interactions_frame(original_ids=False)
    assert codes["user_id"].tolist() == [3, 1, 1, 0, 3]
    assert codes["item_id"].tolist() == [2, 1, 0, 1, 0]
    again = Dataset.from_frames(frame, ds.users_frame(), ds.items_frame(), schema=ds.schema)
    assert again.users.tolist() == ds.users.tolist()
    assert again.items.tolist() == ds.items.tolist()
    assert again.user_vocab.equals(ds.user_vocab) and again.item_vocab.equals(ds.item_vocab)
    assert again.fingerprint() == ds.fingerprint()


def test_users_and_items_frames_put_the_id_first(ds: Dataset) -> None:
    uf = ds.users_frame()
    assert list(uf.columns) == ["user_id", "gender", "age", "occupation"]
    assert uf["user_id"].tolist() == ["u3", "u1", "u4", "u2"]
    inf = ds.items_frame()
    assert list(inf.columns) == ["item_id", "title", "genres"]
    assert inf["item_id"].tolist() == [30, 10, 20, 40]
    uf.loc[0, "gender"] = "F"  # a copy: the dataset is unchanged
    assert ds.user_table.loc[0, "gender"] == "M"


# ---------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_for_equal_data(ds: Dataset) -> None:
    fp = ds.fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    rebuilt = Dataset.from_frames(_inter(), _users(), _items(), schema=SCHEMA, name="other")
    assert rebuilt.fingerprint() == fp  # the name is not part of the data


def _changed(what: str) -> Dataset:
    inter, users, items, schema = _inter(), _users(), _items(), SCHEMA
    if what == "rating":
        inter.loc[0, "rating"] = 5.0
    elif what == "timestamp":
        inter.loc[0, "timestamp"] = 31
    elif what == "item":
        inter.loc[0, "item_id"] = 40
    elif what == "no_ratings":
        inter = inter.drop(columns=["rating"])
    elif what == "extra_row":
        inter = pd.concat([inter, inter.iloc[[0]]], ignore_index=True)
    elif what == "user_id_renamed":
        users.loc[2, "user_id"] = "u5"  # a user without interactions
        inter = inter.copy()
    elif what == "gender":
        users.loc[1, "gender"] = "M"
    elif what == "genres":
        items.at[3, "genres"] = ("Horror",)
    elif what == "schema":
        schema = SCHEMA.with_sensitive([SensitiveAttr(name="gender", kind="binary")])
    return Dataset.from_frames(inter, users, items, schema=schema)


@pytest.mark.parametrize(
    "what",
    [
        "rating",
        "timestamp",
        "item",
        "no_ratings",
        "extra_row",
        "user_id_renamed",
        "gender",
        "genres",
        "schema",
    ],
)
def test_fingerprint_changes_when_data_changes(ds: Dataset, what: str) -> None:
    assert _changed(what).fingerprint() != ds.fingerprint()


def test_fingerprint_sees_ids_past_the_first_thousand() -> None:
    n = 1500
    inter = pd.DataFrame({"user_id": np.arange(n), "item_id": np.zeros(n, int)})
    a = Dataset.from_frames(inter)
    inter.loc[n - 1, "user_id"] = 10**6  # same codes, one different original id
    b = Dataset.from_frames(inter)
    assert a.users.tolist() == b.users.tolist()
    assert a.fingerprint() != b.fingerprint()


# ---------------------------------------------------------------------------- package exports


def test_package_exports_the_public_api() -> None:
    for name in debiasrec.data.__all__:
        assert hasattr(debiasrec.data, name), name
    assert (
        debiasrec.data.random_split is importlib.import_module("debiasrec.data.split").random_split
    )
    assert debiasrec.data.purify is importlib.import_module("debiasrec.data.purify").purify
    assert callable(debiasrec.data.describe)
    assert debiasrec.data.load_dataset.__module__ == "debiasrec.data.purify"
    # The download module stays a module (tests and callers patch its attributes).
    fetch_module = importlib.import_module("debiasrec.data.fetch")
    assert debiasrec.data.fetch is fetch_module
    assert set(debiasrec.data.__all__) >= {
        "Dataset",
        "Schema",
        "SensitiveAttr",
        "RawData",
        "load",
        "load_dataset",
        "purify",
        "PurifyConfig",
        "PurifyReport",
        "describe",
        "random_split",
        "temporal_split",
        "leave_one_out_split",
        "make_split",
        "Split",
        "generate",
        "SyntheticConfig",
        "SyntheticTruth",
    }
