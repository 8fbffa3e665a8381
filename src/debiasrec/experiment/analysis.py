"""Across runs: mean and CI over seeds, paired tests against the baseline, Pareto frontiers.

- :func:`seed_aggregate`: per ``(method, metric, group)`` the mean over seeds with a Student-``t``
  interval ``mean +- t_{(1+ci)/2, n-1} sd / sqrt(n)`` (one seed: that seed's bootstrap CI).
- :func:`paired_tests`: for each method and seed, per-user paired tests against its base model on
  the same test users (:func:`debiasrec.metrics.fairness.paired_test`): the mean difference of
  the first accuracy metric (sign-flip permutation p-value) and the difference of its group gap
  per attribute (stratified paired bootstrap). ``significant`` is ``p < alpha``.
- :func:`pareto_frontier`: for accuracy (higher is better) against each fairness metric (lower
  is better: group gaps, leakage AUC, miscalibration, exposure Gini), the methods not dominated
  by any other (Pareto-optimal), from the seed means.
- :func:`levelling_down`: for each method and attribute, who paid for a smaller gap: the change
  of the base model's worse-off and better-off groups (paired over each group's users) and a
  verdict -- ``levelling up`` (the worse-off group gained, the better-off did not lose),
  ``levelling up and down`` (both), ``levelling down`` (the gap shrank because the better-off
  group lost while the worse-off did not gain: the outcome the fairness literature warns
  against, e.g. Mittelstadt, Wachter & Russell, "The Unfairness of Fair Machine Learning:
  Levelling down and strict egalitarianism by default", 2023), ``gap reduced, no significant
  group change`` or ``gap not reduced``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from debiasrec.data.dataset import take_groups
from debiasrec.experiment.evaluate import Evaluation

if TYPE_CHECKING:
    from debiasrec.data.split import Split
    from debiasrec.experiment.config import ExperimentConfig
from debiasrec.metrics.fairness import paired_test

AGGREGATE_COLUMNS = ["method", "metric", "group", "mean", "ci_low", "ci_high", "sd", "n_seeds"]
TEST_COLUMNS = [
    "method",
    "baseline",
    "seed",
    "metric",
    "statistic",
    "group",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "significant",
    "n",
]
LEVELLING_COLUMNS = [
    "method",
    "baseline",
    "attr",
    "metric",
    "n_seeds",
    "worse_group",
    "better_group",
    "base_worse",
    "base_better",
    "base_gap",
    "method_gap",
    "gap_change",
    "gap_ci_low",
    "gap_ci_high",
    "gap_p_value",
    "worse_change",
    "worse_ci_low",
    "worse_ci_high",
    "worse_p_value",
    "worse_status",
    "n_worse",
    "better_change",
    "better_ci_low",
    "better_ci_high",
    "better_p_value",
    "better_status",
    "n_better",
    "verdict",
]
FRONTIER_COLUMNS = [
    "fairness_metric",
    "group",
    "method",
    "accuracy",
    "fairness",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "on_frontier",
]


def seed_aggregate(results: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """Mean and CI over seeds of every ``(method, metric, group)`` of the tidy results."""
    if results.empty:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS)
    g = results.groupby(["method", "metric", "group"], sort=False)
    out = g["value"].agg(["mean", "std", "count"]).reset_index()
    first = g[["ci_low", "ci_high"]].first().reset_index()
    out = out.merge(first, on=["method", "metric", "group"])
    n = out["count"].to_numpy()
    sd = out["std"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf((1 + ci) / 2, np.maximum(n - 1, 1)) * sd / np.sqrt(n)
    multi = n >= 2
    out["ci_low"] = np.where(multi, out["mean"] - half, out["ci_low"])
    out["ci_high"] = np.where(multi, out["mean"] + half, out["ci_high"])
    out = out.rename(columns={"std": "sd", "count": "n_seeds"})
    return out[AGGREGATE_COLUMNS]


def paired_tests(
    evaluations: Mapping[tuple[str, int], Evaluation],
    baselines: Mapping[str, str],
    groups: Mapping[str, pd.Categorical],
    metric: str,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Paired tests of each method against its baseline on the same users, per seed.

    Args:
        evaluations: ``{(method, seed): Evaluation}``; rows of ``per_user`` are test users.
        baselines: ``{method: baseline method}`` (methods without a baseline are skipped).
        groups: ``{attribute: labels of every user code}`` for the gap tests.
        metric: per-user metric column (e.g. ``"ndcg@10"``).
        n_boot: permutations / bootstrap replicates.
        alpha: significance level of ``significant``.
    """
    rows = []
    for (method, seed), ev in evaluations.items():
        base = baselines.get(method)
        if base is None or (base, seed) not in evaluations:
            continue
        ref = evaluations[(base, seed)]
        if metric not in ev.per_user or metric not in ref.per_user:
            continue
        a = ref.per_user.set_index("user")[metric]
        b = ev.per_user.set_index("user")[metric].reindex(a.index)
        users = a.index.to_numpy()
        tests = [("mean", "all", None)] + [
            ("gap", attr, take_groups(cat, users)) for attr, cat in groups.items()
        ]
        for statistic, group, labels in tests:
            res = paired_test(
                a.to_numpy(),
                b.to_numpy(),
                groups=labels,
                n_boot=n_boot,
                rng=seed,
                statistic=statistic,
            )
            p = float(res["p_value"])
            rows.append(
                {
                    "method": method,
                    "baseline": base,
                    "seed": seed,
                    "metric": metric,
                    "statistic": statistic,
                    "group": group,
                    "estimate": float(res["estimate"]),
                    "ci_low": float(res["ci_low"]),
                    "ci_high": float(res["ci_high"]),
                    "p_value": p,
                    "significant": bool(np.isfinite(p) and p < alpha),
                    "n": int(res["n"]),
                }
            )
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def change_status(ci_low: float, ci_high: float) -> str:
    """``"gained"`` when the CI of a change lies above 0, ``"lost"`` when below, ``"stayed"``
    when it contains 0, ``"unknown"`` without a CI (NaN bounds)."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "unknown"
    if ci_low > 0:
        return "gained"
    if ci_high < 0:
        return "lost"
    return "stayed"


def levelling_verdict(gap_change: float, worse_status: str, better_status: str) -> str:
    """Who paid for a gap change (see the module docstring for the labels)."""
    if not np.isfinite(gap_change):
        return "n/a"
    if gap_change >= 0:
        return "gap not reduced"
    if worse_status == "gained":
        return "levelling up and down" if better_status == "lost" else "levelling up"
    if better_status == "lost":
        return "levelling down"
    return "gap reduced, no significant group change"


def _seed_mean_per_user(evs: list[Evaluation], metric: str) -> pd.Series:
    """Per-user ``metric`` averaged over the evaluations (users present in every one)."""
    cols = [ev.per_user.set_index("user")[metric] for ev in evs]
    return pd.concat(cols, axis=1, join="inner").mean(axis=1, skipna=False)


def levelling_down(
    evaluations: Mapping[tuple[str, int], Evaluation],
    baselines: Mapping[str, str],
    groups: Mapping[str, pd.Categorical],
    metric: str,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    rng: int = 0,
) -> pd.DataFrame:
    """For each method and attribute: the change of the base model's worse-off and better-off
    groups, paired over each group's users, and who paid for the gap change.

    Per-user values are averaged over the seeds both the method and its base model ran (users
    evaluated in every seed). The worse-off (better-off) group is the group with the lowest
    (highest) mean ``metric`` of the *base model*. Each group's change is the mean over its
    users of ``method - base`` with a paired bootstrap CI and a sign-flip p-value
    (:func:`debiasrec.metrics.fairness.paired_test`, ``statistic="mean"``);
    :func:`change_status` classifies it and :func:`levelling_verdict` names the outcome. The
    gap is ``max - min`` of the group means over the same groups; ``gap_ci_*`` and
    ``gap_p_value`` are the stratified paired bootstrap of its change (``statistic="gap"``).

    Args:
        evaluations: ``{(method, seed): Evaluation}``.
        baselines: ``{method: base method}``; methods without a base are skipped.
        groups: ``{attribute: labels of every user code}``.
        metric: per-user metric column, e.g. ``"ndcg@10"``.
        n_boot: bootstrap replicates and permutations (0: no CI, status ``"unknown"``).
        alpha: significance level of the CIs (``1 - alpha`` intervals).
        rng: seed of the bootstrap.
    """
    rows = []
    for method, base in baselines.items():
        seeds = sorted(s for (m, s) in evaluations if m == method and (base, s) in evaluations)
        evs_m = [evaluations[(method, s)] for s in seeds]
        evs_b = [evaluations[(base, s)] for s in seeds]
        if not seeds or any(metric not in ev.per_user for ev in [*evs_m, *evs_b]):
            continue
        a_all = _seed_mean_per_user(evs_b, metric)
        b_all = _seed_mean_per_user(evs_m, metric).reindex(a_all.index)
        ok = np.isfinite(a_all.to_numpy()) & np.isfinite(b_all.to_numpy())
        a_all, b_all = a_all[ok], b_all[ok]
        users = a_all.index.to_numpy()
        for attr, cat in groups.items():
            codes = np.asarray(take_groups(cat, users).codes)
            labels = [str(c) for c in cat.categories]
            present = [g for g in range(len(labels)) if (codes == g).any()]
            if len(present) < 2:
                continue
            a, b = a_all.to_numpy(), b_all.to_numpy()
            base_means = np.array([a[codes == g].mean() for g in present])
            meth_means = np.array([b[codes == g].mean() for g in present])
            worse, better = present[int(np.argmin(base_means))], present[int(np.argmax(base_means))]
            base_gap = float(base_means.max() - base_means.min())
            meth_gap = float(meth_means.max() - meth_means.min())
            row: dict[str, Any] = {
                "method": method,
                "baseline": base,
                "attr": attr,
                "metric": metric,
                "n_seeds": len(seeds),
                "worse_group": labels[worse],
                "better_group": labels[better],
                "base_worse": float(base_means.min()),
                "base_better": float(base_means.max()),
                "base_gap": base_gap,
                "method_gap": meth_gap,
                "gap_change": meth_gap - base_gap,
            }
            gt = paired_test(
                a, b, groups=take_groups(cat, users), n_boot=n_boot, rng=rng, statistic="gap",
                ci=1 - alpha,
            )  # fmt: skip
            row["gap_ci_low"], row["gap_ci_high"] = float(gt["ci_low"]), float(gt["ci_high"])
            row["gap_p_value"] = float(gt["p_value"])
            for side, g in (("worse", worse), ("better", better)):
                sel = codes == g
                with warnings.catch_warnings():
                    # the t-test p-value (unused here) of identical values
                    warnings.filterwarnings("ignore", message="Precision loss occurred")
                    res = paired_test(
                        a[sel], b[sel], n_boot=n_boot, rng=rng, statistic="mean", ci=1 - alpha
                    )
                lo, hi = float(res["ci_low"]), float(res["ci_high"])
                row[f"{side}_change"] = float(res["estimate"])
                row[f"{side}_ci_low"] = lo
                row[f"{side}_ci_high"] = hi
                row[f"{side}_p_value"] = float(res["p_value"])
                row[f"{side}_status"] = change_status(lo, hi)
                row[f"n_{side}"] = int(res["n"])
            row["verdict"] = levelling_verdict(
                row["gap_change"], row["worse_status"], row["better_status"]
            )
            rows.append(row)
    return pd.DataFrame(rows, columns=LEVELLING_COLUMNS)


def fairness_metrics(aggregate: pd.DataFrame, k: int) -> list[tuple[str, str]]:
    """``(metric, group)`` pairs of the fairness axes present (lower is better)."""
    out: list[tuple[str, str]] = []
    have = set(zip(aggregate["metric"], aggregate["group"], strict=True))
    for m, g in sorted(have):
        if (m == f"gap_ndcg@{k}" and "&" not in g) or m == f"leakage_auc@{k}":
            out.append((m, g))
    for m in (f"miscalibration@{k}", f"gini@{k}"):
        if (m, "all") in have:
            out.append((m, "all"))
    return out


def pareto_frontier(aggregate: pd.DataFrame, k: int) -> pd.DataFrame:
    """Accuracy (``ndcg@k``, higher better) vs each fairness metric (lower better) per method."""
    acc = aggregate[(aggregate.metric == f"ndcg@{k}") & (aggregate.group == "all")]
    acc = acc.set_index("method")
    rows = []
    for metric, group in fairness_metrics(aggregate, k):
        f = aggregate[(aggregate.metric == metric) & (aggregate.group == group)]
        f = f.set_index("method")["mean"]
        pts = pd.DataFrame({"accuracy": acc["mean"], "fairness": f}).dropna()
        if pts.empty:
            continue
        a = pts["accuracy"].to_numpy()
        v = pts["fairness"].to_numpy()
        dominated = (
            (a[None, :] >= a[:, None])
            & (v[None, :] <= v[:, None])
            & ((a[None, :] > a[:, None]) | (v[None, :] < v[:, None]))
        ).any(axis=1)
        for i, method in enumerate(pts.index):
            rows.append(
                {
                    "fairness_metric": metric,
                    "group": group,
                    "method": method,
                    "accuracy": float(a[i]),
                    "fairness": float(v[i]),
                    "accuracy_ci_low": float(acc.loc[method, "ci_low"]),
                    "accuracy_ci_high": float(acc.loc[method, "ci_high"]),
                    "on_frontier": bool(not dominated[i]),
                }
            )
    return pd.DataFrame(rows, columns=FRONTIER_COLUMNS)


def analyse(
    cfg: ExperimentConfig,
    split: Split,
    results: pd.DataFrame,
    evals: Mapping[tuple[str, int], Evaluation],
    baselines: Mapping[str, str],
    explain_models: Mapping[str, Any],
) -> dict[str, pd.DataFrame]:
    """Seed aggregates, paired tests, Pareto frontiers and the transparency tables of a run."""
    from debiasrec.experiment.explain import calibration_sample, explanations, sample_users

    k = cfg.eval.ks[0]
    agg = seed_aggregate(results, cfg.eval.ci)
    attrs = list(split.test.schema.sensitive_names if cfg.eval.attrs is None else cfg.eval.attrs)
    groups = split.test.groups_of(attrs)
    tests = paired_tests(evals, baselines, groups, f"ndcg@{k}", n_boot=cfg.eval.n_boot)
    out = {"aggregate": agg, "tests": tests, "frontier": pareto_frontier(agg, k)}
    out["levelling"] = levelling_down(evals, baselines, groups, f"ndcg@{k}", n_boot=cfg.eval.n_boot)
    first = cfg.seeds[0]
    lists = {m: (ev.users, ev.topk) for (m, s), ev in evals.items() if s == first}
    if cfg.explain_users and lists:
        users = sample_users(split.test, cfg.explain_users, cfg.split.seed)
        out["explanations"] = explanations(
            lists, baselines, explain_models, split.train, users, k=k
        )
        out["calibration"] = calibration_sample(lists, split.train, users, k=k)
    return out


__all__ = [
    "AGGREGATE_COLUMNS",
    "analyse",
    "FRONTIER_COLUMNS",
    "LEVELLING_COLUMNS",
    "TEST_COLUMNS",
    "change_status",
    "fairness_metrics",
    "levelling_down",
    "levelling_verdict",
    "paired_tests",
    "pareto_frontier",
    "seed_aggregate",
]
