"""Tables, Pareto plots and the RESULTS.md section of ``benchmarks/fairness_frontier.py``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from debiasrec.metrics.leakage import t_interval
from debiasrec.report import svg

OUT = Path(__file__).parent / "_out" / "fairness"
DOCS = Path(__file__).parent.parent / "docs" / "fairness"
SECTION = "Fairness without levelling down on ML-100K (BPR, iALS, TextTwoTower; split 2020)"
K = 10
TARGET_AUC = 0.53
BASES = {"bpr": "BPR", "ials": "iALS"}

#: What each method label means (the method part of the result label).
DESCRIBE = {
    "post+gf-g": "group-fair re-ranking, gender (UGF-style; self-calibrated: valid gap <= 0.3x)",
    "post+gf-age": "group-fair re-ranking, age (self-calibrated: valid gap <= 0.3x)",
    "post+steck": "Steck calibrated re-ranking, greedy pick order (valid C_KL <= 0.5x)",
    "post+steck-sorted": "Steck's set listed in score order (valid C_KL <= 0.5x)",
    "post+cal-dcg": "calibrated_dcg: expected-DCG objective, swap local search (valid C_KL <= 0.5x)",
    "post+cal-dcg-greedy": "calibrated_dcg, greedy only (valid C_KL <= 0.5x)",
    "post+cal-dcg-200": "calibrated_dcg, 200 candidates (valid C_KL <= 0.5x)",
    "act": "activity reweighting beta=0.5 (no attribute)",
    "reweight": "group-balanced reweighting, gender",
    "dro": "Group DRO, gender (eta=0.01)",
    "act-dro+none": "activity reweighting + Group DRO gender",
    "act-dro": "activity + Group DRO gender, then group-fair re-ranking gender",
    "gv": "validation-driven group reweighting, gender (eta=1)",
    "worst": "worst-group model selection, gender",
    "dro-act": "Group DRO over activity groups (no attribute)",
    "dro-age+none": "Group DRO, age",
    "dro-age": "Group DRO age, then group-fair re-ranking age",
    "gv-age": "validation-driven group reweighting, age",
    "reweight+none": "group-balanced reweighting, gender",
    "act-reweight+none": "activity + group-balanced reweighting, gender",
    "act-reweight": "activity + gender reweighting, then group-fair re-ranking gender",
    "reweight-age+none": "group-balanced reweighting, age",
    "reweight-age": "age reweighting, then group-fair re-ranking age",
}


def _suffix(label: str, base: str) -> str:
    return label[len(base) + 1 :] if label.startswith(base + "-") else label


def _describe(label: str, base: str) -> str:
    s = _suffix(label, base)
    m = re.match(r"^(.*)@([0-9.]+)$", s)
    if m:
        # A strength-grid point is not self-calibrated: drop the validation target from the text.
        desc = re.sub(
            r"\s*\([^)]*(self-calibrated|valid )[^)]*\)", "", DESCRIBE.get(m.group(1), m.group(1))
        )
        return f"{desc}, fixed strength {m.group(2)} (grid point)"
    return DESCRIBE.get(s, s)


def _ci(mean: float, lo: float, hi: float, fmt: str = ".4f") -> str:
    if not np.isfinite(mean):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def _agg(agg: pd.DataFrame, method: str, metric: str, group: str) -> tuple[float, float, float]:
    row = agg[(agg.method == method) & (agg.metric == metric) & (agg.group == group)]
    if row.empty:
        return (np.nan, np.nan, np.nan)
    r = row.iloc[0]
    return float(r["mean"]), float(r["ci_low"]), float(r["ci_high"])


def _change(r: Any, side: str) -> str:
    ch, lo, hi = (float(getattr(r, f"{side}_{c}")) for c in ("change", "ci_low", "ci_high"))
    return f"{ch:+.4f} [{lo:+.4f}, {hi:+.4f}] {getattr(r, f'{side}_status')}"


def _methods_of(agg: pd.DataFrame, base: str) -> list[str]:
    return [m for m in dict.fromkeys(agg.method) if m == base or m.startswith(base + "-")]


def _on_frontier(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Lower x and higher y are better; a point is on the frontier if no other dominates it."""
    dom = (
        (y[None, :] >= y[:, None])
        & (x[None, :] <= x[:, None])
        & ((y[None, :] > y[:, None]) | (x[None, :] < x[:, None]))
    ).any(axis=1)
    return ~dom


