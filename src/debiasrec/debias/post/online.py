"""Online self-calibration: adjust a re-ranker's strength from a feedback stream.

The controller keeps exponentially discounted running estimates from the events it is fed
(``update(events)``, one batch at a time):

- ``kind="utility_gap"``: per user group ``g``, ``S_g <- d * S_g + sum utility``,
  ``N_g <- d * N_g + count``; the measured value is ``max_g S_g/N_g - min_g S_g/N_g`` over groups
  with ``N_g >= min_events`` (e.g. the gap in click rate or per-impression NDCG).
- ``kind="exposure_share"``: ``E_p <- d * E_p + sum exposure of protected items``,
  ``E <- d * E + sum exposure``; the measured value is ``E_p / E`` (e.g. the long-tail share).

After each batch the strength moves by a projected, bounded step (a stochastic-approximation /
integral controller, Robbins & Monro 1951):

    v        = value - target          (op "<=")    or    target - value   (op ">=")
    lambda  <- clip(lambda + clip(gain * v, -max_delta, max_delta), lo, hi)

so a violated target raises the strength and slack lowers it (giving accuracy back); no update
moves it by more than ``max_delta`` and it never leaves ``[lo, hi]``. Batches without enough
data leave it unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from debiasrec.config import build_config
from debiasrec.errors import DataError


class OnlineConfig(BaseModel):
    """Options of :class:`OnlineController`; unknown keys fail at construction."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["utility_gap", "exposure_share"]
    op: Literal["<=", ">="] | None = None
    target: float
    init: float = Field(0.0, description="starting strength")
    lo: float = 0.0
    hi: float = 1.0
    gain: float = Field(0.5, gt=0.0, description="step per unit of target violation")
    max_delta: float = Field(0.05, gt=0.0, description="largest change per update")
    decay: float = Field(0.95, gt=0.0, le=1.0, description="discount of past events per batch")
    min_events: float = Field(20.0, ge=0.0, description="discounted events a group needs")

    @model_validator(mode="after")
    def _check(self) -> OnlineConfig:
        if self.op is None:
            self.op = "<=" if self.kind == "utility_gap" else ">="
        if not self.lo <= self.init <= self.hi:
            raise ValueError(f"init={self.init} must lie in [lo, hi] = [{self.lo}, {self.hi}]")
        return self


class OnlineController:
    """Running per-group estimates from a feedback stream and a bounded strength update.

    Events are a DataFrame or a mapping of equal-length columns:

    - ``utility_gap``: ``group`` (user group label) and ``utility`` (float);
    - ``exposure_share``: ``protected`` (bool, the shown item is in the protected group) and
      optionally ``exposure`` (position weight, default 1).

    Attributes:
        strength: the current strength.
        history_: one row per update (``strength``, ``value``, ``delta``).
    """

    def __init__(self, config: OnlineConfig | dict[str, Any] | None = None, **kwargs: Any):
        self.config = build_config(OnlineConfig, config, kwargs, what="the online controller")
        config = self.config
        self.strength = float(config.init)
        self._sums: dict[str, float] = {}
        self._counts: dict[str, float] = {}
        self._rows: list[tuple[float, float, float]] = []

    @property
    def history_(self) -> pd.DataFrame:
        return pd.DataFrame(self._rows, columns=["strength", "value", "delta"])

    def value(self) -> float:
        """The current running estimate of the controlled quantity (NaN if not enough data)."""
        if self.config.kind == "utility_gap":
            means = [
                self._sums[g] / self._counts[g]
                for g in self._counts
                if self._counts[g] >= self.config.min_events and self._counts[g] > 0
            ]
            return float(max(means) - min(means)) if len(means) >= 2 else float("nan")
        tot = self._counts.get("all", 0.0)
        if tot < max(self.config.min_events, 1e-12):
            return float("nan")
        return float(self._sums.get("protected", 0.0) / tot)

    def update(self, events: pd.DataFrame | Mapping[str, Any]) -> float:
        """Fold a batch of feedback events into the estimates and step the strength.

        Returns:
            The new strength.
        """
        frame = events if isinstance(events, pd.DataFrame) else pd.DataFrame(dict(events))
        d = self.config.decay
        for key in self._sums:
            self._sums[key] *= d
            self._counts[key] *= d
        if self.config.kind == "utility_gap":
            missing = {"group", "utility"} - set(frame.columns)
            if missing:
                raise DataError(f"utility_gap events need columns {sorted(missing)}")
            agg = frame.groupby(frame["group"].astype(str), observed=True)["utility"].agg(
                ["sum", "count"]
            )
            for g, row in agg.iterrows():
                self._sums[str(g)] = self._sums.get(str(g), 0.0) + float(row["sum"])
                self._counts[str(g)] = self._counts.get(str(g), 0.0) + float(row["count"])
        else:
            if "protected" not in frame.columns:
                raise DataError("exposure_share events need a 'protected' column")
            w = (
                frame["exposure"].to_numpy(dtype=np.float64)
                if "exposure" in frame.columns
                else np.ones(len(frame))
            )
            prot = frame["protected"].to_numpy(dtype=bool)
            self._sums["protected"] = self._sums.get("protected", 0.0) + float(w[prot].sum())
            self._counts["protected"] = self._counts.get("protected", 0.0)
            self._sums["all"] = self._sums.get("all", 0.0) + float(w.sum())
            self._counts["all"] = self._counts.get("all", 0.0) + float(w.sum())
        v = self.value()
        delta = 0.0
        if np.isfinite(v):
            cfg = self.config
            violation = v - cfg.target if cfg.op == "<=" else cfg.target - v
            delta = float(np.clip(cfg.gain * violation, -cfg.max_delta, cfg.max_delta))
            new = float(np.clip(self.strength + delta, cfg.lo, cfg.hi))
            delta = new - self.strength
            self.strength = new
        self._rows.append((self.strength, v, delta))
        return self.strength


__all__ = ["OnlineConfig", "OnlineController"]
