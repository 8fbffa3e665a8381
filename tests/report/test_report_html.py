"""The HTML and Markdown reports of a real run: sections, inline SVG plots, no network."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from debiasrec.report.html import write_report
from debiasrec.report.svg import lorenz


def _section(page: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert m, sid
    return m.group(1)


def test_report_has_every_section_with_plots(report_run: Path) -> None:
    page = (report_run / "report.html").read_text()
    for sid, n_min in (("frontier", 4), ("groups", 2), ("exposure", 2), ("calibration", 1)):
        assert _section(page, sid).count("<svg") >= n_min, sid
    summary = _section(page, "summary")
    for m in ("pop", "itemknn", "bpr", "bpr-adv", "bpr-cal", "bpr-exp@0.2", "bpr-exp@0.6"):
        assert f"<td>{m}</td>" in summary, m
    for col in (
        "ndcg@5",
        "gap ndcg@5 gender",
        "leakage auc (recs) gender",
        "leakage auc (emb) gender",
        "miscalibration@5",
        "gini@5",
        "exposure tail@5",
    ):
        assert f"<th>{col}</th>" in summary, col
    assert "No LLM audit in this run." in _section(page, "llm-audit")
    trans = _section(page, "transparency")
    assert trans.count("<h3>User ") == 3 and "because you interacted with" in trans
    assert "Self-calibration" in _section(page, "tests")
    cfg = _section(page, "config")
    assert "[[methods]]" in cfg and "torch" in cfg


def test_report_is_self_contained(report_run: Path) -> None:
    page = (report_run / "report.html").read_text()
    assert "<script" not in page and "<link" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert 'xmlns="http://www.w3.org/2000/svg"' in page  # the only URL: the SVG namespace


def test_markdown_summary(report_run: Path) -> None:
    md = (report_run / "report.md").read_text()
    assert md.startswith("# debiasrec report: report-test")
    assert "| method | base | levels | seeds | ndcg@5" in md
    assert "| bpr-cal | bpr | post | 2 |" in md
    assert "## Pareto-optimal methods" in md and "No LLM audit in this run." in md


def test_counterfactual_heatmap_when_present(report_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "with-llm"
    shutil.copytree(report_run, folder, ignore=shutil.ignore_patterns("cache", "models"))
    res = pd.read_parquet(folder / "results.parquet")
    extra = pd.DataFrame(
        [
            {
                "method": "llm",
                "seed": 0,
                "metric": m,
                "group": g,
                "value": v,
                "ci_low": float("nan"),
                "ci_high": float("nan"),
                "n": 10.0,
            }
            for m in ("jaccard@10", "snsr_jaccard@10", "serp_ms@10")
            for g, v in (("gender=F", 0.61), ("gender=M", 0.72), ("age=18-24", 0.5))
        ]
    )
    pd.concat([res, extra], ignore_index=True).to_parquet(folder / "results.parquet")
    page = write_report(folder).read_text()
    sec = _section(page, "llm-audit")
    assert "No LLM audit" not in sec and sec.count("<svg") == 1
    assert "snsr_jaccard@10" in sec and "gender=F" in sec and "0.610" in sec


def test_report_without_method_files(report_run: Path, tmp_path: Path) -> None:
    """A result folder with results only (e.g. an older one) still gives a report."""
    folder = tmp_path / "bare"
    folder.mkdir()
    shutil.copy(report_run / "results.parquet", folder)
    page = write_report(folder).read_text()
    assert _section(page, "frontier").count("<svg") >= 1
    assert "No explanations in this result folder." in page


def test_lorenz_curve() -> None:
    x, y = lorenz([0, 0, 1, 3])
    assert x.tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert y.tolist() == pytest.approx([0, 0, 0, 0.25, 1.0])
    x, y = lorenz([2, 2, 2])
    assert y.tolist() == pytest.approx(x.tolist())


def test_per_group_bars_mark_levelling_down(report_run: Path, tmp_path: Path) -> None:
    page = (report_run / "report.html").read_text()
    groups = _section(page, "groups")
    assert "who paid (gender)" in groups and "who paid (age)" in groups
    lev = pd.read_parquet(report_run / "levelling.parquet")
    assert {"bpr-adv", "bpr-cal"} <= set(lev.method)
    # a hand-set verdict: bpr-cal closed the gender gap by lowering the better-off group
    folder = tmp_path / "levelled"
    shutil.copytree(report_run, folder, ignore=shutil.ignore_patterns("cache", "models"))
    row = (lev.method == "bpr-cal") & (lev.attr == "gender")
    lev.loc[row, ["worse_change", "worse_ci_low", "worse_ci_high", "worse_status"]] = [
        0.0, -0.01, 0.01, "stayed",
    ]  # fmt: skip
    lev.loc[row, ["better_change", "better_ci_low", "better_ci_high", "better_status"]] = [
        -0.03, -0.05, -0.01, "lost",
    ]  # fmt: skip
    lev.loc[row, ["gap_change", "verdict"]] = [-0.03, "levelling down"]
    lev.to_parquet(folder / "levelling.parquet")
    page = write_report(folder).read_text()
    groups = _section(page, "groups")
    assert "bpr-cal [LEVELLING DOWN]" in groups  # the legend entry of its bars
    assert '<td class="warn">levelling down</td>' in groups
    assert "-0.0300 [-0.0500, -0.0100] lost" in groups
    md = (folder / "report.md").read_text()
    assert "## Who paid for a smaller gap (levelling down)" in md
    line = next(x for x in md.splitlines() if x.startswith("| bpr-cal | gender"))
    assert "**levelling down**" in line and "+0.0000 [-0.0100, +0.0100] stayed" in line
