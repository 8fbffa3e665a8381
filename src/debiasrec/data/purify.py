"""Purification: turn possibly dirty :class:`RawData` into a clean :class:`Dataset`, with a report.

Every removed row is counted under exactly one reason, in this order (a row failing several
checks is counted under the first):

============================  ================================================================
``missing_id``                user or item id missing/blank
``non_numeric_rating``        rating missing, not a number, or infinite
``rating_out_of_range``       rating outside ``rating_range`` (or beyond float32's range)
``unparseable_timestamp``     timestamp missing or neither a number nor a date string
``unknown_user``              user absent from the users table
``unknown_item``              item absent from the items table
``user_missing_sensitive``    user lacks a value of a sensitive attribute (policy ``drop``)
``duplicate``                 repeated (user, item) pair (policy ``keep_last``/``keep_first``)
``below_implicit_threshold``  rating below ``implicit_threshold``
``kcore``                     removed by the iterative user/item k-core filter
============================  ================================================================

so that ``input_rows - sum(removed.values()) == output_rows`` always holds. Users and items left
without interactions are dropped from their tables and counted in ``removed_users`` /
``removed_items``. Everything is vectorised (no per-row Python loops).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from debiasrec.data.dataset import Dataset, _codes
from debiasrec.data.loaders import RawData, attribute_names, infer_sensitive, load
from debiasrec.data.schema import SensitiveAttr
from debiasrec.errors import DataError

__all__ = [
    "PURIFY_STEPS",
    "REASONS",
    "UNKNOWN_GROUP",
    "PurifyConfig",
    "PurifyReport",
    "load_dataset",
    "purify",
    "require_rows",
]

#: Row-removal reasons, in the order they are checked.
REASONS: tuple[str, ...] = (
    "missing_id",
    "non_numeric_rating",
    "rating_out_of_range",
    "unparseable_timestamp",
    "unknown_user",
    "unknown_item",
    "user_missing_sensitive",
    "duplicate",
    "below_implicit_threshold",
    "kcore",
)

#: Steps :func:`purify` reports to its ``on_step`` callback, in order.
PURIFY_STEPS: tuple[str, ...] = (
    "check ids",
    "check ratings and timestamps",
    "match users and items",
    "sensitive attributes",
    "duplicates",
    "build dataset",
)

#: Group label given to users without a sensitive value under ``missing_sensitive="own_group"``.
UNKNOWN_GROUP = "unknown"

_EPOCH = pd.Timestamp(0, tz="UTC")


class PurifyConfig(BaseModel):
    """How to clean interactions.

    Attributes:
        rating_range: inclusive ``(low, high)``; ratings outside are removed. None: only
            non-numeric ratings are removed.
        duplicates: repeated (user, item) pairs: keep the last/first (by timestamp when present,
            else by row order) or raise.
        missing_sensitive: users without a sensitive value: drop them (and their rows), put them
            in their own group labelled ``"unknown"``, or raise.
        min_user_interactions: k-core threshold for users (0: off).
        min_item_interactions: k-core threshold for items (0: off). The user and item filters
            are applied together, repeatedly, until stable.
        implicit_threshold: keep only ratings ``>= threshold`` (implicit feedback).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rating_range: tuple[float, float] | None = None
    duplicates: Literal["keep_last", "keep_first", "error"] = "keep_last"
    missing_sensitive: Literal["drop", "own_group", "error"] = "drop"
    min_user_interactions: int = Field(0, ge=0)
    min_item_interactions: int = Field(0, ge=0)
    implicit_threshold: float | None = None

    @model_validator(mode="after")
    def _check_range(self) -> PurifyConfig:
        if self.rating_range is not None and self.rating_range[0] > self.rating_range[1]:
            raise ValueError(f"rating_range low > high: {self.rating_range}")
        return self


