"""Group fairness: per-group aggregation with bootstrap CIs, paired tests, item-group exposure.

:func:`by_group` is the one aggregation function of debiasrec (Fairlearn ``MetricFrame``-like:
overall, per-group, difference, ratio), always returning a tidy DataFrame. Confidence intervals
are percentile bootstrap intervals (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993)
with users resampled with replacement *within* each group (stratified bootstrap).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Literal, TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from debiasrec.errors import DataError
from debiasrec.limits import bootstrap_bytes, check_memory
from debiasrec.metrics._checks import (
    MAX_CHUNK_ELEMS,
    check_int,
    check_item_pop,
    check_vector,
    warn_degenerate,
)
from debiasrec.metrics.beyond import TIER_NAMES, exposure_counts, popularity_tiers
from debiasrec.metrics.registry import MetricInput, Row, register_metric, scalar_row
from debiasrec.random import np_rng

#: Columns of the DataFrame returned by :func:`by_group`, in order.
BY_GROUP_COLUMNS: tuple[str, ...] = ("metric", "group", "value", "ci_low", "ci_high", "n")

GroupsLike: TypeAlias = pd.Categorical | pd.Series | np.ndarray


# --------------------------------------------------------------------------------------------
# bootstrap core
# --------------------------------------------------------------------------------------------


def _weight_chunks(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield bootstrap count matrices W [b, n] (rows sum to n), ``sum b = n_boot``.

    ``W[r, j]`` is how often unit ``j`` is drawn in replicate ``r`` (n draws with replacement).
    Chunks keep ``b * n`` below :data:`MAX_CHUNK_ELEMS`.
    """
    step = max(1, MAX_CHUNK_ELEMS // max(n, 1))
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        # b * n <= MAX_CHUNK_ELEMS < 2**31, so int32 offsets cannot overflow.
        idx = rng.integers(0, n, size=(b, n), dtype=np.int32)
        idx += (np.arange(b, dtype=np.int32) * np.int32(n))[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def _boot_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the column means of ``x`` [n, m] (no NaN): returns [n_boot, m]."""
    n = x.shape[0]
    out = np.empty((n_boot, x.shape[1]), dtype=np.float64)
    pos = 0
    for w in _weight_chunks(n, n_boot, rng):
        out[pos : pos + w.shape[0]] = (w @ x) / n
        pos += w.shape[0]
    return out


def _percentile_ci(reps: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CI per column of ``reps`` [n_boot, ...], ignoring NaN replicates."""
    if reps.shape[0] == 0:
        nan = np.full(reps.shape[1:], np.nan)
        return nan, nan.copy()
    alpha = (1.0 - ci) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> NaN
        lo, hi = np.nanquantile(reps, [alpha, 1.0 - alpha], axis=0)
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def _summaries(means: np.ndarray) -> dict[str, np.ndarray]:
    """Gap, ratio and std of group means over the group axis (-2) of ``means`` [..., G, m].

    NaN group means (empty groups) are ignored; fewer than 2 groups or a max of 0 give NaN.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n_groups = np.sum(~np.isnan(means), axis=-2)
        hi = np.nanmax(means, axis=-2)
        lo = np.nanmin(means, axis=-2)
        std = np.nanstd(means, axis=-2)
        ratio = np.where(hi != 0, lo / np.where(hi != 0, hi, 1.0), np.nan)
    ok = n_groups >= 2
    return {
        "gap": np.where(ok, hi - lo, np.nan),
        "ratio": np.where(ok, ratio, np.nan),
        "std": np.where(ok, std, np.nan),
    }


# --------------------------------------------------------------------------------------------
# input normalisation
# --------------------------------------------------------------------------------------------


def _as_categorical(labels: object, name: str, n: int) -> pd.Categorical:
    if isinstance(labels, pd.Series):
        labels = labels.array if isinstance(labels.dtype, pd.CategoricalDtype) else labels.values
    if isinstance(labels, pd.Categorical):
        cat = labels
    else:
        arr = np.asarray(labels, dtype=object)
        if arr.ndim != 1:
            raise DataError(f"group labels {name!r} must be 1-D, got shape {arr.shape}")
        cat = pd.Categorical(arr)
    if len(cat) != n:
        raise DataError(
            f"group labels {name!r} have length {len(cat)} but the metric arrays have {n} users"
        )
    return cat


def _normalise_values(
    values: Mapping[str, np.ndarray] | pd.DataFrame | np.ndarray, metric: str | None
) -> dict[str, np.ndarray]:
    if isinstance(values, pd.DataFrame):
        values = {str(c): values[c].to_numpy() for c in values.columns}
    if isinstance(values, Mapping):
        if not values:
            raise DataError("values is empty: pass at least one per-user metric array")
        raw = {str(k): v for k, v in values.items()}
    else:
        if metric is None:
            raise DataError("values is a bare array: name it with metric='ndcg@10' (for example)")
        raw = {str(metric): values}
    out: dict[str, np.ndarray] = {}
    n: int | None = None
    for name, arr in raw.items():
        a = check_vector(arr, f"values[{name!r}]", n=n)
        n = a.shape[0]
        out[name] = a
    return out


def _normalise_groups(
    groups: Mapping[str, GroupsLike] | GroupsLike | None, n: int
) -> dict[str, pd.Categorical]:
    if groups is None:
        return {}
    if isinstance(groups, Mapping):
        return {str(k): _as_categorical(v, str(k), n) for k, v in groups.items()}
    return {"group": _as_categorical(groups, "group", n)}


# --------------------------------------------------------------------------------------------
# by_group
# --------------------------------------------------------------------------------------------


def by_group(
    values: Mapping[str, np.ndarray] | np.ndarray,
    groups: Mapping[str, GroupsLike] | GroupsLike | None,
    *,
    metric: str | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    rng: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """Aggregate per-user metrics overall and by group, with gaps, ratios and bootstrap CIs.

    For metric ``m`` and groups ``g`` of an attribute with group means ``mu_g`` (mean over the
    group's users with a finite value):

    - ``gap_m = max_g mu_g - min_g mu_g`` (Fairlearn ``MetricFrame.difference()``)
    - ``ratio_m = min_g mu_g / max_g mu_g`` (``MetricFrame.ratio()``; NaN with a warning if the
      max is 0)
    - ``std_m = sqrt(mean_g (mu_g - mean_g mu_g)^2)`` (population std of group means)

    computed over the groups with at least one evaluated user (NaN with a warning when fewer than
    2). CIs are percentile intervals of a stratified bootstrap: each replicate resamples the
    evaluated users with replacement within every group (the overall row resamples all evaluated
    users), and the group means, gap, ratio and std are recomputed from the same replicate.
    Metrics with the same pattern of NaN share the resampled users. Cost is about
    ``n_boot * n_users * (1 + n_attributes)`` random draws per distinct NaN pattern (a few seconds
    for 150k users and 1000 replicates); memory stays bounded (replicates are drawn in chunks).

    Args:
        values: ``{metric name: per-user array}`` (all the same length) or a bare array named by
            ``metric``. NaN marks a user not evaluated on that metric: excluded and not counted
            in ``n``.
        groups: ``{attribute: per-user labels}`` (``pd.Categorical``, Series or array; a missing
            label excludes the user from that attribute's groups but not from ``"all"``), a bare
            labels object (attribute name ``"group"``), or ``None`` for the overall rows only.
            Every category of a Categorical gets a row, even with no users (NaN and a warning).
        metric: name of a bare ``values`` array.
        n_boot: bootstrap replicates; 0 gives NaN CIs.
        ci: confidence level of the percentile intervals, in (0, 1).
        rng: seed or Generator; the same seed gives the same numbers. A Generator is advanced.

    Returns:
        Tidy DataFrame with columns ``metric, group, value, ci_low, ci_high, n``. For each metric:
        a row with group ``"all"``; a row per category with group ``"ATTR=LABEL"``; and for each
        attribute the rows ``gap_m``, ``ratio_m``, ``std_m`` with group ``ATTR`` (their ``n`` is the
        number of evaluated users with a label).

    Raises:
        DataError: arrays of different lengths, non-numeric values, unnamed bare array, or bad
            ``n_boot``/``ci``.
    """
    vals = _normalise_values(values, metric)
    names = list(vals)
    n = next(iter(vals.values())).shape[0]
    attrs = _normalise_groups(groups, n)
    n_boot = check_int(n_boot, "n_boot")
    ci = _check_ci(ci)
    gen = np_rng(rng)
    if n_boot:  # replicates are kept per group and metric: refuse what cannot fit in memory
        widest = max([len(c.categories) for c in attrs.values()] + [1])
        check_memory(
            bootstrap_bytes(n_boot, widest, len(names)),
            setting="n_boot (eval.n_boot)",
            what=f"{n_boot:,} bootstrap replicates of {len(names)} metrics x {widest} groups",
        )

    # result[(metric, group)] = (value, lo, hi, n)
    rows: dict[tuple[str, str], tuple[float, float, float, int]] = {}
    # Metrics with identical NaN masks share one bootstrap (same resampled users).
    patterns: dict[bytes, list[str]] = {}
    for name in names:
        patterns.setdefault(np.packbits(np.isnan(vals[name])).tobytes(), []).append(name)
    masks = {key: ~np.isnan(vals[members[0]]) for key, members in patterns.items()}

    for key, members in patterns.items():
        mask = masks[key]
        x = np.column_stack([vals[m] for m in members])
        _overall_rows(rows, members, x[mask], n_boot, ci, gen)
        for attr, cat in attrs.items():
            _attr_rows(rows, members, x, mask, attr, cat, n_boot, ci, gen)

    records: list[tuple[str, str, float, float, float, int]] = []
    for m in names:
        records.append((m, "all", *rows[(m, "all")]))
        for attr, cat in attrs.items():
            for label in cat.categories:
                g = f"{attr}={label}"
                records.append((m, g, *rows[(m, g)]))
        for attr in attrs:
            for s in ("gap", "ratio", "std"):
                records.append((f"{s}_{m}", attr, *rows[(f"{s}_{m}", attr)]))
    frame = pd.DataFrame.from_records(records, columns=list(BY_GROUP_COLUMNS))
    return frame.astype(
        {
            "metric": str,
            "group": str,
            "value": "float64",
            "ci_low": "float64",
            "ci_high": "float64",
            "n": "int64",
        }
    )


def _check_ci(ci: float) -> float:
    try:
        c = float(ci)
    except (TypeError, ValueError) as exc:
        raise DataError(f"ci must be a number in (0, 1), got {ci!r}") from exc
    if not 0.0 < c < 1.0:
        raise DataError(f"ci must be in (0, 1) (e.g. 0.95), got {c}")
    return c


def _overall_rows(
    rows: dict[tuple[str, str], tuple[float, float, float, int]],
    members: list[str],
    x: np.ndarray,
    n_boot: int,
    ci: float,
    gen: np.random.Generator,
) -> None:
    n_valid = x.shape[0]
    if n_valid == 0:
        warn_degenerate(
            f"no user has a value for {', '.join(members)}; overall value is NaN", stacklevel=4
        )
        for m in members:
            rows[(m, "all")] = (np.nan, np.nan, np.nan, 0)
        return
    point = x.mean(axis=0)
    reps = _boot_means(x, n_boot, gen)
    lo, hi = _percentile_ci(reps, ci)
    for j, m in enumerate(members):
        rows[(m, "all")] = (float(point[j]), float(lo[j]), float(hi[j]), n_valid)


def _attr_rows(
    rows: dict[tuple[str, str], tuple[float, float, float, int]],
    members: list[str],
    x: np.ndarray,
    mask: np.ndarray,
    attr: str,
    cat: pd.Categorical,
    n_boot: int,
    ci: float,
    gen: np.random.Generator,
) -> None:
    codes = np.asarray(cat.codes)
    n_groups = len(cat.categories)
    n_m = len(members)
    point = np.full((n_groups, n_m), np.nan)
    reps = np.full((n_boot, n_groups, n_m), np.nan)
    sizes = np.zeros(n_groups, dtype=np.int64)
    empty: list[str] = []
    for g in range(n_groups):
        sel = mask & (codes == g)
        sizes[g] = int(sel.sum())
        if sizes[g] == 0:
            empty.append(str(cat.categories[g]))
            continue
        xg = x[sel]
        point[g] = xg.mean(axis=0)
        reps[:, g, :] = _boot_means(xg, n_boot, gen)
    if empty:
        warn_degenerate(
            f"group(s) {empty} of attribute {attr!r} have no user evaluated on "
            f"{', '.join(members)}; their rows are NaN",
            stacklevel=4,
        )
    lo, hi = _percentile_ci(reps, ci)
    for g, label in enumerate(cat.categories):
        for j, m in enumerate(members):
            rows[(m, f"{attr}={label}")] = (
                float(point[g, j]),
                float(lo[g, j]),
                float(hi[g, j]),
                int(sizes[g]),
            )
    n_nonempty = int((sizes > 0).sum())
    if n_nonempty < 2:
        warn_degenerate(
            f"attribute {attr!r} has {n_nonempty} non-empty group(s) for "
            f"{', '.join(members)}; gap/ratio/std need 2 and are NaN",
            stacklevel=4,
        )
    summ = _summaries(point)
    if n_nonempty >= 2:
        zero_max = [m for j, m in enumerate(members) if np.nanmax(point[:, j]) == 0]
        if zero_max:
            warn_degenerate(
                f"every group mean of {zero_max} is 0 for attribute {attr!r}; ratio is NaN",
                stacklevel=4,
            )
    summ_reps = _summaries(reps)
    total = int(sizes.sum())
    for s in ("gap", "ratio", "std"):
        lo_s, hi_s = _percentile_ci(summ_reps[s], ci)
        for j, m in enumerate(members):
            rows[(f"{s}_{m}", attr)] = (float(summ[s][j]), float(lo_s[j]), float(hi_s[j]), total)


# --------------------------------------------------------------------------------------------
# paired comparison of two methods
# --------------------------------------------------------------------------------------------


def paired_test(
    a: np.ndarray,
    b: np.ndarray,
    *,
    groups: GroupsLike | None = None,
    n_boot: int = 2000,
    rng: int | np.random.Generator | None = 0,
    statistic: Literal["mean", "gap"] = "mean",
    ci: float = 0.95,
) -> dict[str, float | int | str]:
    """Compare two methods evaluated on the same users (per-user metric arrays, aligned).

    Users with NaN in ``a`` or ``b`` are dropped (pairs only).

    - ``statistic="mean"``: estimate ``mean(b - a)``; percentile CI from a paired bootstrap over
      users (stratified by ``groups`` when given, unlabelled users forming one more stratum);
      ``p_value`` from a two-sided paired sign-flip permutation test with ``n_boot`` random
      sign vectors, ``p = (1 + #{|mean(s * d)| >= |mean(d)|}) / (1 + n_boot)`` (Phipson & Smyth,
      2010); ``p_value_ttest`` from the paired t-test (``scipy.stats.ttest_rel``).
    - ``statistic="gap"``: estimate ``gap(b) - gap(a)`` with ``gap = max_g mean_g - min_g mean_g``
      (``groups`` required; unlabelled users dropped); CI from a stratified paired bootstrap (the
      same resampled users for both methods); ``p_value = min(1, 2 * min(P*(T* <= 0),
      P*(T* >= 0)))`` over the bootstrap replicates ``T*``; ``p_value_ttest`` is NaN.

    Args:
        a: per-user metric of the reference method.
        b: per-user metric of the compared method (same users, same order).
        groups: per-user group labels (required for ``"gap"``).
        n_boot: permutations and bootstrap replicates; 0 gives NaN CI and p-value.
        rng: seed or Generator (same seed, same numbers).
        statistic: ``"mean"`` or ``"gap"``.
        ci: confidence level.

    Returns:
        ``{"statistic", "estimate", "ci_low", "ci_high", "p_value", "p_value_ttest", "n"}`` where
        ``n`` is the number of users used.

    Raises:
        DataError: lengths differ, ``"gap"`` without groups, unknown statistic, bad n_boot/ci.
    """
    a_arr = check_vector(a, "a")
    b_arr = check_vector(b, "b", n=a_arr.shape[0])
    n_boot = check_int(n_boot, "n_boot")
    ci = _check_ci(ci)
    if statistic not in ("mean", "gap"):
        raise DataError(f"statistic must be 'mean' or 'gap', got {statistic!r}")
    gen = np_rng(rng)
    keep = ~(np.isnan(a_arr) | np.isnan(b_arr))
    codes: np.ndarray | None = None
    if groups is not None:
        cat = _as_categorical(groups, "groups", a_arr.shape[0])
        codes = np.asarray(cat.codes)
    elif statistic == "gap":
        raise DataError("statistic='gap' needs groups=... (per-user group labels)")
    if statistic == "gap":
        assert codes is not None  # checked above
        keep &= codes >= 0
    a_k, b_k = a_arr[keep], b_arr[keep]
    n = int(keep.sum())
    result: dict[str, float | int | str] = {
        "statistic": statistic,
        "estimate": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "p_value": np.nan,
        "p_value_ttest": np.nan,
        "n": n,
    }
    if n == 0:
        warn_degenerate("paired_test: no user has values in both a and b; result is NaN")
        return result
    strata: list[np.ndarray]
    if codes is None:
        strata = [np.arange(n)]
    else:
        kc = codes[keep]
        strata = [np.flatnonzero(kc == g) for g in np.unique(kc)]

    if statistic == "mean":
        d = b_k - a_k
        est = float(d.mean())
        result["estimate"] = est
        reps = np.zeros(n_boot)
        for idx in strata:
            reps += _boot_means(d[idx, None], n_boot, gen)[:, 0] * (idx.shape[0] / n)
        result["ci_low"], result["ci_high"] = (float(v) for v in _percentile_ci(reps, ci))
        if n_boot > 0:
            result["p_value"] = _sign_flip_p(d, n_boot, gen)
        result["p_value_ttest"] = _ttest_p(d)
        return result

    if len(strata) < 2:
        warn_degenerate("paired_test: 'gap' needs at least 2 non-empty groups; result is NaN")
        return result
    ab = np.column_stack([a_k, b_k])
    point = np.stack([ab[idx].mean(axis=0) for idx in strata])  # [G, 2]
    gaps = point.max(axis=0) - point.min(axis=0)
    result["estimate"] = float(gaps[1] - gaps[0])
    if n_boot > 0:
        reps = np.stack([_boot_means(ab[idx], n_boot, gen) for idx in strata], axis=1)
        rep_gaps = reps.max(axis=1) - reps.min(axis=1)  # [B, 2]
        diff = rep_gaps[:, 1] - rep_gaps[:, 0]
        lo, hi = _percentile_ci(diff, ci)
        result["ci_low"], result["ci_high"] = float(lo), float(hi)
        result["p_value"] = float(min(1.0, 2.0 * min(np.mean(diff <= 0), np.mean(diff >= 0))))
    return result


def _sign_flip_p(d: np.ndarray, n_perm: int, gen: np.random.Generator) -> float:
    """Two-sided paired sign-flip permutation p-value for ``mean(d) = 0``."""
    # With random bits s in {0, 1}: sum_i (2 s_i - 1) d_i = 2 (s @ d) - sum(d). Bits come from
    # rng.bytes (fast, deterministic for a given Generator state).
    n = d.shape[0]
    total = float(d.sum())
    observed = abs(total)
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))
    count = 0
    step = max(1, MAX_CHUNK_ELEMS // max(n, 1))
    for start in range(0, n_perm, step):
        b = min(step, n_perm - start)
        raw = np.frombuffer(gen.bytes((b * n + 7) // 8), dtype=np.uint8)
        bits = np.unpackbits(raw, count=b * n).reshape(b, n).astype(np.float64)
        count += int(np.sum(np.abs(2.0 * (bits @ d) - total) >= observed - tol))
    return (1.0 + count) / (1.0 + n_perm)


def _ttest_p(d: np.ndarray) -> float:
    """Paired t-test p-value on differences ``d``; degenerate zero-variance cases are 1 or 0."""
    if d.shape[0] < 2:
        return float("nan")
    if np.ptp(d) == 0:
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


# --------------------------------------------------------------------------------------------
# item side
# --------------------------------------------------------------------------------------------


def item_group_exposure(
    topk: np.ndarray,
    item_groups: np.ndarray | sp.spmatrix,
    group_names: list[str],
    train_item_counts: np.ndarray,
    k: int,
    position_weighted: bool = True,
) -> pd.DataFrame:
    """Exposure share of item groups in the recommendations vs their share of training data.

    With item exposure ``e_i = sum_u sum_{r<=k} 1[topk_ur = i] w_r`` (``w_r = 1 / log2(r + 1)``
    when ``position_weighted``, else 1; Singh & Joachims, KDD 2018), training counts ``c_i`` and
    membership weights ``a_ig``:
    ``exposure_share_g = sum_i a_ig e_i / sum_i e_i``,
    ``interaction_share_g = sum_i a_ig c_i / sum_i c_i`` and
    ``ratio_g = exposure_share_g / interaction_share_g`` (> 1: the group is over-exposed relative
    to its popularity in training). Denominators include ungrouped items, so shares sum to at most
    1.

    Args:
        topk: int array [n_users, K] of item codes, -1 = padding.
        item_groups: int array [n_items] with the group code of each item (-1 = no group), e.g.
            :func:`popularity_tiers`; or a sparse membership matrix [n_items, n_groups] for
            multi-valued groups such as genres, whose rows are normalised to sum to 1 (an item in
            2 genres counts half for each).
        group_names: one name per group code / membership column.
        train_item_counts: training interaction count per item code (defines ``n_items``).
        k: cut-off.
        position_weighted: use the DCG position discount for exposure.

    Returns:
        DataFrame with columns ``item_group, exposure_share, interaction_share, ratio``, one row
        per group in code order. Ratios with a zero interaction share are NaN (with a warning).

    Raises:
        DataError: lengths disagree with the catalogue, group codes out of range.
    """
    counts = check_item_pop(train_item_counts, "train_item_counts")
    n_items = counts.shape[0]
    names = [str(g) for g in group_names]
    n_groups = len(names)
    if sp.issparse(item_groups):
        member = sp.csr_matrix(item_groups, dtype=np.float64)
        if member.shape != (n_items, n_groups):
            raise DataError(
                f"item_groups membership matrix has shape {member.shape}, expected "
                f"({n_items}, {n_groups}) = (n_items, len(group_names))"
            )
        if member.nnz and member.data.min() < 0:
            raise DataError("item_groups membership weights must be non-negative")
        row_sum = np.asarray(member.sum(axis=1)).ravel()
        member = (
            sp.diags(np.where(row_sum > 0, 1.0 / np.where(row_sum > 0, row_sum, 1), 0)) @ member
        )
    else:
        codes = np.asarray(item_groups)
        if codes.ndim != 1 or codes.shape[0] != n_items or codes.dtype.kind not in "iu":
            raise DataError(
                f"item_groups must be an integer array of length n_items={n_items} "
                f"(or a sparse membership matrix), got dtype {codes.dtype} shape {codes.shape}"
            )
        if codes.size and (codes.min() < -1 or codes.max() >= n_groups):
            raise DataError(
                f"item_groups codes must be in [-1, {n_groups - 1}] to match group_names, "
                f"found range [{codes.min()}, {codes.max()}]"
            )
        grouped = codes >= 0
        member = sp.csr_matrix(
            (np.ones(int(grouped.sum())), (np.flatnonzero(grouped), codes[grouped])),
            shape=(n_items, n_groups),
        )
    expo = exposure_counts(topk, n_items, k, position_weighted=position_weighted)
    expo_total = expo.sum()
    count_total = counts.sum()
    if expo_total <= 0:
        warn_degenerate("no item is recommended in the top-k lists; exposure shares are NaN")
    if count_total <= 0:
        warn_degenerate("train_item_counts sums to 0; interaction shares are NaN")
    with np.errstate(invalid="ignore", divide="ignore"):
        e_share = (member.T @ expo) / expo_total if expo_total > 0 else np.full(n_groups, np.nan)
        c_share = (
            (member.T @ counts) / count_total if count_total > 0 else np.full(n_groups, np.nan)
        )
        zero = c_share == 0
        ratio = np.where(zero, np.nan, e_share / np.where(zero, 1.0, c_share))
    if zero.any():
        warn_degenerate(
            f"item group(s) {[names[g] for g in np.flatnonzero(zero)]} have no training "
            "interactions; their exposure ratio is NaN"
        )
    return pd.DataFrame(
        {
            "item_group": names,
            "exposure_share": np.asarray(e_share, dtype=np.float64),
            "interaction_share": np.asarray(c_share, dtype=np.float64),
            "ratio": np.asarray(ratio, dtype=np.float64),
        }
    )


# --------------------------------------------------------------------------------------------
# binary classifiers (e.g. an auxiliary sentiment head)
# --------------------------------------------------------------------------------------------

#: Columns of the DataFrame returned by :func:`classifier_by_group`, in order.
CLASSIFIER_COLUMNS: tuple[str, ...] = ("metric", "group", "value", "n")


def _binary(x: object, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = f"({n},)" if n is not None else "1-D"
        raise DataError(f"{name} must be a {want} array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise DataError(f"{name} must hold 0/1 (or bool) labels")
    return arr.astype(np.int64)


def _rates(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """Accuracy, TPR and FPR of predictions ``p`` for labels ``y`` (NaN when undefined)."""
    acc = float(np.mean(y == p)) if y.size else np.nan
    pos, neg = y == 1, y == 0
    tpr = float(np.mean(p[pos] == 1)) if pos.any() else np.nan
    fpr = float(np.mean(p[neg] == 1)) if neg.any() else np.nan
    return acc, tpr, fpr


def classifier_by_group(
    y_true: np.ndarray, y_pred: np.ndarray, groups: GroupsLike, *, attr: str = "group"
) -> pd.DataFrame:
    """Accuracy, true- and false-positive rates of a binary classifier, overall and per group.

    With ``TPR_g = P(yhat = 1 | y = 1, g)`` and ``FPR_g = P(yhat = 1 | y = 0, g)``:

    - ``eod = max_g TPR_g - min_g TPR_g`` -- equal-opportunity difference (Hardt, Price & Srebro,
      "Equality of Opportunity in Supervised Learning", NeurIPS 2016; Fairlearn's
      ``equal_opportunity_difference``);
    - ``gap_fpr = max_g FPR_g - min_g FPR_g`` (with ``eod``, the two parts of equalised odds);
    - ``gap_accuracy = max_g acc_g - min_g acc_g``.

    Gaps are over groups where the rate is defined (a group without positives has no TPR); fewer
    than two such groups give NaN with a :class:`DegenerateMetricWarning`.

    Args:
        y_true: 0/1 (or bool) labels.
        y_pred: 0/1 (or bool) predictions, aligned with ``y_true``.
        groups: per-example group labels (missing labels: in ``"all"`` only).
        attr: attribute name used in the ``group`` column (``"ATTR=LABEL"``).

    Returns:
        Tidy DataFrame ``metric, group, value, n``: rows ``accuracy``, ``tpr``, ``fpr`` for group
        ``"all"`` and each ``"ATTR=LABEL"`` (``n`` = examples, positives, negatives), then
        ``gap_accuracy``, ``eod`` and ``gap_fpr`` with group ``ATTR``.

    Raises:
        DataError: labels not binary, lengths differ.
    """
    y = _binary(y_true, "y_true")
    p = _binary(y_pred, "y_pred", y.shape[0])
    cat = _as_categorical(groups, attr, y.shape[0])
    codes = np.asarray(cat.codes)
    rows: list[tuple[str, str, float, int]] = []

    def add(label: str, sel: np.ndarray) -> tuple[float, float, float]:
        ys, ps = y[sel], p[sel]
        acc, tpr, fpr = _rates(ys, ps)
        rows.append(("accuracy", label, acc, int(sel.sum())))
        rows.append(("tpr", label, tpr, int((ys == 1).sum())))
        rows.append(("fpr", label, fpr, int((ys == 0).sum())))
        return acc, tpr, fpr

    add("all", np.ones(y.shape[0], dtype=bool))
    per = []
    for g, label in enumerate(cat.categories):
        sel = codes == g
        if not sel.any():
            warn_degenerate(f"group {attr}={label} has no examples; its rates are NaN")
        per.append(add(f"{attr}={label}", sel))
    stats_ = np.asarray(per, dtype=np.float64).reshape(-1, 3)
    n_labelled = int((codes >= 0).sum())
    for j, name in enumerate(("gap_accuracy", "eod", "gap_fpr")):
        col = stats_[:, j]
        ok = col[~np.isnan(col)]
        if ok.size < 2:
            warn_degenerate(f"{name}: fewer than two groups of {attr!r} have a defined rate; NaN")
            rows.append((name, attr, np.nan, n_labelled))
        else:
            rows.append((name, attr, float(ok.max() - ok.min()), n_labelled))
    frame = pd.DataFrame.from_records(rows, columns=list(CLASSIFIER_COLUMNS))
    return frame.astype({"metric": str, "group": str, "value": "float64", "n": "int64"})


# ---------------------------------------------------------------------------- registration
@register_metric(name="exposure", family="catalog", needs=("popularity",))
def _exposure_by_tier(inp: MetricInput, k: int) -> list[Row]:
    """Exposure share and ratio of the head, mid and tail popularity tiers (item_pop=TIER)."""
    assert inp.item_pop is not None
    exp = item_group_exposure(
        inp.topk, popularity_tiers(inp.item_pop), list(TIER_NAMES), inp.item_pop, k
    )
    out: list[Row] = []
    for row in exp.itertuples(index=False):
        g = f"item_pop={row.item_group}"
        out.append(scalar_row(f"exposure_share@{k}", row.exposure_share, g))
        out.append(scalar_row(f"exposure_ratio@{k}", row.ratio, g))
        if k == inp.ks[0]:
            out.append(scalar_row("interaction_share", row.interaction_share, g))
    return out


@register_metric(
    name="category_exposure", family="category_exposure", needs=("popularity", "item_features")
)
def _exposure_by_category(inp: MetricInput, k: int) -> list[Row]:
    """Exposure share and ratio of each item category, e.g. genre (item_genres=NAME)."""
    assert inp.item_pop is not None and inp.item_features is not None
    exp = item_group_exposure(
        inp.topk, inp.item_features, list(inp.feature_names or []), inp.item_pop, k
    )
    out: list[Row] = []
    for row in exp.itertuples(index=False):
        g = f"item_{inp.feature_column}={row.item_group}"
        out.append(scalar_row(f"exposure_share@{k}", row.exposure_share, g))
        out.append(scalar_row(f"exposure_ratio@{k}", row.ratio, g))
        out.append(scalar_row("interaction_share", row.interaction_share, g))
    return out
