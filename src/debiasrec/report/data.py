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


#: Columns the report needs in ``results.parquet`` (``n`` is optional: older folders lack it).
REQUIRED_RESULT_COLUMNS = ("method", "seed", "metric", "group", "value", "ci_low", "ci_high")

_REWRITE = "rerun the command that wrote the result folder, or restore the file"


def _read(path: Path, required: tuple[str, ...] = ()) -> pd.DataFrame | None:
    """A Parquet file of the result folder (None when absent).

    Raises:
        DataError: the file is not readable Parquet or lacks a ``required`` column.
    """
    if not path.is_file():
        return None
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for truncated or foreign files
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path} is not a readable Parquet file ({why}); {_REWRITE}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {missing} (found {list(df.columns)}); it is not a "
            f"debiasrec results table; {_REWRITE}"
        )
    return df


def _read_results(path: Path) -> pd.DataFrame:
    results = _read(path, REQUIRED_RESULT_COLUMNS)
    assert results is not None  # the caller checked the file exists
    if results.empty:
        raise DataError(f"{path} has no rows; {_REWRITE}")
    for col in ("value", "ci_low", "ci_high"):
        if not pd.api.types.is_numeric_dtype(results[col].dtype):
            raise DataError(
                f"{path}: column {col!r} must hold numbers, found {results[col].dtype}; {_REWRITE}"
            )
    if "n" not in results.columns:
        results["n"] = float("nan")
    return results


def _read_summary(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); {_REWRITE}") from None
    if not isinstance(summary, dict):
        raise DataError(f"{path} holds a {type(summary).__name__}, not a JSON object; {_REWRITE}")
    return summary


def load_report_data(folder: str | Path) -> ReportData:
    """Read a result folder.

    Raises:
        DataError: ``results.parquet`` is missing, unreadable, empty or lacks a column of
            :data:`REQUIRED_RESULT_COLUMNS`; another table is not readable Parquet;
            ``summary.json`` is not a JSON object.
    """
    from debiasrec.experiment.analysis import pareto_frontier, seed_aggregate
    from debiasrec.report.tables import default_k

    folder = Path(folder)
    res_path = folder / "results.parquet"
    if not res_path.is_file():
        raise DataError(f"{folder} is not a result folder: results.parquet is missing")
    results = _read_results(res_path)
    summary = _read_summary(folder / "summary.json")
    config_path = folder / "config.toml"
    # Shown as text only: undecodable bytes are replaced rather than refused.
    config = (
        config_path.read_bytes().decode("utf-8", errors="replace") if config_path.is_file() else ""
    )
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
            recs[p.stem] = _read(p)
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
