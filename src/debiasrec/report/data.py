"""What the report reads from a result folder, with the derived tables computed when missing.

Result folders written by older versions or by ``debiasrec audit`` have only ``results.parquet``
(and ``recs/``); the seed aggregate and frontiers are then derived here, and the sections that
need what is absent (paired tests, explanations) say so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from debiasrec.errors import DataError

#: Per-user counterfactual (LLM audit) metrics: ``jaccard@10``, ``snsr_jaccard@10``, ...
COUNTERFACTUAL_RE = re.compile(r"^(?:snsr|snsv)_|jaccard|serp_ms|prag")


@dataclass
class ReportData:
    """Everything the HTML and Markdown reports show."""

    folder: Path
    results: pd.DataFrame
    summary: dict[str, Any]
    config: str
    aggregate: pd.DataFrame
    tests: pd.DataFrame | None
    frontier: pd.DataFrame
    explanations: pd.DataFrame | None
    calibration: pd.DataFrame | None
    recs: dict[str, pd.DataFrame] = field(default_factory=dict)
    k: int = 10

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(self.results["method"].astype(str)))

    @property
    def info(self) -> dict[str, dict[str, Any]]:
        return dict(self.summary.get("methods") or {})

    @property
    def baselines(self) -> dict[str, str]:
        return dict(self.summary.get("baselines") or {})

    def counterfactual(self) -> pd.DataFrame:
        """Rows of counterfactual (LLM audit) metrics, if the run has any."""
        m = self.results["metric"].astype(str)
        return self.results[m.map(lambda x: bool(COUNTERFACTUAL_RE.search(x)))]


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


def load_report_data(folder: str | Path) -> ReportData:
    """Read a result folder.

    Raises:
        DataError: ``results.parquet`` is missing.
    """
    from debiasrec.experiment.analysis import pareto_frontier, seed_aggregate
    from debiasrec.report.tables import default_k

    folder = Path(folder)
    res_path = folder / "results.parquet"
    if not res_path.is_file():
        raise DataError(f"{folder} is not a result folder: results.parquet is missing")
    results = pd.read_parquet(res_path)
    summary = (
        json.loads((folder / "summary.json").read_text())
        if (folder / "summary.json").is_file()
        else {}
    )
    config = (folder / "config.toml").read_text() if (folder / "config.toml").is_file() else ""
    k = default_k(results)
    agg = _read(folder / "aggregate.parquet")
    if agg is None:
        agg = seed_aggregate(results)
    frontier = _read(folder / "frontier.parquet")
    if frontier is None:
        frontier = pareto_frontier(agg, k)
    recs: dict[str, pd.DataFrame] = {}
    if (folder / "recs").is_dir():
        for p in sorted((folder / "recs").glob("*.parquet")):
            recs[p.stem] = pd.read_parquet(p)
    return ReportData(
        folder=folder,
        results=results,
        summary=summary,
        config=config,
        aggregate=agg,
        tests=_read(folder / "tests.parquet"),
        frontier=frontier,
        explanations=_read(folder / "explanations.parquet"),
        calibration=_read(folder / "calibration.parquet"),
        recs=recs,
        k=k,
    )


__all__ = ["COUNTERFACTUAL_RE", "ReportData", "load_report_data"]
