"""Online controller on simulated feedback streams."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from debiasrec.debias.post import OnlineController
from debiasrec.errors import ConfigError


def _gap_stream(ctl: OnlineController, n_batches: int, rng: np.random.Generator) -> np.ndarray:
    """Group A's utility falls with the strength: gap(l) = 0.2 - 0.3 l (B stays at 0.3)."""
    seen = []
    for _ in range(n_batches):
        lam = ctl.strength
        n = 200
        grp = rng.choice(["A", "B"], size=n, p=[0.7, 0.3])
        p = np.where(grp == "A", 0.5 - 0.3 * lam, 0.3)
        ctl.update(pd.DataFrame({"group": grp, "utility": (rng.random(n) < p).astype(float)}))
        seen.append(ctl.strength)
    return np.array(seen)


def test_converges_to_the_strength_that_meets_the_gap_target() -> None:
    ctl = OnlineController(kind="utility_gap", target=0.05, max_delta=0.05, gain=1.0)
    path = _gap_stream(ctl, 300, np.random.default_rng(0))
    # gap(l) = 0.05 at l = 0.5
    assert abs(np.mean(path[-100:]) - 0.5) < 0.1
    hist = ctl.history_
    assert hist["delta"].abs().max() <= 0.05 + 1e-12
    assert path.min() >= 0.0 and path.max() <= 1.0


def test_bounds_are_respected_when_the_target_is_out_of_reach() -> None:
    ctl = OnlineController(kind="utility_gap", target=0.0, hi=0.3, max_delta=0.02)
    path = _gap_stream(ctl, 100, np.random.default_rng(1))
    assert path.max() <= 0.3 and path[-1] == pytest.approx(0.3)
    assert np.abs(np.diff(np.r_[0.0, path])).max() <= 0.02 + 1e-12


def test_exposure_share_controller_converges_and_gives_accuracy_back() -> None:
    rng = np.random.default_rng(2)
    ctl = OnlineController(kind="exposure_share", target=0.2, init=0.9, gain=2.0, max_delta=0.05)
    for _ in range(300):
        share = 0.05 + 0.5 * ctl.strength  # protected share grows with the strength
        prot = rng.random(500) < share
        ctl.update({"protected": prot, "exposure": 1 / np.log2(2 + rng.integers(0, 10, 500))})
    # share(l) = 0.2 at l = 0.3; starting from 0.9 the strength must come down
    assert abs(np.mean(ctl.history_["strength"].iloc[-100:]) - 0.3) < 0.05


def test_no_step_without_enough_data_and_config_checked() -> None:
    ctl = OnlineController(kind="utility_gap", target=0.0, min_events=50)
    ctl.update({"group": ["A", "B"], "utility": [1.0, 0.0]})
    assert ctl.strength == 0.0 and np.isnan(ctl.history_["value"].iloc[0])
    with pytest.raises(ConfigError):
        OnlineController(kind="utility_gap", target=0.1, init=2.0)
    with pytest.raises(ConfigError):
        OnlineController(kind="utility_gap", target=0.1, max_step=0.1)


@pytest.mark.parametrize("field", ["target", "gain", "max_delta", "min_events", "lo"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_settings_are_refused(field, bad) -> None:
    with pytest.raises(ConfigError, match=field):
        OnlineController(**{"kind": "utility_gap", "target": 0.1, field: bad})