@dataclass
class PurifyReport:
    """What purification removed, by reason.

    Invariant: ``input_rows - sum(removed.values()) == output_rows``.

    Attributes:
        input_rows: interaction rows read.
        output_rows: interaction rows kept.
        removed: rows removed per reason (:data:`REASONS` order; zero counts for checks run).
        removed_users: users removed from the users table per reason.
        removed_items: items removed from the items table per reason.
        notes: other findings (e.g. users labelled ``"unknown"``, ignored columns).
        kept_rows: positions (0-based) of the input interaction rows that were kept, in the
            dataset's interaction order (None when not known); not part of :meth:`to_dict`.
    """

    input_rows: int
    output_rows: int
    removed: dict[str, int] = field(default_factory=dict)
    removed_users: dict[str, int] = field(default_factory=dict)
    removed_items: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    kept_rows: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: ``scope`` (interactions/users/items), ``reason``, ``count``."""
        rows = [("interactions", r, c) for r, c in self.removed.items()]
        rows += [("users", r, c) for r, c in self.removed_users.items()]
        rows += [("items", r, c) for r, c in self.removed_items.items()]
        return pd.DataFrame(rows, columns=["scope", "reason", "count"]).astype({"count": "int64"})

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict."""
        return {
            "input_rows": int(self.input_rows),
            "output_rows": int(self.output_rows),
            "removed": {k: int(v) for k, v in self.removed.items()},
            "removed_users": {k: int(v) for k, v in self.removed_users.items()},
            "removed_items": {k: int(v) for k, v in self.removed_items.items()},
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        reasons = (*self.removed, *self.removed_users, *self.removed_items)
        width = max([len(r) + 4 for r in reasons] + [20])
        lines = [f"{'interactions read':<{width}} {self.input_rows:>12,}"]
        for reason, count in self.removed.items():
            lines.append(f"  - {reason:<{width - 4}} {count:>12,}")
        lines.append(f"{'interactions kept':<{width}} {self.output_rows:>12,}")
        for label, d in (
            ("users removed", self.removed_users),
            ("items removed", self.removed_items),
        ):
            if d:
                lines.append(f"{label}:")
                lines += [f"  - {r:<{width - 4}} {c:>12,}" for r, c in d.items()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------------------- helpers


def _missing(s: pd.Series) -> np.ndarray:
    """Missing or blank (whitespace-only text)."""
    out = s.isna().to_numpy()
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        text = s.astype("string").str.strip()
        out = out | (text == "").fillna(False).to_numpy(dtype=bool)
    return out


def _show(v: Any) -> Any:
    """A numpy scalar as the plain Python value (for readable messages)."""
    return v.item() if isinstance(v, np.generic) else v


def _to_float(s: pd.Series) -> np.ndarray:
    """Numbers as float64 (NaN where missing or not numeric)."""
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _tidy_ids(s: pd.Series) -> np.ndarray:
    """Ids as read, except float ids that are all integral (a CSV column with a blank) -> int64."""
    v = s.to_numpy()
    if v.dtype.kind == "f" and len(v) and np.all(np.mod(v, 1) == 0):
        return v.astype(np.int64)
    return v


def _parse_timestamps(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps -> (int64 seconds since the epoch, ok mask).

    Accepts integers, floats (``881250949.0``, floored), numeric text, datetimes, and date strings
    (ISO 8601 fast path, then any format ``pandas.to_datetime`` understands; naive = UTC).
    """
    n = len(s)
    out = np.zeros(n, dtype=np.int64)
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        return s.to_numpy(np.int64), np.ones(n, dtype=bool)
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype):
        dt = pd.to_datetime(s, utc=True)
        ok = dt.notna().to_numpy()
        out[ok] = ((dt[ok] - _EPOCH) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
        return out, ok
    num = _to_float(s)
    ok = np.isfinite(num) & (np.abs(num) < 9.2e18)
    out[ok] = np.floor(num[ok]).astype(np.int64)
    rest = ~ok & ~_missing(s)
    if rest.any():
        text = s[rest].astype(str)
        with warnings.catch_warnings():
            # pandas warns when it cannot infer one date format; mixed formats are the point.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"pandas\.")
            dt = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
            again = dt.isna()
            if again.any():
                dt[again] = pd.to_datetime(text[again], errors="coerce", utc=True, format="mixed")
        good = dt.notna().to_numpy()
        pos = np.flatnonzero(rest)[good]
        out[pos] = ((dt[good] - _EPOCH) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
        ok[pos] = True
    return out, ok


def _select_sensitive(raw: RawData, names: Sequence[str] | None) -> list[SensitiveAttr]:
    declared = {a.name: a for a in raw.schema.sensitive}
    if names is None:
        attrs = list(raw.schema.sensitive)
    else:
        names = attribute_names(names)
        user_cols = [] if raw.users is None else [c for c in raw.users.columns if c != "user_id"]
        attrs = []
        for n in names:
            if n in declared:
                attrs.append(declared[n])
            elif n in user_cols:
                attrs.extend(infer_sensitive(raw.users, [n]))
            else:
                raise DataError(
                    f"unknown sensitive attribute {n!r}; declared: {list(declared)}, "
                    f"user columns: {user_cols or 'none (no users table)'}"
                )
    if attrs and raw.users is None:
        raise DataError(
            f"sensitive attributes {[a.name for a in attrs]} need a users table, and "
            f"{raw.name!r} has none; load one or pass sensitive=[]"
        )
    for a in attrs:
        assert raw.users is not None
        if a.name not in raw.users.columns:
            raise DataError(
                f"sensitive attribute {a.name!r} is declared but the users table has no such "
                f"column; columns: {list(raw.users.columns)}"
            )
    return attrs


def _own_group(
    attr: SensitiveAttr, values: pd.Series, miss: np.ndarray
) -> tuple[SensitiveAttr, pd.Series]:
    """Fill missing values with ``"unknown"`` and adapt the attribute so the label is a group."""
    if attr.bins is not None:  # bucket first: "unknown" cannot be bucketed numerically
        labels = [*(attr.group_labels() or []), UNKNOWN_GROUP]
        groups = attr.groups(values).astype(object)
        filled = pd.Series(groups, index=values.index, dtype=object)
        filled[miss] = UNKNOWN_GROUP
        return SensitiveAttr(name=attr.name, kind="ordinal", labels=tuple(labels)), filled
    filled = values.astype(object).copy()
    filled[miss] = UNKNOWN_GROUP
    kind = "categorical" if attr.kind == "binary" else attr.kind
    declared = None if attr.labels is None else (*attr.labels, UNKNOWN_GROUP)
    return SensitiveAttr(name=attr.name, kind=kind, labels=declared), filled


def _clean_table(
    df: pd.DataFrame, col: str, kind: str, removed: dict[str, int], notes: list[str]
) -> pd.DataFrame:
    """Drop table rows with a missing id or a repeated id (keeping the first), counting them."""
    miss = _missing(df[col])
    removed["missing_id"] = int(miss.sum())
    df = df.loc[~miss]
    dup = df[col].duplicated(keep="first").to_numpy()
    removed["duplicate_id"] = int(dup.sum())
    if dup.any():
        notes.append(
            f"{kind} table lists {int(dup.sum())} {kind} ids more than once "
            f"(e.g. {_show(df[col][dup].iloc[0])!r}); kept the first row of each"
        )
    return df.loc[~dup].reset_index(drop=True)


# ---------------------------------------------------------------------------- purify


def purify(
    raw: RawData,
    config: PurifyConfig | None = None,
    *,
    sensitive: Sequence[str] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> tuple[Dataset, PurifyReport]:
    """Clean raw frames and build a :class:`Dataset`, counting every removed row by reason.

    Args:
        raw: frames from a loader (:mod:`debiasrec.data.loaders`).
        config: cleaning policy (default :class:`PurifyConfig()`).
        sensitive: restrict the sensitive attributes to these names; a user column not declared
            in the schema is declared with an inferred kind. None: the schema's attributes.
        on_step: called with the name of each step (:data:`PURIFY_STEPS`) as it starts, for
            progress display.

    Returns:
        The dataset (ids as in the input; users/items without interactions dropped) and the report.

    Raises:
        DataError: missing id columns; unknown sensitive names; a sensitive attribute that no
            user has a value of (naming the users table); a rating/threshold policy without a
            rating column; ``duplicates="error"`` or ``missing_sensitive="error"`` violations.
    """
    cfg = config or PurifyConfig()
    step = on_step or (lambda _name: None)
    step(PURIFY_STEPS[0])
    if not isinstance(raw, RawData):
        raise DataError(f"purify() takes RawData (from a loader), got {type(raw).__name__}")
    inter = raw.interactions
    for col in ("user_id", "item_id"):
        if col not in inter.columns:
            raise DataError(
                f"interactions of {raw.name!r} have no column {col!r}; columns: {list(inter.columns)}"
            )
    n = len(inter)
    alive = np.ones(n, dtype=bool)
    removed: dict[str, int] = {}
    removed_users: dict[str, int] = {}
    removed_items: dict[str, int] = {}
    notes: list[str] = []

    def drop(reason: str, mask: np.ndarray) -> None:
        bad = mask & alive
        removed[reason] = removed.get(reason, 0) + int(bad.sum())
        alive[bad] = False

    # Ids are factorized once; table look-ups then run on the (few) distinct ids, not on rows.
    u_ser = inter["user_id"]
    i_ser = inter["item_id"]
    ucode, uniq_u = pd.factorize(u_ser)  # missing -> -1, which indexes the appended sentinel
    icode, uniq_i = pd.factorize(i_ser)
    if max(len(uniq_u), len(uniq_i)) < 2**31:  # half the memory for the rest of purify
        ucode, icode = ucode.astype(np.int32), icode.astype(np.int32)
    u_blank = np.append(_missing(pd.Series(uniq_u)), True)
    i_blank = np.append(_missing(pd.Series(uniq_i)), True)
    drop("missing_id", u_blank[ucode] | i_blank[icode])

    step(PURIFY_STEPS[1])
    rating: np.ndarray | None = None
    if "rating" in inter.columns:
        rating = _to_float(inter["rating"])
        drop("non_numeric_rating", ~np.isfinite(rating))
        # Ratings are stored as float32: a finite float64 beyond its range would become inf.
        with np.errstate(invalid="ignore"):
            drop("rating_out_of_range", np.abs(rating) > np.finfo(np.float32).max)
        if cfg.rating_range is not None:
            lo, hi = cfg.rating_range
            with np.errstate(invalid="ignore"):
                drop("rating_out_of_range", (rating < lo) | (rating > hi))
    elif cfg.rating_range is not None or cfg.implicit_threshold is not None:
        raise DataError(
            f"interactions of {raw.name!r} have no 'rating' column, so rating_range/"
            f"implicit_threshold cannot apply; columns: {list(inter.columns)}"
        )

    ts: np.ndarray | None = None
    if "timestamp" in inter.columns:
        ts, ts_ok = _parse_timestamps(inter["timestamp"])
        drop("unparseable_timestamp", ~ts_ok)

    step(PURIFY_STEPS[2])
    attrs = _select_sensitive(raw, sensitive)
    users = raw.users
    upos = np.full(len(uniq_u) + 1, -1, dtype=np.int64)  # distinct user -> users-table row
    if users is not None:
        if "user_id" not in users.columns:
            raise DataError(f"users table has no column 'user_id'; columns: {list(users.columns)}")
        users = _clean_table(users, "user_id", "user", removed_users, notes)
        upos[:-1] = _codes(pd.Index(users["user_id"]), pd.Series(uniq_u))
        drop("unknown_user", upos[ucode] < 0)
    items = raw.items
    if items is not None:
        if "item_id" not in items.columns:
            raise DataError(f"items table has no column 'item_id'; columns: {list(items.columns)}")
        items = _clean_table(items, "item_id", "item", removed_items, notes)
        ipos = np.append(_codes(pd.Index(items["item_id"]), pd.Series(uniq_i)), -1)
        drop("unknown_item", ipos[icode] < 0)

    # ---- sensitive attributes
    step(PURIFY_STEPS[3])
    if attrs:
        assert users is not None  # _select_sensitive guarantees it
        users = users.copy()
        lacking = np.zeros(len(users), dtype=bool)
        new_attrs: list[SensitiveAttr] = []
        table = raw.users_source or "the users table"
        for a in attrs:
            miss = _missing(users[a.name])
            if len(users) and miss.all():
                others = [c for c in users.columns if c not in ("user_id", a.name)]
                raise DataError(
                    f"sensitive attribute {a.name!r} is empty in {table}: none of its "
                    f"{len(users):,} users has a value; fill the column or choose another "
                    f"attribute (other user columns: {others or 'none'})"
                )
            if miss.any() and cfg.missing_sensitive == "error":
                ex = [_show(v) for v in users["user_id"][miss].iloc[:5].tolist()]
                raise DataError(
                    f"user {ex[0]!r} has no value for sensitive attribute {a.name!r} "
                    f"({int(miss.sum())} users in all, e.g. {ex}); fill the users table or set "
                    "missing_sensitive='drop' or 'own_group'"
                )
            if miss.any() and cfg.missing_sensitive == "own_group":
                a, filled = _own_group(a, users[a.name], miss)
                users[a.name] = filled
                notes.append(
                    f"{int(miss.sum())} users without {a.name!r} put in group {UNKNOWN_GROUP!r}"
                )
            lacking |= miss
            new_attrs.append(a)
        attrs = new_attrs
        if cfg.missing_sensitive == "drop":
            removed_users["missing_sensitive"] = int(lacking.sum())
            drop("user_missing_sensitive", np.append(lacking, False)[upos[ucode]])
            users = users.loc[~lacking].reset_index(drop=True)
        for a in attrs:  # fail now, with the attribute named, rather than in an evaluation
            present = a.groups(users[a.name]).dropna().unique()
            if len(present) == 1:
                warnings.warn(
                    f"sensitive attribute {a.name!r} has a single group ({present[0]!r}) among the "
                    f"{len(users):,} users kept from {table}; differences between groups will be "
                    "NaN",
                    stacklevel=2,
                )

    # ---- duplicates (on surviving rows), implicit threshold, k-core
    step(PURIFY_STEPS[4])
    idx = np.flatnonzero(alive)
    key = ucode[idx].astype(np.int64)  # pair key = user code * n_items + item code
    key *= max(len(uniq_i), 1)
    key += icode[idx]
    # One hash pass finds the rows whose pair repeats; only those are ordered (by pair, then
    # time when known, then row order) to pick the row kept: the first or the last.
    repeated = np.flatnonzero(pd.Series(key).duplicated(keep=False).to_numpy())
    dup = np.zeros(len(idx), dtype=bool)
    if len(repeated):
        sort_by = [repeated]
        if ts is not None and cfg.duplicates != "error":
            sort_by.append(ts[idx[repeated]])
        sort_by.append(key[repeated])
        order = repeated[np.lexsort(sort_by)]
        k_sorted = key[order]
        new_pair = np.r_[True, k_sorted[1:] != k_sorted[:-1]]
        kept = new_pair if cfg.duplicates == "keep_first" else np.r_[new_pair[1:], True]
        dup[order[~kept]] = True
    if cfg.duplicates == "error" and dup.any():
        k = int(repeated[0])
        at = idx[key == key[k]]
        raise DataError(
            f"interactions repeat the pair (user {_show(uniq_u[ucode[idx[k]]])!r}, "
            f"item {_show(uniq_i[icode[idx[k]]])!r}) "
            f"at rows {at[:5].tolist()} (0-based positions; {int(dup.sum())} repeated rows in "
            "all); deduplicate them or set duplicates='keep_last' or 'keep_first'"
        )
    mask = np.zeros(n, dtype=bool)
    mask[idx[dup]] = True
    del key, dup, repeated, idx
    drop("duplicate", mask)

    if cfg.implicit_threshold is not None:
        assert rating is not None
        with np.errstate(invalid="ignore"):
            drop("below_implicit_threshold", rating < cfg.implicit_threshold)

    if cfg.min_user_interactions > 0 or cfg.min_item_interactions > 0:
        idx = np.flatnonzero(alive)
        uc, ic = ucode[idx], icode[idx]
        live = np.ones(len(idx), dtype=bool)
        while True:  # iterative k-core: repeat until no user or item falls below its threshold
            cu = np.bincount(uc[live], minlength=len(uniq_u))
            ci = np.bincount(ic[live], minlength=len(uniq_i))
            bad = live & (
                (cu[uc] < cfg.min_user_interactions) | (ci[ic] < cfg.min_item_interactions)
            )
            if not bad.any():
                break
            live &= ~bad
        mask = np.zeros(n, dtype=bool)
        mask[idx[~live]] = True
        del idx, uc, ic, live
        drop("kcore", mask)

    # ---- assemble
    step(PURIFY_STEPS[5])
    rows = np.flatnonzero(alive)
    u_seen = np.bincount(ucode[rows], minlength=len(uniq_u)) > 0
    i_seen = np.bincount(icode[rows], minlength=len(uniq_i)) > 0
    del ucode, icode  # the biggest arrays left: free them before the dataset is built
    out = pd.DataFrame(
        {"user_id": _tidy_ids(u_ser.iloc[rows]), "item_id": _tidy_ids(i_ser.iloc[rows])}
    )
    if rating is not None:
        out["rating"] = rating[rows].astype(np.float32)
    if ts is not None:
        out["timestamp"] = ts[rows]
    del rating, ts, mask
    extra = [c for c in inter.columns if c not in ("user_id", "item_id", "rating", "timestamp")]
    if extra:
        notes.append(f"interaction columns {extra} are not kept in the Dataset")

    if users is not None:
        seen = pd.Series(uniq_u[u_seen])
        present = _codes(pd.Index(seen), users["user_id"]) >= 0
        removed_users["no_interactions"] = int((~present).sum())
        users = users.loc[present].reset_index(drop=True)
    if items is not None:
        seen = pd.Series(uniq_i[i_seen])
        present = _codes(pd.Index(seen), items["item_id"]) >= 0
        removed_items["no_interactions"] = int((~present).sum())
        items = items.loc[present].reset_index(drop=True)

    schema = raw.schema.with_sensitive(attrs)
    ds = Dataset.from_frames(out, users, items, schema=schema, name=raw.name)
    report = PurifyReport(
        input_rows=n,
        output_rows=len(rows),
        removed={r: removed[r] for r in REASONS if r in removed},
        removed_users=removed_users,
        removed_items=removed_items,
        notes=notes,
        kept_rows=rows,
    )
    return ds, report


def load_dataset(
    source: str,
    *,
    purify_config: PurifyConfig | None = None,
    sensitive: Sequence[str] | None = None,
    on_step: Callable[[str], None] | None = None,
    **load_kw: Any,
) -> tuple[Dataset, PurifyReport]:
    """Load (:func:`debiasrec.data.loaders.load`) and purify in one call.

    Args:
        source: a dataset name or path (see :func:`debiasrec.data.loaders.load`).
        purify_config: cleaning policy.
        sensitive: sensitive attributes (see :func:`purify`).
        on_step: progress callback of :func:`purify`.
        **load_kw: options of the loader (``users=``, ``items=``, ``delimiter=``, ...).

    Raises:
        DataError: what the loader and :func:`purify` raise, and no interaction left after
            purification (the message gives the rows removed per reason).

    Example:
        >>> ds, report = load_dataset("ml-100k", sensitive=["gender"])  # doctest: +SKIP
    """
    raw = load(source, **load_kw)
    ds, report = purify(raw, purify_config, sensitive=sensitive, on_step=on_step)
    require_rows(report, raw.source or source)
    return ds, report


def require_rows(report: PurifyReport, source: str) -> None:
    """Raise when purification left no interaction, giving the rows removed per reason.

    Raises:
        DataError: naming ``source`` and the removal counts.
    """
    if report.output_rows > 0:
        return
    counts = ", ".join(f"{r} {c:,}" for r, c in report.removed.items() if c) or "none"
    raise DataError(
        f"no interaction of {source} is left after purification ({report.input_rows:,} rows "
        f"read; removed: {counts}); check that the interactions' ids match the users/items "
        "tables and that each column holds what its name says"
    )
