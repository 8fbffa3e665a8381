"""Audit recommendations produced by any system: metrics and per-group breakdown.

Input: a recommendations table (``user_id,item_id,rank`` or ``user_id,item_id,score``), the held-out
test interactions, and a user table with sensitive attributes; optionally the items table and the
training interactions (for popularity-based metrics). Output: the standard result folder with
method name ``imported``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from debiasrec.data.dataset import Dataset
from debiasrec.data.loaders import RawData, load_table
from debiasrec.data.purify import PurifyConfig, purify
from debiasrec.data.split import Split
from debiasrec.errors import DataError
from debiasrec.experiment.evaluate import RESULT_COLUMNS, EvalConfig, evaluate_topk

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


def recs_to_topk(
    recs: pd.DataFrame, ds: Dataset, users: np.ndarray, k: int, *, source: str = "recs"
) -> np.ndarray:
    """``[len(users), k]`` item codes (``-1`` padding) from a long recommendations table."""
    for col in ("user_id", "item_id"):
        if col not in recs.columns:
            raise DataError(f"{source}: missing column {col!r}; columns: {list(recs.columns)}")
    u = ds.user_vocab.get_indexer(pd.Index(recs["user_id"]).astype(ds.user_vocab.dtype))
    i = ds.item_vocab.get_indexer(pd.Index(recs["item_id"]).astype(ds.item_vocab.dtype))
    if (u < 0).any():
        bad = recs["user_id"][u < 0].iloc[0]
        raise DataError(f"{source}: user {bad!r} is not in the users table")
    if (i < 0).any():
        bad = recs["item_id"][i < 0].iloc[0]
        raise DataError(f"{source}: item {bad!r} is not in the items table")
    if "rank" in recs.columns:
        key = pd.to_numeric(recs["rank"], errors="coerce").to_numpy(float)
        what = "rank"
    else:
        key = -pd.to_numeric(recs["score"], errors="coerce").to_numpy(float)
        what = "score"
    if np.isnan(key).any():
        row = int(np.flatnonzero(np.isnan(key))[0])
        raise DataError(f"{source}: row {row + 2} has a non-numeric {what}")
    dup = pd.Series(u.astype(np.int64) * ds.n_items + i).duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"{source}: row {row + 2} repeats an item already listed for that user")
    order = np.lexsort((i, key, u))
    u_s, i_s = u[order], i[order]
    starts = np.searchsorted(u_s, np.arange(ds.n_users))
    pos = np.arange(len(u_s)) - starts[u_s]
    full = np.full((ds.n_users, k), -1, dtype=np.int64)
    keep = pos < k
    full[u_s[keep], pos[keep]] = i_s[keep]
    return full[users]


def run_audit(cfg: AuditConfig, out: str | Path | None = None):
    """Evaluate imported recommendations; write the result folder to ``out`` if given."""
    from debiasrec.experiment.runner import ExperimentResult, write_result_folder

    recs = read_recs(cfg.recs)
    test_raw = load_table(cfg.test, cfg.users, cfg.items, sensitive=cfg.attrs)
    train_frame = None
    if cfg.train is not None:
        train_frame = load_table(cfg.train, sensitive=[]).interactions
    inter = test_raw.interactions.assign(_part=2)
    if train_frame is not None:
        inter = pd.concat([inter, train_frame.assign(_part=0)], ignore_index=True)
    items = test_raw.items
    if items is None:
        # The catalog is every item seen anywhere in the inputs.
        ids = pd.unique(pd.concat([inter["item_id"], recs["item_id"]], ignore_index=True))
        items = pd.DataFrame({"item_id": ids})
    raw = RawData(inter, test_raw.users, items, test_raw.schema, "audit", str(cfg.test))
    ds, report = purify(raw, PurifyConfig(duplicates="keep_first"), sensitive=cfg.attrs)
    part = np.zeros(ds.n_interactions, dtype=np.int8)
    # purify keeps interaction order; recover the part of each kept row by original index
    kept_parts = _kept_parts(raw, ds)
    part[:] = kept_parts
    test = ds.subset(part == 2, name="audit:test")
    train = ds.subset(part == 0, name="audit:train") if train_frame is not None else test
    users = np.flatnonzero(test.user_counts() > 0)
    topk = recs_to_topk(recs, ds, users, cfg.k, source=str(cfg.recs))
    missing = int((topk[:, 0] < 0).sum())
    if missing:
        warnings.warn(f"{missing} test users have no recommendations; they count as misses",
                      stacklevel=2)
    ecfg = EvalConfig(ks=[cfg.k], attrs=cfg.attrs, n_boot=cfg.n_boot)
    ev = evaluate_topk(topk, users, train, test, config=ecfg, rng=cfg.seed)
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
        write_result_folder(result, Path(out), {METHOD: [frame]})
        summary = json.loads((Path(out) / "summary.json").read_text())
        summary["audit"] = {
            "test_users": int(len(users)),
            "users_without_recs": missing,
            "popularity_from": "train" if cfg.train else "test (no --train given)",
        }
        (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2))
    return result


def _kept_parts(raw: RawData, ds: Dataset) -> np.ndarray:
    """Part label of each interaction kept by purify, matched on (user, item) and order."""
    inter = raw.interactions
    key_raw = inter["user_id"].astype(str) + "\x00" + inter["item_id"].astype(str)
    first = pd.Series(inter["_part"].to_numpy(), index=key_raw)
    first = first[~first.index.duplicated(keep="first")]
    frame = ds.interactions_frame()
    key_ds = frame["user_id"].astype(str) + "\x00" + frame["item_id"].astype(str)
    return first.reindex(key_ds).to_numpy(np.int8)
