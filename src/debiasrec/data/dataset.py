"""The read-only ``Dataset``: interactions with dense integer codes plus user and item tables."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from debiasrec.data.schema import INTERSECTION_SEP, Schema
from debiasrec.errors import DataError

__all__ = ["INTERSECTION_SEP", "Dataset", "take_groups"]


def _readonly(a: np.ndarray, dtype: type) -> np.ndarray:
    """A non-writable C-contiguous array of ``dtype`` that no caller can write through.

    A writable input is copied: freezing it in place would both surprise the caller (their
    array turns read-only) and leave the data open to change through the caller's reference or
    any other view of the same memory.
    """
    a = np.asarray(a)
    if a.flags.writeable or a.dtype != dtype or not a.flags.c_contiguous:
        a = np.array(a, dtype=dtype, order="C", copy=True)
    a.setflags(write=False)
    return a


def _column(frame: pd.DataFrame, col: str, dtype: type, what: str) -> np.ndarray:
    """``frame[col]`` as ``dtype``; a DataError (not a bare cast error) when it cannot be."""
    s = frame[col]
    if s.isna().any():
        raise DataError(
            f"interaction column {col!r} ({what}) has {int(s.isna().sum())} missing values "
            f"(first at row {int(np.flatnonzero(s.isna().to_numpy())[0])}); run purify() first"
        )
    try:
        return s.to_numpy(dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"interaction column {col!r} ({what}) is not numeric ({s.dtype}): {exc}; "
            "run purify() first"
        ) from exc


class Dataset:
    """Interactions (user, item, rating?, timestamp?) with user and item attribute tables.

    Ids are mapped once to dense codes ``0..n-1``; ``user_vocab``/``item_vocab`` map codes back to
    the original ids for output. Row ``c`` of ``user_table``/``item_table`` describes code ``c``.
    Instances are read-only: arrays are non-writable and transforms return new datasets.

    ``weights`` (optional, float32, finite and ``>= 0``) gives each interaction a training weight,
    set by pre-processing transforms (:mod:`debiasrec.debias.pre`): torch models scale each
    positive pair's loss by it (see :meth:`pair_weights`). ``None`` means every weight is 1.

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
        weights: np.ndarray | None = None,
    ) -> None:
        n = len(users)
        if len(items) != n:
            raise DataError(f"users and items have different lengths ({n} vs {len(items)})")
        for label, arr in (("ratings", ratings), ("timestamps", timestamps), ("weights", weights)):
            if arr is not None and len(arr) != n:
                raise DataError(f"{label} has length {len(arr)}, expected {n}")
        self.users = _readonly(users, np.int32)
        self.items = _readonly(items, np.int32)
        self.ratings = None if ratings is None else _readonly(ratings, np.float32)
        self.timestamps = None if timestamps is None else _readonly(timestamps, np.int64)
        self.weights = None if weights is None else _readonly(weights, np.float32)
        if self.weights is not None and n:
            bad = ~np.isfinite(self.weights) | (self.weights < 0)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"interaction weights must be finite and >= 0; row {row} has "
                    f"{float(self.weights[row])!r}"
                )
        self.user_vocab = pd.Index(user_vocab, name="user_id")
        self.item_vocab = pd.Index(item_vocab, name="item_id")
        for kind, vocab in (("user", self.user_vocab), ("item", self.item_vocab)):
            if not vocab.is_unique:
                dup = _show(vocab[vocab.duplicated()][0])
                raise DataError(f"{kind} vocabulary lists {kind} id {dup!r} more than once")
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
                raise DataError(
                    f"{kind} table has no column {col!r}; columns: {list(table.columns)}"
                )
            missing = table[col].isna()
            if missing.any():
                raise DataError(
                    f"{kind} table has {int(missing.sum())} rows without a {kind} id (column "
                    f"{col!r}); run purify() first"
                )
            dup = table[col].duplicated()
            if dup.any():
                raise DataError(
                    f"{kind} table lists {kind} id {_show(table[col][dup].iloc[0])!r} more than once"
                )
            return pd.Index(table[col]), table.drop(columns=[col])

        user_vocab, user_table = vocab_and_table(users, user_col, u_raw, "user")
        item_vocab, item_table = vocab_and_table(items, item_col, i_raw, "item")
        ucodes = _codes(user_vocab, u_raw)
        icodes = _codes(item_vocab, i_raw)
        if (ucodes < 0).any():
            raise DataError(
                f"interactions name user {_show(u_raw[ucodes < 0].iloc[0])!r} absent from the user "
                "table; run purify() (it drops and counts such rows)"
            )
        if (icodes < 0).any():
            raise DataError(
                f"interactions name item {_show(i_raw[icodes < 0].iloc[0])!r} absent from the item "
                "table; run purify() (it drops and counts such rows)"
            )
        ratings = (
            _column(interactions, rating_col, np.float32, "ratings")
            if rating_col and rating_col in interactions
            else None
        )
        timestamps = (
            _column(interactions, timestamp_col, np.int64, "timestamps")
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
        return self.replace(
            users=self.users[index],
            items=self.items[index],
            ratings=None if self.ratings is None else self.ratings[index],
            timestamps=None if self.timestamps is None else self.timestamps[index],
            weights=None if self.weights is None else self.weights[index],
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
        weights: np.ndarray | None = None,
    ) -> Dataset:
        """Same vocabularies and tables, other interactions (for transforms).

        ``weights`` are the new interactions' weights (``None``: unweighted).
        """
        return self.replace(
            users=users,
            items=items,
            ratings=ratings,
            timestamps=timestamps,
            weights=weights,
            name=name or self.name,
        )

    def with_weights(self, weights: np.ndarray | None, *, name: str | None = None) -> Dataset:
        """The same interactions with other per-interaction ``weights`` (``None`` removes them)."""
        return self.replace(weights=weights, name=name or self.name)

    def append_users(
        self,
        new_users: pd.DataFrame,
        users: np.ndarray,
        items: np.ndarray,
        *,
        ratings: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        name: str | None = None,
    ) -> Dataset:
        """Add users (e.g. synthetic ones) after the existing user codes, with their interactions.

        Existing users keep their codes, so splits built on this dataset's vocabulary (valid,
        test) stay valid for models trained on the result: the new users occupy codes
        ``n_users .. n_users + len(new_users) - 1``.

        Args:
            new_users: one row per new user: a ``user_id`` column (ids absent from the
                vocabulary) and the user-table columns (every sensitive attribute at least;
                other missing columns are filled with missing values).
            users: codes *relative to* ``new_users`` (``0`` is its first row) of the new
                interactions.
            items: item codes of the new interactions.
            ratings: their ratings; required (NaN allowed) when this dataset has ratings.
            timestamps: their timestamps; required when this dataset has timestamps.
            weights: their weights; when this dataset or the new rows are weighted, missing
                weights count as 1.
            name: name of the result.

        Raises:
            DataError: duplicate or existing ids, missing sensitive columns, codes out of range,
                or missing ratings/timestamps.
        """
        if "user_id" not in new_users.columns:
            raise DataError(f"new_users needs a 'user_id' column; got {list(new_users.columns)}")
        ids = pd.Index(new_users["user_id"])
        clash = ids.intersection(self.user_vocab)
        if len(clash):
            raise DataError(f"new user id {_show(clash[0])!r} is already in the user vocabulary")
        missing = [a for a in self.schema.sensitive_names if a not in new_users.columns]
        if missing:
            raise DataError(f"new_users lacks the sensitive attribute column(s) {missing}")
        users = np.asarray(users, dtype=np.int64)
        if len(users) and (users.min() < 0 or users.max() >= len(ids)):
            raise DataError(f"new interactions name user rows outside 0..{len(ids) - 1}")
        table = pd.concat(
            [self.user_table, new_users.drop(columns=["user_id"]).reset_index(drop=True)],
            ignore_index=True,
        )[list(self.user_table.columns)]
        for col in self.user_table.columns:  # keep categorical dtypes of the original table
            if isinstance(self.user_table[col].dtype, pd.CategoricalDtype):
                table[col] = table[col].astype(self.user_table[col].dtype)

        def joined(old: np.ndarray | None, new: np.ndarray | None, label: str) -> Any:
            if old is None:
                return None
            if new is None:
                raise DataError(f"dataset {self.name!r} has {label}; pass {label} for new rows")
            return np.concatenate([old, np.asarray(new, dtype=old.dtype)])

        if self.weights is None and weights is None:
            w = None
        else:
            old_w = (
                np.ones(self.n_interactions, np.float32) if self.weights is None else self.weights
            )
            new_w = np.ones(len(users), np.float32) if weights is None else weights
            w = np.concatenate([old_w, np.asarray(new_w, dtype=np.float32)])
        return Dataset(
            np.concatenate([self.users.astype(np.int64), users + self.n_users]),
            np.concatenate([self.items, np.asarray(items, dtype=np.int32)]),
            user_vocab=self.user_vocab.append(pd.Index(ids)),
            item_vocab=self.item_vocab,
            ratings=joined(self.ratings, ratings, "ratings"),
            timestamps=joined(self.timestamps, timestamps, "timestamps"),
            user_table=table,
            item_table=self.item_table,
            schema=self.schema,
            name=name or self.name,
            weights=w,
        )

    def replace(self, **changes: Any) -> Dataset:
        """A new dataset with the same fields except ``changes`` (constructor keywords, plus
        ``users`` and ``items``); validation runs again."""
        fields: dict[str, Any] = {
            "users": self.users,
            "items": self.items,
            "user_vocab": self.user_vocab,
            "item_vocab": self.item_vocab,
            "ratings": self.ratings,
            "timestamps": self.timestamps,
            "user_table": self.user_table,
            "item_table": self.item_table,
            "schema": self.schema,
            "name": self.name,
            "weights": self.weights,
        }
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise TypeError(f"Dataset.replace got unknown field(s) {unknown}")
        fields.update(changes)
        users, items = fields.pop("users"), fields.pop("items")
        return Dataset(users, items, **fields)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> None:
        """Write the dataset into ``folder``: ``dataset.json`` (schema, sizes, fingerprint) and
        Parquet tables (see :mod:`debiasrec.data.io`)."""
        from debiasrec.data.io import save_dataset

        save_dataset(self, folder)

    @classmethod
    def load(cls, folder: str | Path) -> Dataset:
        """Read a dataset written by :meth:`save` (same codes, tables, schema and weights).

        Raises:
            DataError: missing or corrupt files; the message names the file.
        """
        from debiasrec.data.io import load_saved_dataset

        return load_saved_dataset(folder)

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
                (data, (self.users, self.items)),
                shape=(self.n_users, self.n_items),
                dtype=np.float32,
            )
            m.sum_duplicates()
            if values == "ones":
                m.data[:] = 1.0
            self._cache[key] = m
        return self._cache[key]

    def pair_weights(self) -> np.ndarray:
        """Weight of each distinct (user, item) pair, aligned with ``csr().data`` (CSR order).

        A pair's weight is the mean of its interactions' weights, so duplicated rows do not
        change it and all-one weights equal the unweighted case. Without weights: all ones.
        Cached.
        """
        key = ("pair_weights",)
        if key not in self._cache:
            csr = self.csr()
            if self.weights is None:
                out = np.ones(csr.nnz, dtype=np.float32)
            else:
                keys = self.users.astype(np.int64) * self.n_items + self.items
                uniq, inv = np.unique(keys, return_inverse=True)
                sums = np.bincount(inv, weights=self.weights, minlength=len(uniq))
                cnt = np.bincount(inv, minlength=len(uniq))
                out = (sums / cnt).astype(np.float32)
                if len(out) != csr.nnz:  # pragma: no cover - CSR is canonical (sorted, summed)
                    raise DataError("internal: pair weights do not align with the CSR view")
            out.setflags(write=False)
            self._cache[key] = out
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
                    f"{o}{INTERSECTION_SEP}{v}" if o else str(v)
                    for o in order
                    for v in c.categories
                ]
            out = pd.Categorical(joined, categories=order, ordered=False)
        self._cache[key] = out
        return out

    def groups_of(
        self, attrs: Sequence[str], users: np.ndarray | None = None
    ) -> dict[str, pd.Categorical]:
        """``{attr: group labels of users}`` for attributes or intersections (``"a&b"``).

        ``users`` are user codes (default: every user); the categories (and their order) are
        the attribute's, so groups without any of these users still appear.

        Raises:
            DataError: an unknown attribute name (the message lists the declared ones).
        """
        out: dict[str, pd.Categorical] = {}
        for name in attrs:
            cat = self.user_groups(name)
            out[name] = (
                cat
                if users is None
                else take_groups(cat, np.asarray(users, dtype=np.int64))
            )
        return out

    def item_category_matrix(self, column: str) -> tuple[sp.csr_matrix, list[str]]:
        """Multi-hot item x category matrix for a multi-valued category column (e.g. genres)."""
        if column not in self.item_table.columns:
            raise DataError(
                f"item table has no column {column!r}; columns: {list(self.item_table.columns)}"
            )
        key = ("catmat", column)
        if key not in self._cache:
            lists = [_categories(v) for v in self.item_table[column]]
            cats = sorted({c for lst in lists for c in lst})
            pos = {c: j for j, c in enumerate(cats)}
            rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
            cols = np.fromiter(
                (pos[c] for lst in lists for c in lst), dtype=np.int64, count=len(rows)
            )
            m = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(lists), len(cats))
            )
            m.sum_duplicates()
            m.data[:] = 1.0
            self._cache[key] = (m, cats)
        m, cats = self._cache[key]
        return m, list(cats)

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
        if self.weights is not None:
            cols["weight"] = self.weights
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
        """SHA-256 (first 16 hex digits) identifying the data in results.

        Covers the interactions (with their ratings, timestamps and weights, or their absence), the whole
        user and item vocabularies, the schema and the user and item tables: two datasets that
        differ in any of these, e.g. in a user's gender, get different fingerprints. The name
        is not included. Cached.
        """
        if "fingerprint" not in self._cache:
            h = hashlib.sha256()
            for label, arr in (
                ("users", self.users),
                ("items", self.items),
                ("ratings", self.ratings),
                ("timestamps", self.timestamps),
            ):
                h.update(f"\x00{label}:{'-' if arr is None else len(arr)}\x00".encode())
                if arr is not None:
                    h.update(arr.tobytes())
            if self.weights is not None:  # absent weights leave unweighted fingerprints as before
                h.update(f"\x00weights:{len(self.weights)}\x00".encode())
                h.update(self.weights.tobytes())
            for label, vocab in (("user_vocab", self.user_vocab), ("item_vocab", self.item_vocab)):
                h.update(f"\x00{label}:{len(vocab)}\x00".encode())
                h.update(_hash_values(pd.Series(vocab.astype(str))))
            h.update(self.schema.model_dump_json().encode())
            for label, table in (("user_table", self.user_table), ("item_table", self.item_table)):
                h.update(f"\x00{label}:{list(map(str, table.columns))}\x00".encode())
                for col in table.columns:
                    h.update(_hash_values(table[col].astype(str)))
            self._cache["fingerprint"] = h.hexdigest()[:16]
        return self._cache["fingerprint"]


