"""Splits: RecBole's ratio rule, partition properties, seeding, leave-one-out, temporal, save."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from debiasrec.data.dataset import Dataset
from debiasrec.data.split import (
    Split,
    _ratio_counts,
    leave_one_out_split,
    make_split,
    random_split,
    temporal_split,
)
from debiasrec.errors import ConfigError, DataError


def recbole_counts(tot: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """RecBole 1.2.1 ``Dataset.split_by_ratio`` + ``_calcu_split_ids``, transcribed verbatim."""
    tot_ratio = sum(ratios)
    r = [x / tot_ratio for x in ratios]
    cnt = [int(r[i] * tot) for i in range(len(r))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(r)):
        if cnt[0] <= 1:
            break
        if 0 < r[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt[0], cnt[1], cnt[2]


def make_ds(sizes: list[int], *, seed: int = 0, timestamps: bool = True) -> Dataset:
    """User ``u{k}`` has ``sizes[k]`` interactions with distinct items; rows shuffled."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(len(sizes)), sizes)
    items = np.concatenate([rng.permutation(max(sizes + [1]))[:n] for n in sizes]).astype(int)
    perm = rng.permutation(len(users))
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users[perm]],
            "item_id": items[perm],
            "rating": rng.integers(1, 6, len(users)).astype(float),
        }
    )
    if timestamps:
        frame["timestamp"] = rng.permutation(len(users)) * 10
    users_table = pd.DataFrame({"user_id": [f"u{k}" for k in range(len(sizes))]})
    return Dataset.from_frames(frame, users_table, name="toy")


def per_user(ds: Dataset, n_users: int) -> np.ndarray:
    return np.bincount(ds.users, minlength=n_users)


def pairs(ds: Dataset) -> list[tuple[int, int, int]]:
    """(user, item, timestamp) triples, sorted, as a multiset of the part's rows."""
    return sorted(zip(ds.users.tolist(), ds.items.tolist(), ds.timestamps.tolist(), strict=True))


def assert_partition(ds: Dataset, split: Split) -> None:
    parts = list(split)
    assert sum(len(p) for p in parts) == len(ds)
    assert sorted(sum((pairs(p) for p in parts), [])) == pairs(ds)
    for part in parts:
        assert part.user_vocab.equals(ds.user_vocab)
        assert part.item_vocab.equals(ds.item_vocab)
        assert part.user_table.equals(ds.user_table) and part.item_table.equals(ds.item_table)


# ---------------------------------------------------------------------------- the ratio rule


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, (0, 0, 0)),
        (1, (1, 0, 0)),
        (2, (1, 0, 1)),
        (3, (1, 1, 1)),
        (9, (7, 1, 1)),
        (10, (8, 1, 1)),
        (19, (17, 1, 1)),
        (20, (16, 2, 2)),
        (25, (21, 2, 2)),
        (100, (80, 10, 10)),
    ],
)
def test_ratio_counts_match_recbole(n: int, expected: tuple[int, int, int]) -> None:
    assert recbole_counts(n, (0.8, 0.1, 0.1)) == expected
    got = _ratio_counts(np.array([n]), (0.8, 0.1, 0.1))
    assert tuple(int(c[0]) for c in got) == expected


@given(
    n=st.lists(st.integers(0, 200), min_size=1, max_size=20),
    ratios=st.tuples(
        st.floats(0.05, 10), st.sampled_from([0.0, 0.05, 0.1, 0.3, 1.0, 2.5]), st.floats(0, 3)
    ),
)
@settings(max_examples=150, deadline=None)
def test_ratio_counts_match_recbole_property(n: list[int], ratios: tuple[float, ...]) -> None:
    got = np.stack(_ratio_counts(np.array(n), ratios), axis=1)
    want = np.array([recbole_counts(k, ratios) for k in n]).reshape(-1, 3)
    np.testing.assert_array_equal(got, want)
    assert (got >= 0).all() and (got.sum(1) == n).all()


# ---------------------------------------------------------------------------- random


