"""Audit recommendations produced by any system: metrics and per-group breakdown.

Input: a recommendations table (``user_id,item_id,rank`` or ``user_id,item_id,score``), the held-out
test interactions, and a user table with sensitive attributes; optionally the items table and the
training interactions (for popularity-based metrics). Output: the standard result folder with
method name ``imported``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from debiasrec.data.dataset import Dataset
from debiasrec.data.loaders import RawData, load_table
from debiasrec.data.purify import PurifyConfig, purify
from debiasrec.data.split import Split
from debiasrec.errors import DataError
from debiasrec.experiment.evaluate import RESULT_COLUMNS, EvalConfig, evaluate_topk

if TYPE_CHECKING:
    from debiasrec.experiment.runner import ExperimentResult

METHOD = "imported"


class AuditConfig(BaseModel):
    """What was audited (written as the result folder's config.toml)."""

    model_config = ConfigDict(extra="forbid")

    recs: str
    test: str
    users: str
    attrs: list[str]
    items: str | None = None
    train: str | None = None
    k: int = Field(10, ge=1)
    n_boot: int = Field(1000, ge=0)
    seed: int = 0


def read_recs(path: str | Path) -> pd.DataFrame:
    """Read a recommendations file (CSV with any delimiter, or Parquet).

    Needs ``user_id``, ``item_id`` and ``rank`` (1 = best) or ``score`` (higher = better).
    """
    import csv

    p = Path(path)
    if not p.is_file():
        raise DataError(f"recommendations file {p} does not exist")
    try:
        if p.suffix == ".parquet":
            df = pd.read_parquet(p)
        else:
            with p.open(newline="", encoding="utf-8") as fh:
                sample = fh.read(4096)
            if not sample.strip():
                raise DataError(f"recommendations file {p} is empty")
            try:
                sep = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
            except csv.Error:
                sep = ","
            df = pd.read_csv(p, sep=sep)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{p}: cannot read recommendations ({exc})") from None
    missing = [c for c in ("user_id", "item_id") if c not in df.columns]
    if missing or ("rank" not in df.columns and "score" not in df.columns):
        raise DataError(
            f"{p}: recommendations need columns user_id, item_id and rank or score; "
            f"found {list(df.columns)}"
        )
    return df


def _lookup(vocab: pd.Index, values: pd.Series) -> np.ndarray:
    """Codes of ``values`` in ``vocab`` (-1 when absent); ``1`` matches ``"1"`` across id types."""
    codes = vocab.get_indexer(pd.Index(values))
    if (codes < 0).any() and vocab.dtype != values.dtype:
        codes = pd.Index(vocab.astype(str)).get_indexer(pd.Index(values.astype(str)))
    return codes.astype(np.int64)


def recs_to_topk(
    recs: pd.DataFrame, ds: Dataset, users: np.ndarray, k: int, *, source: str = "recs"
) -> np.ndarray:
    """``[len(users), k]`` item codes (``-1`` padding) from a long recommendations table.

    Rows are ordered per user by ``rank`` (ascending) when the table has one, else by ``score``
    (descending); ties go to the lower item code.

    Raises:
        DataError: a missing column, a user or item absent from ``ds``, a non-numeric rank/score
            (naming the file line, header = line 1), or an item listed twice for one user.
    """
    for col in ("user_id", "item_id"):
        if col not in recs.columns:
            raise DataError(f"{source}: missing column {col!r}; columns: {list(recs.columns)}")
    if "rank" not in recs.columns and "score" not in recs.columns:
        raise DataError(
            f"{source}: recommendations need a 'rank' or a 'score' column; "
            f"columns: {list(recs.columns)}"
        )
    recs = recs.reset_index(drop=True)
    u = _lookup(ds.user_vocab, recs["user_id"])
    i = _lookup(ds.item_vocab, recs["item_id"])
    if (u < 0).any():
        bad = recs["user_id"][u < 0].iloc[0]
        raise DataError(f"{source}: user {bad!r} is not in the users table")
    if (i < 0).any():
        bad = recs["item_id"][i < 0].iloc[0]
        raise DataError(f"{source}: item {bad!r} is not in the items table")
    if "rank" in recs.columns:
        key = pd.to_numeric(recs["rank"], errors="coerce").to_numpy(float, na_value=np.nan)
        what = "rank"
    else:
        key = -pd.to_numeric(recs["score"], errors="coerce").to_numpy(float, na_value=np.nan)
        what = "score"
    if np.isnan(key).any():
        row = int(np.flatnonzero(np.isnan(key))[0])
        raise DataError(
            f"{source}: line {row + 2} has a non-numeric {what} "
            f"({recs[what].iloc[row]!r}; header is line 1)"
        )
    dup = pd.Series(u * ds.n_items + i).duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(
            f"{source}: line {row + 2} repeats an item already listed for that user "
            "(header is line 1)"
        )
    order = np.lexsort((i, key, u))
    u_s, i_s = u[order], i[order]
    starts = np.searchsorted(u_s, np.arange(ds.n_users))
    pos = np.arange(len(u_s)) - starts[u_s]
    full = np.full((ds.n_users, k), -1, dtype=np.int64)
    keep = pos < k
    full[u_s[keep], pos[keep]] = i_s[keep]
    return full[users]


def _with_catalog(ds: Dataset, items: pd.DataFrame | None, recs: pd.DataFrame) -> Dataset:
    """``ds`` with every catalog item in its vocabulary, not only items with interactions.

    purify drops items without interactions, but recommended items usually include items that
    nobody interacted with in the test (or training) data. The catalog is the items table when
    one is given (a recommended item outside it is then an error), else every recommended item.
    Existing codes are kept; new items are appended.
    """
    if items is not None:
        extra = items.loc[items["item_id"].notna()].drop_duplicates("item_id", keep="first")
    else:
        extra = pd.DataFrame({"item_id": pd.unique(recs["item_id"].dropna())})
    extra = extra.loc[_lookup(ds.item_vocab, extra["item_id"]) < 0]
    if extra.empty:
        return ds
    table = pd.concat(
        [ds.item_table, extra.drop(columns="item_id").reindex(columns=ds.item_table.columns)],
        ignore_index=True,
    )
    return Dataset(
        np.asarray(ds.users),
        np.asarray(ds.items),
        user_vocab=ds.user_vocab,
        item_vocab=ds.item_vocab.append(pd.Index(extra["item_id"].to_numpy())),
        ratings=ds.ratings,
        timestamps=ds.timestamps,
        user_table=ds.user_table,
        item_table=table,
        schema=ds.schema,
        name=ds.name,
    )


def run_audit(cfg: AuditConfig, out: str | Path | None = None) -> ExperimentResult:
    """Evaluate imported recommendations; write the result folder to ``out`` if given.

    Recommendations for users of the users table without held-out interactions are ignored
    (they cannot be evaluated); a user absent from the users table is an error.

    Raises:
        DataError: unreadable inputs, unknown users/items/attributes, malformed ranks or scores.
    """
    from debiasrec.experiment.runner import ExperimentResult, write_result_folder

    recs = read_recs(cfg.recs)
    test_raw = load_table(cfg.test, cfg.users, cfg.items, sensitive=cfg.attrs)
    train_frame = None
    if cfg.train is not None:
        train_frame = load_table(cfg.train, sensitive=[]).interactions
    inter = test_raw.interactions.assign(_part=2)
    if train_frame is not None:
        inter = pd.concat([inter, train_frame.assign(_part=0)], ignore_index=True)
    raw = RawData(inter, test_raw.users, test_raw.items, test_raw.schema, "audit", str(cfg.test))
    ds, report = purify(raw, PurifyConfig(duplicates="keep_first"), sensitive=cfg.attrs)
    # purify keeps interaction order; recover the part of each kept row by original index
    part = _kept_parts(raw, ds)
    ds = _with_catalog(ds, test_raw.items, recs)

    # Users known to the users table but without any kept interaction cannot be evaluated.
    rec_users = _lookup(ds.user_vocab, recs["user_id"])
    ignored = 0
    if (rec_users < 0).any():
        assert test_raw.users is not None  # load_table was given a users file
        table_ids = pd.Index(test_raw.users["user_id"].dropna().drop_duplicates())
        outside = rec_users < 0
        unknown = outside & (_lookup(table_ids, recs["user_id"]) < 0)
        if unknown.any():
            bad = recs["user_id"][unknown].iloc[0]
            raise DataError(f"{cfg.recs}: user {bad!r} is not in the users table {cfg.users}")
        ignored = int(recs["user_id"][outside].nunique())
        warnings.warn(
            f"{ignored} users in {cfg.recs} have no held-out interactions; their "
            "recommendations are not evaluated",
            stacklevel=2,
        )
        recs = recs.loc[~outside]

    test = ds.subset(part == 2, name="audit:test")
    train = ds.subset(part == 0, name="audit:train")
    users = np.flatnonzero(test.user_counts() > 0)
    topk = recs_to_topk(recs, ds, users, cfg.k, source=str(cfg.recs))
    missing = int((topk[:, 0] < 0).sum())
    if missing:
        warnings.warn(
            f"{missing} test users have no recommendations; they count as misses", stacklevel=2
        )
    ecfg = EvalConfig(ks=[cfg.k], attrs=cfg.attrs, n_boot=cfg.n_boot)
    # Popularity (ARP, long tail, novelty, exposure tiers) comes from training data when given.
    ev = evaluate_topk(
        topk, users, train if train_frame is not None else test, test, config=ecfg, rng=cfg.seed
    )
    res = ev.results.copy()
    res.insert(0, "seed", cfg.seed)
    res.insert(0, "method", METHOD)
    res = res[RESULT_COLUMNS]
    split = Split(train=train, valid=ds.subset(part == 1, name="audit:valid"), test=test)
    result = ExperimentResult(cfg, ds, split, res, {(METHOD, cfg.seed): ev}, {}, {}, report)
    if out is not None:
        from debiasrec.models.base import Recs

        frame = Recs(users, topk, np.full(topk.shape, np.nan, np.float32)).to_frame(ds)
        frame.insert(0, "seed", cfg.seed)
        audit_summary = {
            "test_users": int(len(users)),
            "users_without_recs": missing,
            "recs_users_not_evaluated": ignored,
            "popularity_from": "train" if cfg.train else "test (no --train given)",
        }
        write_result_folder(
            result, Path(out), {METHOD: [frame]}, extra_summary={"audit": audit_summary}
        )
    return result


def _kept_parts(raw: RawData, ds: Dataset) -> np.ndarray:
    """Part label of each interaction kept by purify, matched on (user, item).

    A pair listed in several parts gets the part of its first row (test rows come first).
    """

    def key(users: pd.Series, items: pd.Series) -> pd.Index:
        return pd.Index(_id_text(users) + "\x00" + _id_text(items))

    inter = raw.interactions
    ok = inter["user_id"].notna().to_numpy() & inter["item_id"].notna().to_numpy()
    inter = inter.loc[ok]
    first = pd.Series(inter["_part"].to_numpy(), index=key(inter["user_id"], inter["item_id"]))
    first = first[~first.index.duplicated(keep="first")]
    frame = ds.interactions_frame()
    parts = first.reindex(key(frame["user_id"], frame["item_id"]))
    if parts.isna().any():  # pragma: no cover - purify only drops rows and tidies ids
        raise RuntimeError("audit: cannot match purified interactions to their input files")
    return parts.to_numpy(np.int8)


def _id_text(s: pd.Series) -> pd.Series:
    """Ids as text, integral floats (a CSV id column with a blank) written as integers."""
    v = s.reset_index(drop=True)
    if v.dtype.kind == "f" and len(v) and bool(np.all(np.mod(v.to_numpy(), 1) == 0)):
        v = v.astype(np.int64)
    return v.astype(str)