def take_groups(cat: pd.Categorical, rows: np.ndarray) -> pd.Categorical:
    """The labels of ``cat`` at positions ``rows`` (same categories and order; -1 = missing)."""
    return pd.Categorical.from_codes(
        np.asarray(cat.codes)[rows], categories=cat.categories, ordered=cat.ordered
    )


def _show(value: Any) -> Any:
    """A NumPy scalar as the plain Python value, so messages read ``99``, not ``np.int64(99)``."""
    return value.item() if isinstance(value, np.generic) else value


def _hash_values(values: pd.Series) -> bytes:
    """Bytes of a row-wise hash of ``values`` (order-sensitive)."""
    return pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes()


def _categories(value: Any) -> tuple[str, ...]:
    """Categories of one multi-valued cell: a list/tuple/array, one scalar, or missing."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(str(v) for v in value if not _is_missing(v))
    if _is_missing(value):
        return ()
    return (str(value),)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _codes(vocab: pd.Index, values: pd.Series) -> np.ndarray:
    """Codes of ``values`` in ``vocab`` (-1 when absent); tolerant of str-vs-int id types."""
    codes = vocab.get_indexer(values)
    if (codes < 0).any() and vocab.dtype != values.dtype:
        codes = pd.Index(vocab.astype(str)).get_indexer(values.astype(str))
    return codes.astype(np.int64)