def test_random_split_counts_per_user() -> None:
    sizes = [20, 9, 3, 2, 1, 10, 0, 25]
    ds = make_ds(sizes)
    split = random_split(ds)
    assert_partition(ds, split)
    got = np.stack([per_user(p, len(sizes)) for p in split], axis=1)
    assert got.tolist() == [
        [16, 2, 2],
        [7, 1, 1],
        [1, 1, 1],
        [1, 0, 1],
        [1, 0, 0],
        [8, 1, 1],
        [0, 0, 0],
        [21, 2, 2],
    ]
    assert [p.name for p in split] == ["toy:train", "toy:valid", "toy:test"]


def test_random_split_keeps_ratings_and_timestamps_with_their_rows() -> None:
    ds = make_ds([12, 7])

    def rows(d: Dataset) -> list[tuple]:
        cols = (d.users.tolist(), d.items.tolist(), d.ratings.tolist(), d.timestamps.tolist())
        return list(zip(*cols, strict=True))

    assert sorted(sum((rows(p) for p in random_split(ds, rng=3)), [])) == sorted(rows(ds))


def test_random_split_is_seeded() -> None:
    ds = make_ds([30, 30, 30])
    a, b = random_split(ds, rng=7), random_split(ds, rng=7)
    c = random_split(ds, rng=8)
    for pa, pb in zip(a, b, strict=True):
        assert pairs(pa) == pairs(pb)
    assert pairs(a.test) != pairs(c.test)
    assert pairs(random_split(ds).test) == pairs(random_split(ds, rng=0).test)
    gen_a = random_split(ds, rng=np.random.default_rng(5))
    gen_b = random_split(ds, rng=np.random.default_rng(5))
    assert pairs(gen_a.valid) == pairs(gen_b.valid)


def test_random_split_is_not_row_order() -> None:
    # With many interactions per user, the test part is not just each user's last rows.
    ds = make_ds([100])
    test_rows = np.flatnonzero(np.isin(ds.items, random_split(ds).test.items))
    assert test_rows.tolist() != list(range(90, 100))


def test_random_split_other_ratios() -> None:
    ds = make_ds([20, 10])
    split = random_split(ds, (8, 1, 1), normalise=True)  # rescaled only when asked
    assert [per_user(p, 2).tolist() for p in split] == [[16, 8], [2, 1], [2, 1]]
    split = random_split(ds, (0.9, 0.0, 0.1))
    assert [per_user(p, 2).tolist() for p in split] == [[18, 9], [0, 0], [2, 1]]
    split = random_split(ds, (0.5, 0.25, 0.25))
    assert [per_user(p, 2).tolist() for p in split] == [[10, 6], [5, 2], [5, 2]]


def test_random_split_of_an_empty_dataset() -> None:
    ds = make_ds([3]).subset(np.zeros(3, dtype=bool))
    split = random_split(ds)
    assert [len(p) for p in split] == [0, 0, 0]


@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    ratios=st.sampled_from([(0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (0.6, 0.0, 0.4), (1, 1, 1)]),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_random_split_property(sizes: list[int], ratios: tuple, seed: int) -> None:
    ds = make_ds(sizes, seed=seed % 1000)
    split = random_split(ds, ratios, rng=seed, normalise=sum(ratios) != 1)
    assert_partition(ds, split)
    got = np.stack([per_user(p, len(sizes)) for p in split], axis=1)
    want = np.array([recbole_counts(n, ratios) for n in sizes])
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------- leave one out


def _loo_ds() -> Dataset:
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "c", "c", "c", "d"],
            "item_id": [1, 2, 3, 4, 1, 2, 5, 6, 7, 1],
            "timestamp": [50, 10, 30, 40, 5, 6, 7, 7, 7, 1],
        }
    )
    return Dataset.from_frames(frame)


def _items_of(part: Dataset, user: str) -> list[int]:
    frame = part.interactions_frame()
    return sorted(frame.loc[frame["user_id"] == user, "item_id"].tolist())


