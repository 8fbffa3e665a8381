"""The read-only ``Dataset``: interactions with dense integer codes plus user and item tables."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from debiasrec.data.schema import Schema
from debiasrec.errors import DataError

INTERSECTION_SEP = "&"


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


class Dataset:
    """Interactions (user, item, rating?, timestamp?) with user and item attribute tables.

    Ids are mapped once to dense codes ``0..n-1``; ``user_vocab``/``item_vocab`` map codes back to
    the original ids for output. Row ``c`` of ``user_table``/``item_table`` describes code ``c``.
    Instances are read-only: arrays are non-writable and transforms return new datasets.

    Build one with :meth:`from_frames` (or a loader in :mod:`debiasrec.data.loaders`).
    """

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        *,
        user_vocab: pd.Index,
        item_vocab: pd.Index,
        ratings: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        user_table: pd.DataFrame | None = None,
        item_table: pd.DataFrame | None = None,
        schema: Schema | None = None,
        name: str = "dataset",
    ) -> None:
        n = len(users)
        if len(items) != n:
            raise DataError(f"users and items have different lengths ({n} vs {len(items)})")
        for label, arr in (("ratings", ratings), ("timestamps", timestamps)):
            if arr is not None and len(arr) != n:
                raise DataError(f"{label} has length {len(arr)}, expected {n}")
        self.users = _readonly(np.asarray(users, dtype=np.int32))
        self.items = _readonly(np.asarray(items, dtype=np.int32))
        self.ratings = None if ratings is None else _readonly(np.asarray(ratings, np.float32))
        self.timestamps = None if timestamps is None else _readonly(np.asarray(timestamps, np.int64))
        self.user_vocab = pd.Index(user_vocab, name="user_id")
        self.item_vocab = pd.Index(item_vocab, name="item_id")
        if n and (self.users.min() < 0 or self.users.max() >= len(self.user_vocab)):
            raise DataError("user codes out of range of the user vocabulary")
        if n and (self.items.min() < 0 or self.items.max() >= len(self.item_vocab)):
            raise DataError("item codes out of range of the item vocabulary")
        self.user_table = (
            pd.DataFrame(index=pd.RangeIndex(len(self.user_vocab)))
            if user_table is None
            else user_table.reset_index(drop=True)
        )
        self.item_table = (
            pd.DataFrame(index=pd.RangeIndex(len(self.item_vocab)))
            if item_table is None
            else item_table.reset_index(drop=True)
        )
        if len(self.user_table) != len(self.user_vocab):
            raise DataError("user_table must have one row per user code")
        if len(self.item_table) != len(self.item_vocab):
            raise DataError("item_table must have one row per item code")
        self.schema = schema or Schema()
        for a in self.schema.sensitive:
            if a.name not in self.user_table.columns:
                raise DataError(
                    f"sensitive attribute {a.name!r} is declared but the user table has no such "
                    f"column; columns: {list(self.user_table.columns)}"
                )
        self.name = name
        self._cache: dict[Any, Any] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frames(
        cls,
        interactions: pd.DataFrame,
        users: pd.DataFrame | None = None,
        items: pd.DataFrame | None = None,
        *,
        schema: Schema | None = None,
        user_col: str = "user_id",
        item_col: str = "item_id",
        rating_col: str | None = "rating",
        timestamp_col: str | None = "timestamp",
        name: str = "dataset",
    ) -> Dataset:
        """Build a dataset from clean frames (run :func:`debiasrec.data.purify.purify` first).

        The user vocabulary is the user table's ids when a table is given, else the sorted ids
        seen in interactions; likewise for items.

        Raises:
            DataError: missing columns, missing ids, duplicate ids in a table, or interactions
                naming users/items absent from the given tables.
        """
        for col in (user_col, item_col):
            if col not in interactions.columns:
                raise DataError(
                    f"interactions have no column {col!r}; columns: {list(interactions.columns)}"
                )
        u_raw, i_raw = interactions[user_col], interactions[item_col]
        if u_raw.isna().any() or i_raw.isna().any():
            raise DataError("interactions contain missing user or item ids; run purify() first")

        def vocab_and_table(
            table: pd.DataFrame | None, col: str, seen: pd.Series, kind: str
        ) -> tuple[pd.Index, pd.DataFrame | None]:
            if table is None:
                return pd.Index(pd.unique(seen)).sort_values(), None
            if col not in table.columns:
                raise DataError(f"{kind} table has no column {col!r}; columns: {list(table.columns)}")
            dup = table[col].duplicated()
            if dup.any():
                raise DataError(
                    f"{kind} table lists {kind} id {table[col][dup].iloc[0]!r} more than once"
                )
            return pd.Index(table[col]), table.drop(columns=[col])

        user_vocab, user_table = vocab_and_table(users, user_col, u_raw, "user")
        item_vocab, item_table = vocab_and_table(items, item_col, i_raw, "item")
        ucodes = _codes(user_vocab, u_raw)
        icodes = _codes(item_vocab, i_raw)
        if (ucodes < 0).any():
            raise DataError(
                f"interactions name user {u_raw[ucodes < 0].iloc[0]!r} absent from the user "
                "table; run purify() (it drops and counts such rows)"
            )
        if (icodes < 0).any():
            raise DataError(
                f"interactions name item {i_raw[icodes < 0].iloc[0]!r} absent from the item "
                "table; run purify() (it drops and counts such rows)"
            )
        ratings = (
            interactions[rating_col].to_numpy(np.float32)
            if rating_col and rating_col in interactions
            else None
        )
        timestamps = (
            interactions[timestamp_col].to_numpy(np.int64)
            if timestamp_col and timestamp_col in interactions
            else None
        )
        return cls(
            ucodes,
            icodes,
            user_vocab=user_vocab,
            item_vocab=item_vocab,
            ratings=ratings,
            timestamps=timestamps,
            user_table=user_table,
            item_table=item_table,
            schema=schema,
            name=name,
        )

    def subset(self, index: np.ndarray, *, name: str | None = None) -> Dataset:
        """Interactions selected by a boolean mask or integer index; vocabularies and tables shared."""
        return Dataset(
            self.users[index],
            self.items[index],
            user_vocab=self.user_vocab,
            item_vocab=self.item_vocab,
            ratings=None if self.ratings is None else self.ratings[index],
            timestamps=None if self.timestamps is None else self.timestamps[index],
            user_table=self.user_table,
            item_table=self.item_table,
            schema=self.schema,
            name=name or self.name,
        )

    def with_interactions(
        self,
        users: np.ndarray,
        items: np.ndarray,
        *,
        ratings: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        name: str | None = None,
    ) -> Dataset:
        """Same vocabularies and tables, other interactions (for transforms)."""
        return Dataset(
            users,
            items,
            user_vocab=self.user_vocab,
            item_vocab=self.item_vocab,
            ratings=ratings,
            timestamps=timestamps,
            user_table=self.user_table,
            item_table=self.item_table,
            schema=self.schema,
            name=name or self.name,
        )

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    @property
    def n_interactions(self) -> int:
        return len(self.users)

    def __len__(self) -> int:
        return self.n_interactions

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"interactions={self.n_interactions}, sensitive={self.schema.sensitive_names})"
        )

    def csr(self, values: str = "ones") -> sp.csr_matrix:
        """User x item matrix (``values``: ``"ones"`` or ``"rating"``), duplicates summed. Cached."""
        key = ("csr", values)
        if key not in self._cache:
            if values == "ones":
                data = np.ones(self.n_interactions, dtype=np.float32)
            elif values == "rating":
                if self.ratings is None:
                    raise DataError(f"dataset {self.name!r} has no ratings")
                data = self.ratings
            else:
                raise DataError(f"csr values must be 'ones' or 'rating', got {values!r}")
            m = sp.csr_matrix(
                (data, (self.users, self.items)), shape=(self.n_users, self.n_items), dtype=np.float32
            )
            m.sum_duplicates()
            if values == "ones":
                m.data[:] = 1.0
            self._cache[key] = m
        return self._cache[key]

    def user_counts(self) -> np.ndarray:
        """Number of interactions per user code."""
        return np.bincount(self.users, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        """Number of interactions per item code."""
        return np.bincount(self.items, minlength=self.n_items)

    def user_groups(self, attr: str) -> pd.Categorical:
        """Group label of each user code for a sensitive attribute or an intersection ``"a&b"``.

        Raises:
            DataError: an unknown attribute name (the message lists the declared ones).
        """
        key = ("groups", attr)
        if key in self._cache:
            return self._cache[key]
        names = attr.split(INTERSECTION_SEP)
        cats = []
        for n in names:
            spec = self.schema.attr(n.strip())
            cats.append(spec.groups(self.user_table[spec.name]))
        if len(cats) == 1:
            out = cats[0]
        else:
            labels = [pd.Series(c).astype("string") for c in cats]
            joined = labels[0]
            for lab in labels[1:]:
                joined = joined + INTERSECTION_SEP + lab
            order = [""]
            for c in cats:
                order = [
                    f"{o}{INTERSECTION_SEP}{v}" if o else str(v) for o in order for v in c.categories
                ]
            out = pd.Categorical(joined, categories=order, ordered=False)
        self._cache[key] = out
        return out

    def item_category_matrix(self, column: str) -> tuple[sp.csr_matrix, list[str]]:
        """Multi-hot item x category matrix for a multi-valued category column (e.g. genres)."""
        if column not in self.item_table.columns:
            raise DataError(
                f"item table has no column {column!r}; columns: {list(self.item_table.columns)}"
            )
        key = ("catmat", column)
        if key not in self._cache:
            vals = self.item_table[column]
            lists = [tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else
                     (() if v is None or (isinstance(v, float) and np.isnan(v)) else (str(v),))
                     for v in vals]
            cats = sorted({c for lst in lists for c in lst})
            pos = {c: j for j, c in enumerate(cats)}
            rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
            cols = np.fromiter((pos[c] for lst in lists for c in lst), dtype=np.int64, count=len(rows))
            m = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(lists), len(cats))
            )
            m.sum_duplicates()
            m.data[:] = 1.0
            self._cache[key] = (m, cats)
        return self._cache[key]

    def interactions_frame(self, *, original_ids: bool = True) -> pd.DataFrame:
        """Interactions as a DataFrame (original ids by default)."""
        cols: dict[str, Any] = {}
        if original_ids:
            cols["user_id"] = self.user_vocab.take(self.users).to_numpy()
            cols["item_id"] = self.item_vocab.take(self.items).to_numpy()
        else:
            cols["user_id"] = self.users
            cols["item_id"] = self.items
        if self.ratings is not None:
            cols["rating"] = self.ratings
        if self.timestamps is not None:
            cols["timestamp"] = self.timestamps
        return pd.DataFrame(cols)

    def users_frame(self) -> pd.DataFrame:
        """User table with the original ``user_id`` column first."""
        df = self.user_table.copy()
        df.insert(0, "user_id", self.user_vocab.to_numpy())
        return df

    def items_frame(self) -> pd.DataFrame:
        """Item table with the original ``item_id`` column first."""
        df = self.item_table.copy()
        df.insert(0, "item_id", self.item_vocab.to_numpy())
        return df

    def fingerprint(self) -> str:
        """SHA-256 over interactions and vocabularies (identifies the data in results)."""
        h = hashlib.sha256()
        for arr in (self.users, self.items, self.ratings, self.timestamps):
            if arr is not None:
                h.update(arr.tobytes())
        h.update(str(len(self.user_vocab)).encode())
        h.update(str(len(self.item_vocab)).encode())
        h.update("\x00".join(map(str, self.user_vocab[:1000])).encode())
        h.update("\x00".join(map(str, self.item_vocab[:1000])).encode())
        return h.hexdigest()[:16]


def _codes(vocab: pd.Index, values: pd.Series) -> np.ndarray:
    """Codes of ``values`` in ``vocab`` (-1 when absent); tolerant of str-vs-int id types."""
    codes = vocab.get_indexer(values)
    if (codes < 0).any() and vocab.dtype != values.dtype:
        codes = pd.Index(vocab.astype(str)).get_indexer(values.astype(str))
    return codes.astype(np.int64)

