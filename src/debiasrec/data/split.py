"""Train/valid/test splits that share vocabularies. All vectorised and seeded."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from debiasrec.data.dataset import Dataset
from debiasrec.errors import ConfigError, DataError
from debiasrec.random import np_rng


@dataclass(frozen=True)
class Split:
    """A ``(train, valid, test)`` triple of datasets sharing vocabularies and tables."""

    train: Dataset
    valid: Dataset
    test: Dataset

    def __iter__(self) -> Iterator[Dataset]:
        return iter((self.train, self.valid, self.test))

    def save(self, folder: str | Path) -> None:
        """Write ``{train,valid,test}.parquet`` (original ids) with the shared user and item
        tables and ``dataset.json`` into ``folder`` (see :mod:`debiasrec.data.io`)."""
        from debiasrec.data.io import save_split

        save_split(self, folder)

    @classmethod
    def load(cls, folder: str | Path) -> Split:
        """Read a split written by :meth:`save`.

        Raises:
            DataError: missing or corrupt files; the message names the file.
        """
        from debiasrec.data.io import load_saved_split

        return load_saved_split(folder)


def _ratio_counts(n: np.ndarray, ratios: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """Per-user counts for (train, valid, test) given per-user sizes ``n``.

    valid and test get ``floor(ratio * n)``; a part whose ideal size is in (0, 1) gets one item as
    long as training keeps more than one (RecBole's rule for ``RS`` with ``group_by=user``).

    The normalised ratios are RecBole's float expression exactly: ``x / sum(ratios)`` with
    Python's built-in ``sum`` (compensated summation from Python 3.12 on; NumPy's
    ``ndarray.sum`` rounds differently, and ``ideal * n`` can then land on the other side of an
    integer, e.g. ``n=2, ratios=(0.25, 0.3, 0.05)``). Each ``ratio * n`` is the same IEEE product
    in NumPy as in Python, so the counts equal RecBole's on the Python running them.
    """
    tot = sum(float(x) for x in ratios)
    r = np.array([float(x) / tot for x in ratios], dtype=np.float64)
    cnt_valid = np.floor(r[1] * n).astype(np.int64)
    cnt_test = np.floor(r[2] * n).astype(np.int64)
    cnt_train = n - cnt_valid - cnt_test
    # Same order as RecBole: the last part first, then the middle one.
    for ideal, cnt in ((r[2] * n, cnt_test), (r[1] * n, cnt_valid)):
        bump = (cnt_train > 1) & (ideal > 0) & (ideal < 1)
        cnt += bump
        cnt_train -= bump
    return cnt_train, cnt_valid, cnt_test


def _assign(ds: Dataset, order: np.ndarray, counts: tuple[np.ndarray, ...]) -> np.ndarray:
    """Part index (0 train, 1 valid, 2 test) of each interaction given a within-user order."""
    part = np.empty(ds.n_interactions, dtype=np.int8)
    users_sorted = ds.users[order]
    starts = np.searchsorted(users_sorted, np.arange(ds.n_users), side="left")
    pos = np.arange(ds.n_interactions) - starts[users_sorted]
    n_train, n_valid, _ = (c[users_sorted] for c in counts)
    part_sorted = np.where(pos < n_train, 0, np.where(pos < n_train + n_valid, 1, 2))
    part[order] = part_sorted
    return part


def _split_by_part(ds: Dataset, part: np.ndarray) -> Split:
    return Split(
        train=ds.subset(part == 0, name=f"{ds.name}:train"),
        valid=ds.subset(part == 1, name=f"{ds.name}:valid"),
        test=ds.subset(part == 2, name=f"{ds.name}:test"),
    )


def random_split(
    ds: Dataset,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    *,
    rng: int | np.random.Generator | None = 0,
    normalise: bool = False,
) -> Split:
    """Per-user random split (RecBole ``RS`` with ``group_by=user``), default 8:1:1.

    Each user's interactions are shuffled and cut by ``ratios``; every user with enough
    interactions appears in all three parts.

    Raises:
        ConfigError: ratios that are not three finite non-negative numbers with train > 0, or
            that do not sum to 1 unless ``normalise=True`` (then they are rescaled).
    """
    ratios = check_ratios(ratios, normalise=normalise)
    gen = np_rng(rng)
    key = gen.random(ds.n_interactions)
    order = np.lexsort((key, ds.users))
    counts = _ratio_counts(ds.user_counts(), ratios)
    return _split_by_part(ds, _assign(ds, order, counts))


def leave_one_out_split(ds: Dataset) -> Split:
    """Last interaction (by time) of each user to test, the one before to valid, rest to train.

    Users with fewer than 3 interactions keep everything in training.
    """
    ts = _require_timestamps(ds)
    order = np.lexsort((np.arange(ds.n_interactions), ts, ds.users))
    n = ds.user_counts()
    has = n >= 3
    counts = (np.where(has, n - 2, n), has.astype(np.int64), has.astype(np.int64))
    return _split_by_part(ds, _assign(ds, order, counts))


def temporal_split(
    ds: Dataset, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), *, normalise: bool = False
) -> Split:
    """Global temporal split: the earliest interactions train, the next valid, the latest test.

    Part sizes follow the same rule as :func:`random_split` applied to all interactions at once
    (RecBole's ``TO`` ordering with ``RS`` ratios): valid and test get ``floor(ratio * n)``.
    Ties in time are broken by row order so the cut sizes are exact.

    Raises:
        ConfigError: bad ratios, as for :func:`random_split`.
    """
    ratios = check_ratios(ratios, normalise=normalise)
    ts = _require_timestamps(ds)
    order = np.lexsort((np.arange(ds.n_interactions), ts))
    n = ds.n_interactions
    n_train, n_valid, _ = (int(c[0]) for c in _ratio_counts(np.array([n]), ratios))
    cut1 = n_train
    cut2 = n_train + n_valid
    part = np.empty(n, dtype=np.int8)
    part[order[:cut1]] = 0
    part[order[cut1:cut2]] = 1
    part[order[cut2:]] = 2
    return _split_by_part(ds, part)


def split_from_frames(
    ds: Dataset, train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame
) -> Split:
    """A split given as three tables of original ``user_id, item_id`` pairs (e.g. another tool's).

    Every interaction of ``ds`` must be in exactly one part and every listed pair must be an
    interaction of ``ds``.

    Raises:
        DataError: a pair listed twice, in no part, or not in the dataset.
    """
    keys = ds.users.astype(np.int64) * ds.n_items + ds.items
    part = np.full(ds.n_interactions, -1, dtype=np.int8)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    for label, frame in enumerate((train, valid, test)):
        name = ("train", "valid", "test")[label]
        for col in ("user_id", "item_id"):
            if col not in frame.columns:
                raise DataError(
                    f"{name} split has no column {col!r}; columns: {list(frame.columns)}"
                )
        u = _lookup(ds.user_vocab, frame["user_id"])
        i = _lookup(ds.item_vocab, frame["item_id"])
        bad = (u < 0) | (i < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{name} split row {row}: pair ({frame['user_id'].iloc[row]!r}, "
                f"{frame['item_id'].iloc[row]!r}) is not in dataset {ds.name!r}"
            )
        k = u * ds.n_items + i
        pos = np.searchsorted(sorted_keys, k)
        found = (pos < len(sorted_keys)) & (sorted_keys[np.minimum(pos, len(keys) - 1)] == k)
        if not found.all():
            row = int(np.flatnonzero(~found)[0])
            raise DataError(f"{name} split row {row}: pair is not an interaction of {ds.name!r}")
        idx = order[pos]
        if (part[idx] >= 0).any():
            row = int(np.flatnonzero(part[idx] >= 0)[0])
            raise DataError(f"{name} split row {row}: pair is already in another part")
        part[idx] = label
    if (part < 0).any():
        n = int((part < 0).sum())
        raise DataError(f"{n} interactions of {ds.name!r} are in no part of the given split")
    return _split_by_part(ds, part)


def _lookup(vocab: pd.Index, values: pd.Series) -> np.ndarray:
    codes = vocab.get_indexer(values)
    if (codes < 0).any():
        codes = pd.Index(vocab.astype(str)).get_indexer(values.astype(str))
    return codes.astype(np.int64)


def make_split(
    ds: Dataset,
    method: str = "random",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    *,
    rng: int | np.random.Generator | None = 0,
    normalise: bool = False,
) -> Split:
    """Dispatch by name: ``random`` (per user), ``temporal`` (global) or ``loo`` (leave-one-out).

    ``ratios`` must sum to 1; ``normalise=True`` rescales them instead (e.g. ``(8, 1, 1)``).
    """
    if method == "random":
        return random_split(ds, ratios, rng=rng, normalise=normalise)
    if method == "temporal":
        return temporal_split(ds, ratios, normalise=normalise)
    if method in ("loo", "leave_one_out"):
        return leave_one_out_split(ds)
    raise ConfigError(f"unknown split method {method!r}; use 'random', 'temporal' or 'loo'")


#: How far from 1 the sum of split ratios may be (rounding: 0.7 + 0.2 + 0.1 != 1.0 in floats).
RATIO_SUM_TOL = 1e-6


def check_ratios(ratios: Sequence[float], *, normalise: bool = False) -> tuple[float, float, float]:
    """Split ratios (train, valid, test) as three floats summing to 1.

    Args:
        ratios: three finite non-negative numbers with train > 0.
        normalise: rescale ratios that do not sum to 1 (e.g. ``(8, 1, 1)``); without it such
            ratios are an error, never silently rescaled.

    Raises:
        ConfigError: not three finite non-negative numbers with train > 0, or (without
            ``normalise``) a sum other than 1.
    """
    try:
        r = [] if isinstance(ratios, str) else [float(x) for x in ratios]
    except (TypeError, ValueError):
        r = []
    if len(r) != 3 or not all(math.isfinite(x) and x >= 0 for x in r) or r[0] <= 0:
        raise ConfigError(
            "split ratios must be three finite non-negative numbers (train, valid, test) with "
            f"train > 0, e.g. (0.8, 0.1, 0.1); got {ratios!r}"
        )
    total = sum(r)
    if abs(total - 1.0) > RATIO_SUM_TOL:
        if not normalise:
            shown = ", ".join(f"{x:g}" for x in r)
            raise ConfigError(
                f"split ratios ({shown}) sum to {total:g}, not 1; give ratios that sum to 1 "
                "(train, valid, test), e.g. (0.8, 0.1, 0.1), or ask for rescaling explicitly "
                "with normalise=True"
            )
        r = [x / total for x in r]
    return (r[0], r[1], r[2])


def _require_timestamps(ds: Dataset) -> np.ndarray:
    if ds.timestamps is None:
        raise DataError(
            f"dataset {ds.name!r} has no timestamps; temporal and leave-one-out splits need them "
            "(use the 'random' split)"
        )
    return ds.timestamps