def _pareto_svg(points: list[tuple[str, float, float, bool]], title: str, xlabel: str) -> str:
    """Pareto plot; levelling-down points are red and their names end with ' (LD)'.

    Methods with the same mean point (e.g. strengths that select the same lists) are drawn once,
    their names joined by ' = '.
    """
    merged: dict[tuple[float, float, bool], list[str]] = {}
    for n, x, y, ld in points:
        merged.setdefault((round(x, 6), round(y, 6), ld), []).append(n)
    points = [(" = ".join(ns), x, y, ld) for (x, y, ld), ns in merged.items()]
    xs = np.array([p[1] for p in points])
    ys = np.array([p[2] for p in points])
    front = _on_frontier(xs, ys)
    pts = [
        (n + (" (LD)" if ld else ""), x, y, bool(f))
        for (n, x, y, ld), f in zip(points, front, strict=True)
    ]
    colors = [
        "#d62728" if ld else ("#1f77b4" if f else "#7f7f7f")
        for (_, _, _, ld), f in zip(points, front, strict=True)
    ]
    return svg.scatter_frontier(
        pts, title=title, xlabel=xlabel, ylabel=f"NDCG@{K}", colors=colors, width=760, height=460
    )


def _splits_section(targets: list[str]) -> list[str]:
    """Gender methods over random splits (split seed = model seed): mean [t-interval]."""
    folders = sorted(OUT.glob("split[0-9]*"))
    if not folders:
        return []
    rows = []
    for f in folders:
        lev = pd.read_parquet(f / "levelling.parquet")
        agg = pd.read_parquet(f / "aggregate.parquet")
        for r in lev[lev.attr == "gender"].itertuples():
            nd = _agg(agg, r.method, f"ndcg@{K}", "all")[0]
            b = _agg(agg, r.baseline, f"ndcg@{K}", "all")[0]
            rows.append(
                {
                    "split": f.name, "method": r.method, "base": r.baseline, "loss": 1 - nd / b,
                    "base_gap": r.base_gap, "cut": 1 - r.method_gap / r.base_gap,
                    "f": r.worse_change, "m": r.better_change, "worse": r.worse_group,
                    "status": r.worse_status, "verdict": r.verdict,
                }
            )  # fmt: skip
    df = pd.DataFrame(rows)

    def ci(v: pd.Series, fmt: str) -> str:
        m, lo, hi = t_interval(v.to_numpy(dtype=float))
        return f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"

    out = [
        f"### Gender methods over {len(folders)} random splits",
        "",
        f"Split seeds {', '.join(f.name[5:] for f in folders)} (model seed = split seed, one "
        "model per split), the same "
        "validation-only tuning; mean over splits [95% t-interval over splits]. One split's test "
        "gap is a noisy estimate (273 women, 670 men): this is what the methods do on average.",
        "",
        "| method | base gender gap | gap cut | NDCG@10 loss | worse-off group change | better-off group change | worse-off group gained / stayed / lost (splits) | verdicts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    met = False
    near: tuple[str, float, float, str, str] | None = None
    for m, sub in df.groupby("method", sort=False):
        counts = "/".join(str(int((sub.status == s).sum())) for s in ("gained", "stayed", "lost"))
        verdicts = ", ".join(f"{v} x{n}" for v, n in sub.verdict.value_counts().items())
        out.append(
            f"| `{m}` | {ci(sub.base_gap, '.4f')} | {ci(sub.cut, '+.0%')} | {ci(sub.loss, '+.1%')} "
            f"| {ci(sub.f, '+.4f')} | {ci(sub.m, '+.4f')} | {counts} | {verdicts} |"
        )
        mean_cut, mean_loss = float(sub.cut.mean()), float(sub.loss.mean())
        lo_f = t_interval(sub.f.to_numpy(dtype=float))[1]
        if mean_cut >= 0.5 and mean_loss <= 0.03 and lo_f >= 0:
            met = True
            targets.append(
                f"- over {len(folders)} random splits, `{m}` cuts the gender gap {mean_cut:.0%} at "
                f"{mean_loss:.1%} loss with the worse-off group not lower (t-interval low "
                f"{lo_f:+.4f})"
            )
        elif mean_cut >= 0.5 and lo_f >= 0 and (near is None or mean_loss < near[2]):
            near = (m, mean_cut, mean_loss, ci(sub.f, "+.4f"), ci(sub.m, "+.4f"))
    if not met and near is not None:
        targets.append(
            f"- over {len(folders)} random splits no method cuts the gender gap >= 50% at <= 3% "
            f"loss with the worse-off group not lower; closest: `{near[0]}`, cut {near[1]:.0%} at "
            f"{near[2]:.1%} loss, worse-off group (F) {near[3]}, better-off group (M) {near[4]}"
        )
    out.append("")
    return out


def report(args: Any) -> None:
    from _results import write_section

    run = OUT / args.run
    agg = pd.read_parquet(run / "aggregate.parquet")
    lev = pd.read_parquet(run / "levelling.parquet")
    summary = json.loads((run / "summary.json").read_text())
    meta = json.loads((OUT / f"{args.run}_meta.json").read_text())
    DOCS.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    targets: list[str] = []
    svgs: dict[str, str] = {}  # Pareto plots by file name, written with --write
    seeds = summary.get("seeds")
    # Seeds may have been run as separate processes (``--seeds S --run sS``) sharing the stage
    # cache, and the result folder assembled from the cache by one run over every seed.
    per_seed = {s: OUT / f"s{s}_meta.json" for s in seeds or []}
    if per_seed and all(p.exists() for p in per_seed.values()):
        ms_ = [json.loads(p.read_text()) for p in per_seed.values()]
        timing = (
            "Each seed ran as its own process (`--seeds S --run sS`, two at a time, sharing the "
            "stage cache); wall time per seed "
            + ", ".join(f"{m['seconds'] / 60:.0f}" for m in ms_)
            + " min, 1-min load average at the starts "
            + ", ".join(m["load_start"][0] for m in ms_)
            + "; the result folder was then assembled from the cache by one run over every seed "
            f"({meta['seconds']:.0f} s)"
        )
    else:
        timing = (
            f"Experiment wall time {meta['seconds'] / 60:.0f} min, load average "
            f"{' '.join(meta['load_start'])} at start and {' '.join(meta['load_end'])} at the end"
        )
    lines += [
        "Protocol: ML-100K, per-user random 8:1:1 split (seed 2020), model seeds "
        f"{seeds} on that split; full ranking, training (and on test validation) items masked. "
        "Every strength, weight and epoch is chosen on validation data only. Cells: mean over "
        "seeds [95% t-interval over seeds]; `loss` = 1 - NDCG@10 / base NDCG@10. Group changes: "
        "per-user NDCG@10 averaged over the seeds, method minus base model, mean over the "
        "group's users [95% paired bootstrap CI, 500 replicates]: `gained` / `lost` when the CI "
        "excludes 0, else `stayed` (`debiasrec.experiment.analysis.levelling_down`). "
        f"{timing} (2 shared cores; timings are not speed claims).",
        "",
    ]
    for base, base_name in BASES.items():
        ms = _methods_of(agg, base)
        if base not in ms:
            continue
        b_ndcg = _agg(agg, base, f"ndcg@{K}", "all")[0]
        b_gap = _agg(agg, base, f"gap_ndcg@{K}", "gender")[0]
        b_agegap = _agg(agg, base, f"gap_ndcg@{K}", "age")[0]
        b_ckl = _agg(agg, base, f"miscalibration@{K}", "all")[0]
        cal = summary.get("methods", {}).get(f"{base}-post+gf-g", {}).get("self_calibration", {})
        vgap = [v.get("valid_base_target") for v in cal.values() if isinstance(v, dict)]
        calage = (
            summary.get("methods", {}).get(f"{base}-post+gf-age", {}).get("self_calibration", {})
        )
        vagegap = [v.get("valid_base_target") for v in calage.values() if isinstance(v, dict)]
        lines += [
            f"### {base_name}: gender gap (who gained, who paid)",
            "",
            f"{base_name}: NDCG@10 {b_ndcg:.4f}, gender gap {b_gap:.4f} on test, "
            f"{np.mean(vgap) if vgap else float('nan'):.4f} on validation (mean over seeds: the "
            "gap that validation-only tuning sees); age gap "
            f"{b_agegap:.4f} on test, {np.mean(vagegap) if vagegap else float('nan'):.4f} on "
            f"validation; C_KL {b_ckl:.4f}.",
            "",
            "| method | NDCG@10 | loss | NDCG@10 F | NDCG@10 M | gender gap | gap cut | F change vs base | M change vs base | who paid |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        lg = lev[lev.attr == "gender"].set_index("method")
        gender_rows = []
        for m in ms:
            if re.search(r"(steck|cal-dcg|gf-age)", m) or "age" in _suffix(m, base):
                continue
            nd = _agg(agg, m, f"ndcg@{K}", "all")
            f = _agg(agg, m, f"ndcg@{K}", "gender=F")
            mm = _agg(agg, m, f"ndcg@{K}", "gender=M")
            gap = _agg(agg, m, f"gap_ndcg@{K}", "gender")
            loss = 1 - nd[0] / b_ndcg
            cut = 1 - gap[0] / b_gap
            r = lg.loc[m] if m in lg.index else None
            name = base_name if m == base else f"`{_suffix(m, base)}`: {_describe(m, base)}"
            lines.append(
                f"| {name} | {_ci(*nd)} | {loss:+.1%} | {_ci(*f)} | {_ci(*mm)} | {_ci(*gap)} | "
                f"{cut:+.0%} | {'–' if r is None else _change(r, 'worse')} | "
                f"{'–' if r is None else _change(r, 'better')} | "
                f"{'–' if r is None else ('**levelling down**' if r.verdict == 'levelling down' else r.verdict)} |"
            )
            gender_rows.append((m, nd[0], loss, gap[0], cut, r))
        lines.append("")
        # ---- target: gap cut >= 50%, F not lower (CI), loss <= 3%
        # Targets are judged on validation-tuned methods only: a strength-grid point ("@") is
        # chosen by looking at test, so it is part of the frontier, not a result.
        tuned = [x for x in gender_rows if "@" not in x[0]]
        ok = [
            x for x in tuned
            if x[5] is not None and x[4] >= 0.5 and x[2] <= 0.03 and x[5].worse_ci_high >= 0
            and x[5].worse_status != "lost"
        ]  # fmt: skip
        best = max(
            (x for x in tuned if x[5] is not None and x[2] <= 0.03 and x[5].worse_status != "lost"),
            key=lambda x: x[4],
            default=None,
        )
        if ok:
            x = max(ok, key=lambda x: x[4])
            targets.append(
                f"- {base_name}, gender gap cut >= 50% with women not lower and loss <= 3%: **met** "
                f"by `{_suffix(x[0], base)}` (cut {x[4]:.0%}, loss {x[2]:.1%}, F change "
                f"{_change(x[5], 'worse')}, M change {_change(x[5], 'better')}; {x[5].verdict})"
            )
        else:
            targets.append(
                f"- {base_name}, gender gap cut >= 50% with women not lower and loss <= 3%: **not "
                "met**"
                + (
                    f"; the largest cut with women not lower and loss <= 3% is {best[4]:.0%} "
                    f"(`{_suffix(best[0], base)}`, loss {best[2]:.1%}, F change "
                    f"{_change(best[5], 'worse')}, M change {_change(best[5], 'better')}; "
                    f"{best[5].verdict})"
                    if best
                    else ""
                )
                + (
                    f"; base gender gap {b_gap:.4f} on test vs {np.mean(vgap):.4f} on "
                    "validation (what the validation-only tuning can see)"
                    if vgap
                    else ""
                )
            )
        # ---- age
        lines += [
            f"### {base_name}: age gap",
            "",
            "| method | NDCG@10 | loss | age gap | gap change [pooled paired 95% CI] | worst group change | best group change | who paid |",
            "|---|---|---|---|---|---|---|---|",
        ]
        la = lev[lev.attr == "age"].set_index("method")
        sig_age = []
        age_rows = []
        for m in ms:
            if re.search(r"(steck|cal-dcg)", m) or "@" in m and "gf-age" not in m:
                continue
            nd = _agg(agg, m, f"ndcg@{K}", "all")
            gap = _agg(agg, m, f"gap_ndcg@{K}", "age")
            r = la.loc[m] if m in la.index else None
            name = base_name if m == base else f"`{_suffix(m, base)}`: {_describe(m, base)}"
            gtxt = "–"
            if r is not None:
                gtxt = f"{r.gap_change:+.4f} [{r.gap_ci_low:+.4f}, {r.gap_ci_high:+.4f}]"
                if "@" not in m:  # a strength-grid point is chosen on test: frontier only
                    age_rows.append((m, r, 1 - nd[0] / b_ndcg))
                if r.gap_ci_high < 0 and "@" not in m:
                    sig_age.append((m, r, 1 - nd[0] / b_ndcg))
            lines.append(
                f"| {name} | {_ci(*nd)} | {1 - nd[0] / b_ndcg:+.1%} | {_ci(*gap)} | {gtxt} | "
                f"{'–' if r is None else r.worse_group + ': ' + _change(r, 'worse')} | "
                f"{'–' if r is None else r.better_group + ': ' + _change(r, 'better')} | "
                f"{'–' if r is None else r.verdict} |"
            )
        lines.append("")
        if sig_age:
            m, r, loss = min(sig_age, key=lambda x: x[2])
            targets.append(
                f"- {base_name}, age gap: significant cut (pooled paired CI below 0) by "
                f"`{_suffix(m, base)}`: {r.gap_change:+.4f} [{r.gap_ci_low:+.4f}, "
                f"{r.gap_ci_high:+.4f}] at {loss:.1%} loss ({r.verdict})"
                + (f"; {len(sig_age)} methods in all" if len(sig_age) > 1 else "")
            )
        else:
            near = min(
                (x for x in age_rows if x[2] <= 0.05), key=lambda x: x[1].gap_change, default=None
            )
            targets.append(
                f"- {base_name}, age gap: **no significant cut** by any validation-tuned method "
                "(every pooled paired CI of the gap change contains 0)"
                + (
                    f"; the largest mean cut at <= 5% loss is `{_suffix(near[0], base)}` "
                    f"{near[1].gap_change:+.4f} [{near[1].gap_ci_low:+.4f}, "
                    f"{near[1].gap_ci_high:+.4f}] at {near[2]:.1%} loss ({near[1].verdict}); "
                    f"base age gap {b_agegap:.4f} on test vs "
                    f"{np.mean(vagegap) if vagegap else float('nan'):.4f} on validation"
                    if near is not None and near[1].gap_change < 0
                    else ""
                )
            )
        # ---- calibration
        lines += [
            f"### {base_name}: miscalibration (C_KL, genres)",
            "",
            "Same candidates (top-100, or 200 where named) and the same validation target "
            "(`miscalibration <= 0.5x`, strength by bisection on validation) for every re-ranker.",
            "",
            "| re-ranker | strength chosen (per seed) | NDCG@10 | loss | C_KL | C_KL cut |",
            "|---|---|---|---|---|---|",
        ]
        cal_rows = []
        for m in ms:
            if not re.search(r"(steck|cal-dcg)", m) or "@" in m:
                continue
            nd = _agg(agg, m, f"ndcg@{K}", "all")
            ck = _agg(agg, m, f"miscalibration@{K}", "all")
            info = summary.get("methods", {}).get(m, {}).get("self_calibration", {})
            st = ", ".join(f"{v['strength']:.3f}" for v in info.values() if isinstance(v, dict))
            cut = 1 - ck[0] / b_ckl
            loss = 1 - nd[0] / b_ndcg
            cal_rows.append((m, loss, cut))
            lines.append(
                f"| `{_suffix(m, base)}`: {_describe(m, base)} | {st} | {_ci(*nd)} | "
                f"{loss:+.1%} | {_ci(*ck)} | {cut:+.0%} |"
            )
        lines += ["", "Strength grids (test, mean over seeds): C_KL cut / NDCG@10 loss", ""]
        for tag in ("steck", "steck-sorted", "cal-dcg"):
            pts = []
            for m in ms:
                mm = re.match(rf"^{base}-post\+{tag}@([0-9.]+)$", m)
                if mm:
                    nd = _agg(agg, m, f"ndcg@{K}", "all")[0]
                    ck = _agg(agg, m, f"miscalibration@{K}", "all")[0]
                    pts.append(f"{mm.group(1)}: {1 - ck / b_ckl:+.0%} / {1 - nd / b_ndcg:.1%}")
            if pts:
                lines.append(f"- `{tag}`: " + "; ".join(pts))
        lines.append("")
        good = [x for x in cal_rows if x[2] >= 0.5 and x[1] <= 0.05]
        if good:
            x = min(good, key=lambda x: x[1])
            targets.append(
                f"- {base_name}, C_KL cut >= 50% at <= 5% NDCG loss: **met** by "
                f"`{_suffix(x[0], base)}` (cut {x[2]:.0%}, loss {x[1]:.1%})"
            )
        else:
            targets.append(f"- {base_name}, C_KL cut >= 50% at <= 5% NDCG loss: **not met**")
        # ---- Pareto plots
        for attr, metric, group, title, keep in (
            ("gender", f"gap_ndcg@{K}", "gender", "gender NDCG@10 gap", r"(gf-g|^[^@]*$)"),
            ("age", f"gap_ndcg@{K}", "age", "age NDCG@10 gap", r"(gf-age|^[^@]*$)"),
            ("ckl", f"miscalibration@{K}", "all", "C_KL (genres)", r"(steck|cal-dcg|^[^@]*$)"),
        ):
            levs = lev[lev.attr == (attr if attr != "ckl" else "gender")].set_index("method")
            pts = []
            for m in ms:
                if not re.search(keep, m):
                    continue
                x = _agg(agg, m, metric, group)[0]
                y = _agg(agg, m, f"ndcg@{K}", "all")[0]
                if not (np.isfinite(x) and np.isfinite(y)):
                    continue
                ld = attr != "ckl" and m in levs.index and levs.loc[m].verdict == "levelling down"
                pts.append((base_name if m == base else _suffix(m, base), x, y, bool(ld)))
            if len(pts) >= 2:
                svgs[f"pareto_{base}_{attr}.svg"] = _pareto_svg(
                    pts, f"{base_name}: NDCG@10 vs {title}", title
                )
    # ---- leakage
    leak_path = OUT / "leakage.parquet"
    if leak_path.exists():
        lk = pd.read_parquet(leak_path)
        lines += [
            "### Gender leakage of the user representations (adversarial removal)",
            "",
            "Attacker: a fresh probe (logistic regression, LR; one-hidden-layer MLP) trained "
            "from scratch on the frozen user representations, 5-fold stratified CV, probe seed "
            "7 (the model-selection probe inside `Adversarial` uses other seeds). *All users*: "
            "the adversary trained with every user's gender, the attacker cross-validated on all "
            "943 users (the protocol of the earlier sections). *Held-out users*: the adversary "
            "saw the gender of a random half of the users only; the attacker is "
            "cross-validated on the other half (users whose gender the debiasing never used). "
            "An AUC below 0.5 is leakage too (an inverted attacker); `|AUC-0.5|` is the "
            "distance from no leakage. Selection: best validation NDCG@10 with validation LR AUC "
            f"<= {TARGET_AUC}, else the least-leaking validated epoch (fallback).",
            "",
            "| model | protocol | seeds | NDCG@10 | loss vs its base | LR AUC (all users) | MLP AUC (all users) | LR AUC (held-out half) | MLP AUC (held-out half) | fallbacks | fit s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]

        def fmt(v: pd.Series) -> str:
            return _ci(*t_interval(v.to_numpy(dtype=float)), fmt=".3f")

        base_of = {}
        for (name, _protocol), sub in lk.groupby(["model", "protocol"], sort=False):
            if "Adversarial" not in name:
                base_of[name.split(" + ")[0]] = sub.set_index("seed")["ndcg"]
        leak_rows = []
        for (name, protocol), sub in lk.groupby(["model", "protocol"], sort=False):
            b = base_of.get(name.split(" + ")[0])
            s = sub.set_index("seed")
            loss = (1 - s["ndcg"] / b.reindex(s.index)) if b is not None else None
            fb = int(s["selection"].astype(str).str.startswith("fallback").sum())
            lines.append(
                f"| {name} | {protocol} | {', '.join(str(i) for i in s.index)} | {fmt(s['ndcg'])} | "
                f"{'–' if 'Adversarial' not in name or loss is None else fmt(loss)} | "
                f"{fmt(s['auc_lr'])} | {fmt(s['auc_mlp'])} | {fmt(s['auc_lr_heldout'])} | "
                f"{fmt(s['auc_mlp_heldout'])} | {fb}/{len(s)} | {s['fit_s'].median():.0f} |"
            )
            if "Adversarial" in name and loss is not None:
                leak_rows.append((name, protocol, float(loss.mean()), s))
        lines.append("")
        hits = []
        for name, protocol, loss, s in leak_rows:
            col = "auc_lr" if protocol == "all users" else "auc_lr_heldout"
            auc = float(s[col].mean())
            if loss <= 0.05 and abs(auc - 0.5) <= 0.03:
                hits.append((name, protocol, auc, loss))
        if hits:
            for name, protocol, auc, loss in hits:
                targets.append(
                    f"- gender attacker AUC <= 0.53 at <= 5% loss: met by {name} ({protocol}): "
                    f"LR AUC {auc:.3f} at {loss:.1%} loss"
                )
        else:
            best = min(
                leak_rows, key=lambda x: abs(float(x[3]["auc_lr"].mean()) - 0.5), default=None
            )
            targets.append(
                "- gender attacker AUC <= 0.53 (|AUC-0.5| <= 0.03) at <= 5% loss on BPR or the "
                "history-only TextTwoTower: **not met**"
                + (
                    f"; closest: {best[0]} ({best[1]}): LR AUC {float(best[3]['auc_lr'].mean()):.3f}, "
                    f"held-out {float(best[3]['auc_lr_heldout'].mean()):.3f}, at {best[2]:.1%} loss"
                    if best
                    else ""
                )
            )
        pts = []
        for (name, protocol), sub in lk.groupby(["model", "protocol"], sort=False):
            for col, tag in (("auc_lr", "all users"), ("auc_lr_heldout", "held-out")):
                if protocol == "held-out users" and col == "auc_lr":
                    continue
                short = name.replace("TextTwoTower (history only)", "T2T").replace(
                    "Adversarial", "adv"
                )
                pts.append(
                    (
                        f"{short} [{tag}]",
                        abs(float(sub[col].mean()) - 0.5),
                        float(sub["ndcg"].mean()),
                        False,
                    )
                )
        svgs["pareto_leakage.svg"] = _pareto_svg(
            pts, "NDCG@10 vs gender leakage (|LR AUC - 0.5|)", "|LR attacker AUC - 0.5|"
        )
    lines += _splits_section(targets)
    milp_path = OUT / "milp.parquet"
    if milp_path.exists():
        mp = pd.read_parquet(milp_path)
        lines += [
            "### Calibrated selection: local search vs the exact optimum",
            "",
            "`calibrated_dcg` on BPR (seed 0) test candidates of a random user sample; the MILP "
            "adds tangent cuts of `log` until its bound meets the list's true objective "
            "(`proven` = share of users where it did within the time limit of 60 s per solve).",
            "",
            "| strength | users | objective greedy | objective local | objective MILP | local = optimum | greedy = optimum | MILP proven | seconds (all three) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in mp.itertuples():
            lines.append(
                f"| {r.strength:g} | {r.users} | {r.objective_greedy:.5f} | {r.objective_local:.5f} "
                f"| {r.objective_milp:.5f} | {r.local_at_optimum:.0%} | {r.greedy_at_optimum:.0%} "
                f"| {r.milp_proven:.0%} | {r.seconds:.0f} |"
            )
        lines.append("")
    plots = sorted(svgs)
    body = "\n".join(
        [
            *lines,
            "### Pareto plots",
            "",
            "One plot per target and base model (mean over seeds; filled points joined by the "
            "dashed line are Pareto-optimal; red points marked `(LD)` closed the gap by "
            "levelling down): " + ", ".join(f"[`{p}`](../docs/fairness/{p})" for p in plots),
            "",
            "### Against the targets of issue 19 (test, mean over seeds)",
            "",
            *targets,
        ]
    )
    print(body)
    if args.write:  # the plots too: without --write nothing is written
        DOCS.mkdir(parents=True, exist_ok=True)
        for name, svg in svgs.items():
            (DOCS / name).write_text(svg)
        script = "python benchmarks/fairness_frontier.py"
        command = (
            f"{script} --part experiment --seeds S --run sS (S = 0..4; optional, seeds in "
            f"parallel processes sharing the stage cache) && {script} --part experiment && "
            f"{script} --part leakage && {script} --part splits && {script} --part milp && "
            f"{script} --part report --write"
        )
        write_section(SECTION, command, body)