def test_leave_one_out() -> None:
    ds = _loo_ds()
    split = leave_one_out_split(ds)
    assert_partition(ds, split)
    # a: last by time (ts 50, item 1) to test, second last (ts 40, item 4) to valid.
    assert _items_of(split.test, "a") == [1]
    assert _items_of(split.valid, "a") == [4]
    assert _items_of(split.train, "a") == [2, 3]
    # c: tied timestamps are ordered by row, so the last row is the latest.
    assert _items_of(split.test, "c") == [7]
    assert _items_of(split.valid, "c") == [6]
    assert _items_of(split.train, "c") == [5]
    # Users with fewer than 3 interactions keep everything in training.
    for user, items in (("b", [1, 2]), ("d", [1])):
        assert _items_of(split.train, user) == items
        assert _items_of(split.valid, user) == [] and _items_of(split.test, user) == []
    assert [len(p) for p in split] == [6, 2, 2]


def test_leave_one_out_test_is_each_users_latest() -> None:
    ds = make_ds([5, 8, 3, 12], seed=4)
    split = leave_one_out_split(ds)
    frame = ds.interactions_frame(original_ids=False)
    latest = frame.groupby("user_id")["timestamp"].max().sort_index()
    test = split.test.interactions_frame(original_ids=False).set_index("user_id")["timestamp"]
    assert test.sort_index().tolist() == latest.tolist()
    train = split.train.interactions_frame(original_ids=False).groupby("user_id")["timestamp"]
    valid = split.valid.interactions_frame(original_ids=False).set_index("user_id")["timestamp"]
    assert (train.max().sort_index() < valid.sort_index()).all()
    assert (valid.sort_index() < test.sort_index()).all()


@pytest.mark.parametrize(
    "fn",
    [leave_one_out_split, temporal_split, lambda d: make_split(d, "loo")],
)
def test_time_based_splits_need_timestamps(fn) -> None:
    ds = make_ds([5, 5], timestamps=False)
    with pytest.raises(DataError, match=r"dataset 'toy' has no timestamps.*'random' split"):
        fn(ds)


# ---------------------------------------------------------------------------- temporal


