"""Describe a dataset: size, ratings, sensitive groups, popularity concentration, purification."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from debiasrec.data.dataset import Dataset
from debiasrec.data.purify import PurifyReport

__all__ = ["describe", "format_description", "gini"]


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0: all equal, ->1: all mass on one).

    ``G = sum_i (2i - n - 1) x_(i) / (n * sum_i x_i)`` over the counts sorted ascending,
    ``i = 1..n`` (e.g. Fleder & Hosanagar 2009 for recommendation diversity). NaN when empty
    or all zero.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    total = x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / (n * total))


def _top_share(counts: np.ndarray, frac: float) -> float:
    """Share of all interactions on the ``ceil(frac * n_items)`` most popular items."""
    total = counts.sum()
    if len(counts) == 0 or total == 0:
        return float("nan")
    k = max(1, math.ceil(frac * len(counts)))
    top = np.partition(counts, len(counts) - k)[len(counts) - k :]
    return float(top.sum() / total)


def _stats(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {k: float("nan") for k in ("min", "median", "mean", "max")}
    return {
        "min": float(np.min(x)),
        "median": float(np.median(x)),
        "mean": float(np.mean(x)),
        "max": float(np.max(x)),
    }


def describe(ds: Dataset, report: PurifyReport | None = None) -> dict[str, Any]:
    """Summary statistics of a dataset, as a JSON-serialisable dict.

    Keys: ``name``, ``n_users``, ``n_items``, ``n_interactions``, ``density``; ``ratings``
    (min/max/mean/std/median and the count of each distinct value when there are at most 20,
    or None); ``interactions_per_user`` / ``interactions_per_item`` (min/median/mean/max);
    ``sensitive``: per attribute its kind and, per group, ``n_users``, ``user_share``,
    ``n_interactions``, ``interaction_share``, ``mean_per_user`` (NaN with a warning for an empty
    group); ``popularity``: ``gini`` of item interaction counts and ``top10_share`` /
    ``top20_share`` (share of interactions on the top 10 % / 20 % of items); ``purification``:
    ``report.to_dict()`` or None.
    """
    n_u, n_i, n = ds.n_users, ds.n_items, ds.n_interactions
    ucount = ds.user_counts()
    icount = ds.item_counts()
    out: dict[str, Any] = {
        "name": ds.name,
        "n_users": int(n_u),
        "n_items": int(n_i),
        "n_interactions": int(n),
        "density": float(n / (n_u * n_i)) if n_u and n_i else float("nan"),
    }
    if ds.ratings is not None and n:
        r = ds.ratings.astype(np.float64)
        values, counts = np.unique(r, return_counts=True)
        out["ratings"] = {
            "min": float(r.min()),
            "max": float(r.max()),
            "mean": float(r.mean()),
            "std": float(r.std()),
            "median": float(np.median(r)),
            "distinct": int(len(values)),
            "counts": (
                {f"{v:g}": int(c) for v, c in zip(values, counts, strict=True)}
                if len(values) <= 20
                else None
            ),
        }
    else:
        out["ratings"] = None
    if ds.timestamps is not None and n:
        out["timestamps"] = {"min": int(ds.timestamps.min()), "max": int(ds.timestamps.max())}
    else:
        out["timestamps"] = None
    out["interactions_per_user"] = _stats(ucount)
    out["interactions_per_item"] = _stats(icount)

    sens: dict[str, Any] = {}
    for attr in ds.schema.sensitive:
        cat = ds.user_groups(attr.name)
        codes = np.asarray(cat.codes)
        labels = [str(c) for c in cat.categories]
        if (codes < 0).any():
            labels.append("<missing>")
            codes = np.where(codes < 0, len(labels) - 1, codes)
        g_users = np.bincount(codes, minlength=len(labels))
        g_inter = np.bincount(codes, weights=ucount, minlength=len(labels))
        groups = []
        for j, lab in enumerate(labels):
            if g_users[j] == 0:
                warnings.warn(
                    f"describe: group {attr.name}={lab} has no users; its mean is NaN",
                    stacklevel=2,
                )
            groups.append(
                {
                    "group": lab,
                    "n_users": int(g_users[j]),
                    "user_share": float(g_users[j] / n_u) if n_u else float("nan"),
                    "n_interactions": int(g_inter[j]),
                    "interaction_share": float(g_inter[j] / n) if n else float("nan"),
                    "mean_per_user": (
                        float(g_inter[j] / g_users[j]) if g_users[j] else float("nan")
                    ),
                }
            )
        sens[attr.name] = {"kind": attr.kind, "groups": groups}
    out["sensitive"] = sens
    out["popularity"] = {
        "gini": gini(icount),
        "top10_share": _top_share(icount, 0.10),
        "top20_share": _top_share(icount, 0.20),
    }
    out["purification"] = None if report is None else report.to_dict()
    return out


def _f(x: float, spec: str = ".3f") -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_description(d: dict[str, Any]) -> str:
    """Human-readable text of :func:`describe`'s dict (for the CLI)."""
    lines = [
        f"dataset {d['name']}",
        f"  users          {d['n_users']:>12,}",
        f"  items          {d['n_items']:>12,}",
        f"  interactions   {d['n_interactions']:>12,}",
        f"  density        {_f(d['density'], '.5f'):>12}",
    ]
    r = d.get("ratings")
    if r:
        lines.append(
            f"  ratings        min {_f(r['min'], 'g')}  max {_f(r['max'], 'g')}  "
            f"mean {_f(r['mean'])}  std {_f(r['std'])}  median {_f(r['median'], 'g')}"
        )
        if r.get("counts"):
            lines.append(
                "                 " + "  ".join(f"{k}: {v:,}" for k, v in r["counts"].items())
            )
    for label, key in (
        ("per user", "interactions_per_user"),
        ("per item", "interactions_per_item"),
    ):
        s = d[key]
        lines.append(
            f"  {label:<14} min {_f(s['min'], 'g')}  median {_f(s['median'], 'g')}  "
            f"mean {_f(s['mean'], '.1f')}  max {_f(s['max'], 'g')}"
        )
    p = d["popularity"]
    lines.append(
        f"  popularity     gini {_f(p['gini'])}  top 10% items {_f(100 * p['top10_share'], '.1f')}%"
        f"  top 20% items {_f(100 * p['top20_share'], '.1f')}% of interactions"
    )
    for name, info in d["sensitive"].items():
        lines.append("")
        lines.append(f"sensitive attribute {name} ({info['kind']})")
        width = max([len(g["group"]) for g in info["groups"]] + [5])
        lines.append(
            f"  {'group':<{width}} {'users':>8} {'share':>7} {'interactions':>13} {'share':>7}"
            f" {'per user':>9}"
        )
        for g in info["groups"]:
            lines.append(
                f"  {g['group']:<{width}} {g['n_users']:>8,} {_f(100 * g['user_share'], '.1f'):>6}%"
                f" {g['n_interactions']:>13,} {_f(100 * g['interaction_share'], '.1f'):>6}%"
                f" {_f(g['mean_per_user'], '.1f'):>9}"
            )
    pur = d.get("purification")
    if pur:
        lines.append("")
        lines.append("purification")
        lines.append(f"  rows read      {pur['input_rows']:>12,}")
        for reason, count in pur["removed"].items():
            lines.append(f"  - {reason:<26} {count:>10,}")
        lines.append(f"  rows kept      {pur['output_rows']:>12,}")
        for label, key in (("users removed", "removed_users"), ("items removed", "removed_items")):
            if pur.get(key):
                lines.append(f"  {label}: " + ", ".join(f"{k} {v:,}" for k, v in pur[key].items()))
        lines += [f"  note: {n}" for n in pur["notes"]]
    return "\n".join(lines)
