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
"""

from __future__ import annotations

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
    "TEST_COLUMNS",
    "fairness_metrics",
    "paired_tests",
    "pareto_frontier",
    "seed_aggregate",
]