@pytest.mark.parametrize(
    ("n", "expected"),
    [(20, [16, 2, 2]), (15, [13, 1, 1]), (9, [7, 1, 1]), (100, [80, 10, 10]), (2, [1, 0, 1])],
)
def test_temporal_split_sizes_and_order(n: int, expected: list[int]) -> None:
    ds = make_ds([n // 2, n - n // 2], seed=n)
    split = temporal_split(ds)
    assert [len(p) for p in split] == expected
    assert expected == list(recbole_counts(n, (0.8, 0.1, 0.1)))
    assert_partition(ds, split)
    train, valid, test = (p.timestamps for p in split)
    later = [t for t in (valid, test) if len(t)]
    for t in later:
        assert train.max() <= t.min()
    if len(valid) and len(test):
        assert valid.max() <= test.min()


def test_temporal_split_breaks_ties_by_row_order() -> None:
    frame = pd.DataFrame({"user_id": np.arange(10) % 3, "item_id": np.arange(10), "timestamp": 7})
    split = temporal_split(Dataset.from_frames(frame))
    assert split.train.items.tolist() == list(range(8))
    assert split.valid.items.tolist() == [8]
    assert split.test.items.tolist() == [9]


def test_temporal_split_other_ratios() -> None:
    ds = make_ds([10, 10])
    assert [len(p) for p in temporal_split(ds, (0.5, 0.25, 0.25))] == [10, 5, 5]
    assert [len(p) for p in temporal_split(ds, (0.7, 0.0, 0.3))] == [14, 0, 6]


# ---------------------------------------------------------------------------- ratios, dispatch


@pytest.mark.parametrize(
    "ratios",
    [
        (0.8, 0.2),
        (0.8, 0.1, 0.05, 0.05),
        (0.0, 0.5, 0.5),
        (-0.1, 0.5, 0.5),
        (0.8, -0.1, 0.3),
        (float("nan"), 0.1, 0.1),
        (0.8, float("inf"), 0.1),
        "abc",
        None,
        ("a", "b", "c"),
    ],
)
@pytest.mark.parametrize("method", ["random", "temporal"])
def test_bad_ratios_are_config_errors(ratios, method: str) -> None:
    ds = make_ds([10, 10])
    with pytest.raises(ConfigError, match="split ratios must be three finite non-negative"):
        make_split(ds, method, ratios)


def test_numpy_ratios_are_accepted() -> None:
    ds = make_ds([10, 10])
    split = random_split(ds, np.array([0.8, 0.1, 0.1]))
    assert [len(p) for p in split] == [16, 2, 2]


def test_make_split_dispatch() -> None:
    ds = make_ds([12, 4, 30], seed=1)
    for a, b in zip(make_split(ds), random_split(ds), strict=True):
        assert pairs(a) == pairs(b)
    for a, b in zip(make_split(ds, "random", rng=4), random_split(ds, rng=4), strict=True):
        assert pairs(a) == pairs(b)
    for a, b in zip(make_split(ds, "temporal"), temporal_split(ds), strict=True):
        assert pairs(a) == pairs(b)
    for method in ("loo", "leave_one_out"):
        for a, b in zip(make_split(ds, method), leave_one_out_split(ds), strict=True):
            assert pairs(a) == pairs(b)
    with pytest.raises(ConfigError, match=r"unknown split method 'kfold'"):
        make_split(ds, "kfold")


# ---------------------------------------------------------------------------- Split


def test_split_is_a_frozen_triple() -> None:
    ds = make_ds([10])
    split = random_split(ds)
    train, valid, test = split
    assert (train, valid, test) == (split.train, split.valid, split.test)
    with pytest.raises(AttributeError):
        split.train = ds  # type: ignore[misc]


def test_split_save_writes_parquet_with_original_ids(tmp_path: Path) -> None:
    ds = make_ds([20, 9, 3])
    split = random_split(ds)
    folder = tmp_path / "out" / "split"
    split.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "dataset.json",
        "items.parquet",
        "test.parquet",
        "train.parquet",
        "users.parquet",
        "valid.parquet",
    ]
    back = Split.load(folder)  # the same codes, tables and schema
    for a, b in zip(split, back, strict=True):
        assert a.fingerprint() == b.fingerprint() and a.name == b.name
    frames = {}
    for part, sub in zip(("train", "valid", "test"), split, strict=True):
        frames[part] = pd.read_parquet(folder / f"{part}.parquet")
        assert list(frames[part].columns) == ["user_id", "item_id", "rating", "timestamp"]
        pd.testing.assert_frame_equal(frames[part], sub.interactions_frame(), check_dtype=False)
    assert set(frames["test"]["user_id"]) == {"u0", "u1", "u2"}
    key = ["user_id", "item_id", "timestamp"]
    saved = pd.concat(frames.values()).sort_values(key).reset_index(drop=True)
    original = ds.interactions_frame().sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(saved, original, check_dtype=False)


def test_split_from_frames_round_trip_and_errors():
    import pandas as pd

    from debiasrec.data.split import split_from_frames
    from debiasrec.data.synthetic import SyntheticConfig, generate

    ds, _ = generate(SyntheticConfig(n_users=30, n_items=40, mean_interactions=10), rng=3)
    sp = random_split(ds, rng=5)
    frames = [p.interactions_frame() for p in sp]
    again = split_from_frames(ds, *frames)
    for a, b in zip(sp, again, strict=True):
        assert sorted(zip(a.users, a.items, strict=True)) == sorted(zip(b.users, b.items, strict=True))
    with pytest.raises(DataError, match="in no part"):
        split_from_frames(ds, frames[0], frames[1], frames[2].iloc[1:])
    with pytest.raises(DataError, match="already in another part"):
        split_from_frames(ds, frames[0], frames[1], pd.concat([frames[2], frames[0].iloc[:1]]))
    bad = frames[2].copy()
    bad.loc[bad.index[0], "user_id"] = 10_000
    with pytest.raises(DataError, match="not in dataset"):
        split_from_frames(ds, frames[0], frames[1], bad)
