"""Audit recommendations produced by any system: metrics, per-group breakdown, leakage.

Input: a recommendations table (``user_id,item_id,rank`` or ``user_id,item_id,score``), the held-out
test interactions, and a user table with sensitive attributes; optionally the items table and the
training interactions (for popularity-based metrics and miscalibration). Output: the standard
result folder with method name ``imported``, including the attribute leakage of the lists
(``leakage_auc@K``: how well a fresh probe recovers each attribute from the lists alone).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from debiasrec.data.dataset import Dataset
from debiasrec.data.loaders import attribute_names, interrupts_deferred, load_table
from debiasrec.data.purify import PURIFY_STEPS, PurifyConfig, purify, require_rows
from debiasrec.data.split import Split
from debiasrec.errors import ConfigError, DataError
from debiasrec.experiment.evaluate import RESULT_COLUMNS, EvalConfig, evaluate_topk
from debiasrec.limits import (
    SEED_MAX,
    bootstrap_bytes,
    check_list_length,
    check_memory,
    topk_bytes,
)
from debiasrec.metrics.leakage import EVAL_PROBE_FOLDS
from debiasrec.metrics.registry import default_metrics

if TYPE_CHECKING:
    from debiasrec.experiment.runner import ExperimentResult

METHOD = "imported"


#: Steps :func:`run_audit` reports to its ``on_step`` callback, in order.
AUDIT_STEPS: tuple[str, ...] = (
    "read recommendations",
    "read test, users, items",
    *PURIFY_STEPS,
    "match test and train rows",
    "check sizes",
    "build lists",
    "evaluate (accuracy, groups, leakage probe)",
    "write result folder",
)


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
    seed: int = Field(0, ge=0, le=SEED_MAX)

    @field_validator("attrs")
    @classmethod
    def _unique_attrs(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one sensitive attribute, e.g. ['gender']")
        try:
            return attribute_names(v, "attrs")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


def read_recs(path: str | Path) -> pd.DataFrame:
    """Read and check a recommendations file (CSV with any delimiter, or Parquet).

    Needs ``user_id``, ``item_id`` and ``rank`` (1 = best) or ``score`` (higher = better); see
    :func:`check_recs` for what is rejected.

    Raises:
        DataError: a missing, empty, header-only or unreadable file, or what :func:`check_recs`
            rejects, naming the file and the line.
    """
    import csv

    p = Path(path)
    if p.is_dir():
        raise DataError(f"recommendations path {p} is a folder; pass the file")
    if not p.is_file():
        raise DataError(f"recommendations file {p} does not exist")
    try:
        if p.suffix in (".parquet", ".pq"):
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
            with interrupts_deferred():  # see there: Ctrl-C mid-read can crash pandas
                df = pd.read_csv(p, sep=sep)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(
            f"recommendations file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8 "
            "CSV or Parquet"
        ) from None
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        raise DataError(f"{p}: cannot read recommendations ({exc})") from None
    return check_recs(df, str(p), lines=p.suffix not in (".parquet", ".pq"))


def _value(v: object) -> object:
    """A numpy scalar as the plain Python value (for readable messages)."""
    return v.item() if isinstance(v, np.generic) else v


def _where(row: int, lines: bool) -> str:
    return f"line {row + 2} (header is line 1)" if lines else f"data row {row + 1}"


def check_recs(recs: pd.DataFrame, source: str = "recs", *, lines: bool = False) -> pd.DataFrame:
    """Check a long recommendations table on its own (before matching ids to a dataset).

    Rejected: missing ``user_id``/``item_id``/``rank``-or-``score`` columns; no rows; ids that
    are lists, dicts or bytes; a rank that is missing, not a number, not a whole number, or
    below 1; a rank given twice for one user; a missing or non-numeric score; an item listed
    twice for one user. Ranks with gaps (1, 2, 5) are kept in rank order, with a warning.

    Args:
        recs: the table.
        source: its name in messages (a file path).
        lines: name rows as CSV file lines (header = line 1) instead of data rows.

    Returns:
        ``recs`` with a default index.

    Raises:
        DataError: naming ``source``, the line or row, and the value.
    """
    from debiasrec.data.loaders import _check_scalars

    missing = [c for c in ("user_id", "item_id") if c not in recs.columns]
    if missing or ("rank" not in recs.columns and "score" not in recs.columns):
        raise DataError(
            f"{source}: recommendations need columns user_id, item_id and rank or score; "
            f"found {list(recs.columns)}"
        )
    if recs.empty:
        raise DataError(
            f"{source}: the recommendations file has a header but no rows; "
            "write one row per recommended item (user_id, item_id, rank or score)"
        )
    recs = recs.reset_index(drop=True)
    _check_scalars(recs, ("user_id", "item_id", "rank", "score"), source)
    for col in ("user_id", "item_id"):
        blank = recs[col].isna().to_numpy()
        if blank.any():
            row = int(np.argmax(blank))
            raise DataError(f"{source}: {_where(row, lines)} has no {col}")
    what = "rank" if "rank" in recs.columns else "score"
    raw = recs[what]
    key = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    if np.isnan(key).any():
        row = int(np.flatnonzero(np.isnan(key))[0])
        kind = "a missing" if pd.isna(raw.iloc[row]) else "a non-numeric"
        raise DataError(
            f"{source}: {_where(row, lines)} has {kind} {what} ({_value(raw.iloc[row])!r}); every row "
            f"needs a {what}"
        )
    users = pd.factorize(recs["user_id"])[0]
    if what == "rank":
        bad = ~np.isfinite(key) | (key < 1) | (np.mod(key, 1) != 0)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"{source}: {_where(row, lines)} has rank {_value(raw.iloc[row])!r}; ranks are whole "
                f"numbers from 1 (best) up ({int(bad.sum()):,} rows are not); for real-valued "
                "scores name the column 'score' (higher = better)"
            )
        same = pd.DataFrame({"u": users, "r": key}).duplicated().to_numpy()
        if same.any():
            row = int(np.argmax(same))
            raise DataError(
                f"{source}: {_where(row, lines)} gives user {_value(recs['user_id'].iloc[row])!r} rank "
                f"{int(key[row])} a second time; each rank appears once per user"
            )
        size = np.bincount(users)
        top = np.zeros(len(size))
        np.maximum.at(top, users, key)
        gaps = int((top != size).sum())
        if gaps:
            warnings.warn(
                f"{source}: {gaps} users have ranks with gaps (e.g. 1, 2, 5); their items are "
                "taken in rank order",
                stacklevel=2,
            )
    items = pd.factorize(recs["item_id"])[0]
    twice = pd.DataFrame({"u": users, "i": items}).duplicated().to_numpy()
    if twice.any():
        row = int(np.argmax(twice))
        raise DataError(
            f"{source}: {_where(row, lines)} repeats item {_value(recs['item_id'].iloc[row])!r} already "
            f"listed for user {_value(recs['user_id'].iloc[row])!r}"
        )
    return recs


def _lookup(vocab: pd.Index, values: pd.Series) -> np.ndarray:
    """Codes of ``values`` in ``vocab`` (-1 when absent); ``1`` matches ``"1"`` across id types."""
    codes = vocab.get_indexer(pd.Index(values))
    if (codes < 0).any() and vocab.dtype != values.dtype:
        codes = pd.Index(vocab.astype(str)).get_indexer(pd.Index(values.astype(str)))
    return codes.astype(np.int64)


def recs_to_topk(
    recs: pd.DataFrame,
    ds: Dataset,
    users: np.ndarray,
    k: int,
    *,
    source: str = "recs",
    checked: bool = False,
) -> np.ndarray:
    """``[len(users), k]`` item codes (``-1`` padding) from a long recommendations table.

    Rows are ordered per user by ``rank`` (ascending) when the table has one, else by ``score``
    (descending); ties of score go to the lower item code.

    Args:
        recs: ``user_id, item_id, rank|score``.
        ds: the dataset whose vocabularies the ids are looked up in.
        users: user codes, one output row each.
        k: list length.
        source: name of the table in messages.
        checked: ``recs`` already passed :func:`check_recs` (skip it).

    Raises:
        DataError: what :func:`check_recs` rejects, and a user or item absent from ``ds``.
    """
    if not checked:
        recs = check_recs(recs, source)
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
        key = pd.to_numeric(recs["rank"]).to_numpy(np.float64)
    else:
        key = -pd.to_numeric(recs["score"]).to_numpy(np.float64)
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


def run_audit(
    cfg: AuditConfig,
    out: str | Path | None = None,
    *,
    on_step: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Evaluate imported recommendations; write the result folder to ``out`` if given.

    Besides the accuracy, beyond-accuracy and per-group metrics of ``debiasrec run``, the lists
    are probed for attribute leakage: a fresh logistic probe predicts each sensitive attribute
    from the top-``k`` lists (``leakage_auc@K``, ``leakage_bacc@K``, group = the attribute; the
    same probe as the runner's, :func:`debiasrec.metrics.leakage` registered as ``leakage``), and with
    ``train`` the lists' miscalibration against each user's training history.

    Recommendations for users of the users table without held-out interactions are ignored
    (they cannot be evaluated); a user absent from the users table is an error.

    Args:
        cfg: what to audit.
        out: result folder to write (created); None keeps everything in memory.
        on_step: called with the name of each step (:data:`AUDIT_STEPS`) as it starts.

    Raises:
        DataError: unreadable inputs, unknown users/items/attributes, malformed ranks or scores,
            an empty sensitive attribute (naming the users file), no recommendation for any
            test user.
        ConfigError: ``k`` longer than the catalogue, or ``k``/``n_boot`` needing more memory
            than is available.
    """
    from debiasrec.experiment.runner import ExperimentResult, write_result_folder

    step = on_step or (lambda _name: None)
    step(AUDIT_STEPS[0])
    recs = read_recs(cfg.recs)
    step(AUDIT_STEPS[1])
    raw = load_table(cfg.test, cfg.users, cfg.items, sensitive=cfg.attrs)
    # Only the pairs matter (relevance is binary, popularity a count): ratings or timestamps in
    # one file and not the other must not drop rows nor reorder duplicates by time.
    raw.interactions = raw.interactions[["user_id", "item_id"]]
    n_test = len(raw.interactions)
    if cfg.train is not None:  # test rows first, so a pair in both files counts as held out
        train_frame = load_table(cfg.train, sensitive=[]).interactions[["user_id", "item_id"]]
        raw.interactions = pd.concat([raw.interactions, train_frame], ignore_index=True)
        del train_frame
    raw.name, users_table, items_table = "audit", raw.users, raw.items
    ds, report = purify(
        raw, PurifyConfig(duplicates="keep_first"), sensitive=cfg.attrs, on_step=step
    )
    del raw
    require_rows(report, f"{cfg.test}" + (f" and {cfg.train}" if cfg.train else ""))
    step("match test and train rows")
    # purify keeps interaction order and says which input rows it kept: the first n_test rows
    # are the test file's.
    assert report.kept_rows is not None
    part = np.where(report.kept_rows < n_test, np.int8(2), np.int8(0))
    ds = _with_catalog(ds, items_table, recs)

    # Users known to the users table but without any kept interaction cannot be evaluated.
    rec_users = _lookup(ds.user_vocab, recs["user_id"])
    ignored = 0
    if (rec_users < 0).any():
        assert users_table is not None  # load_table was given a users file
        table_ids = pd.Index(users_table["user_id"].dropna().drop_duplicates())
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
    ecfg = EvalConfig(ks=[cfg.k], attrs=cfg.attrs, n_boot=cfg.n_boot)

    step("check sizes")
    catalogue = (
        f"the catalogue of {cfg.items}"
        if cfg.items
        else "the catalogue (items in the test, train and recommendations files)"
    )
    _check_sizes(cfg, ecfg, ds, test, catalogue)

    step("build lists")
    topk = recs_to_topk(recs, ds, users, cfg.k, source=str(cfg.recs), checked=True)
    missing = int((topk[:, 0] < 0).sum())
    if missing == len(users):
        ex = [str(v) for v in ds.user_vocab[users[:3]]]
        raise DataError(
            f"none of the {len(users):,} users with held-out interactions in {cfg.test} "
            f"(e.g. {', '.join(ex)}) has a recommendation in {cfg.recs}; check that both "
            "files use the same user ids"
        )
    if missing:
        warnings.warn(
            f"{missing} test users have no recommendations; they count as misses", stacklevel=2
        )

    step(AUDIT_STEPS[-2])
    # Popularity (ARP, long tail, novelty, exposure tiers) comes from training data when given.
    # The leakage probe (leakage_auc@K per attribute) and, with training data, miscalibration
    # against each user's history are registered metrics: computed here with the others.
    for attr in cfg.attrs:
        labels = test.user_groups(attr)
        sizes = pd.Series(np.asarray(labels.codes)[users]).value_counts()
        sizes = sizes[sizes.index >= 0]
        if (sizes >= LEAKAGE_FOLDS).sum() < 2:
            shown = {str(labels.categories[c]): int(n) for c, n in sizes.items()}
            warnings.warn(
                f"leakage of {attr!r} is not measured: the probe needs two groups with at "
                f"least {LEAKAGE_FOLDS} evaluated users each (evaluated users: {shown})",
                stacklevel=2,
            )
    ev = evaluate_topk(
        topk,
        users,
        train if cfg.train is not None else test,
        test,
        config=ecfg,
        rng=cfg.seed,
        with_history=cfg.train is not None,
        probe_seed=cfg.seed,
    )

    step("write result folder")
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


#: Folds of the leakage probe's cross-validation (as in the runner).
LEAKAGE_FOLDS = EVAL_PROBE_FOLDS


def _check_sizes(
    cfg: AuditConfig, ecfg: EvalConfig, ds: Dataset, test: Dataset, catalogue: str
) -> None:
    """``k`` within the catalogue; lists and bootstrap replicates within available memory."""
    check_list_length(cfg.k, ds.n_items, setting="k (--k)", catalogue=catalogue)
    check_memory(
        topk_bytes(ds.n_users, cfg.k),
        setting="k (--k)",
        what=f"top-{cfg.k:,} lists of {ds.n_users:,} users",
    )
    if cfg.n_boot:
        widest = max(len(test.user_groups(a).categories) for a in cfg.attrs)
        n_metrics = len(ecfg.metrics or default_metrics()) * len(ecfg.ks)
        check_memory(
            bootstrap_bytes(cfg.n_boot, widest, n_metrics),
            setting="n_boot (--n-boot)",
            what=f"{cfg.n_boot:,} bootstrap replicates of {n_metrics} metrics x {widest} groups",
        )
