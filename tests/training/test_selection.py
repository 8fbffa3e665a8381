"""Model selection with a validation constraint (TrainerConfig.select_constraint)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import debiasrec.training.trainer as trainer_mod
from debiasrec.errors import ConfigError
from debiasrec.training.trainer import Strategy, Trainer, TrainerConfig, selection_key


def test_selection_key_rule():
    c = {"leak": 0.55}
    feasible_low = selection_key({"m": 0.20, "leak": 0.50}, "m", c)
    feasible_high = selection_key({"m": 0.25, "leak": 0.55}, "m", c)
    infeasible_best = selection_key({"m": 0.40, "leak": 0.60}, "m", c)
    infeasible_worse = selection_key({"m": 0.45, "leak": 0.70}, "m", c)
    assert feasible_high > feasible_low > infeasible_best > infeasible_worse
    assert selection_key({"m": 0.1, "leak": math.nan}, "m", c) < infeasible_worse
    assert selection_key({"m": 0.3}, "m", {}) == (1, 0.3)
    with pytest.raises(ConfigError, match="leak"):
        selection_key({"m": 0.3}, "m", c)


class _Scripted:
    """A Trainable whose only parameter records the epoch it was trained in."""

    def __init__(self) -> None:
        self.module = torch.nn.Module()
        self.module.w = torch.nn.Parameter(torch.zeros(1))

    def batches(self, train, batch_size, rng):
        yield {"x": torch.zeros(1)}

    def loss_terms(self, batch):
        return {"l": (self.module.w * 0.0).sum()}

    def param_groups(self):
        return [{"params": [self.module.w]}]

    def score_block(self, users):
        return torch.zeros(len(users), 3)


class _Script(Strategy):
    name = "script"

    def __init__(self, leak):
        self.leak = leak
        self.epoch = -1

    def after_step(self, model, batch, epoch):
        self.epoch = epoch
        with torch.no_grad():
            model.module.w.fill_(float(epoch))

    def validation_metrics(self, model, valid_users):
        return {"leak_auc_gender": self.leak[self.epoch]}


class _Valid:
    n_interactions = 1
    n_users = 3


NDCG = [0.10, 0.30, 0.25, 0.28, 0.20, 0.15]


def _run(monkeypatch, leak, constraint, patience=10, ndcg=NDCG):
    calls = iter(ndcg)
    monkeypatch.setattr(trainer_mod, "validation_score", lambda *a, **k: next(calls))
    model = _Scripted()
    cfg = TrainerConfig(
        epochs=len(ndcg), patience=patience, optimizer="sgd", select_constraint=constraint
    )
    hist = Trainer(cfg, [_Script(leak)]).fit(model, None, _Valid(), rng=0)  # type: ignore[arg-type]
    return model, hist


def test_trainer_picks_best_metric_among_feasible_epochs(monkeypatch):
    leak = [0.50, 0.70, 0.54, 0.52, 0.51, 0.50]
    model, hist = _run(monkeypatch, leak, {"leak_auc_gender": 0.55})
    # epoch 1 has the best NDCG but leaks; among feasible epochs {0, 2, 3, 4, 5} epoch 3 wins
    assert hist.best_epoch == 3 and hist.best_value == pytest.approx(0.28)
    assert hist.selection == "constrained"
    assert model.module.w.item() == 3.0  # the selected epoch's weights were restored


def test_trainer_without_constraint_picks_best_metric(monkeypatch):
    model, hist = _run(monkeypatch, [0.5] * 6, {})
    assert hist.best_epoch == 1 and hist.selection == "metric" and model.module.w.item() == 1.0


def test_trainer_falls_back_to_least_leaking_epoch_and_says_so(monkeypatch):
    leak = [0.70, 0.66, 0.61, 0.64, 0.62, 0.65]
    with pytest.warns(UserWarning, match="fallback"):
        model, hist = _run(monkeypatch, leak, {"leak_auc_gender": 0.55})
    assert hist.best_epoch == 2 and model.module.w.item() == 2.0
    assert hist.selection.startswith("fallback") and "leak_auc_gender <= 0.55" in hist.selection
    assert hist.to_dict()["selection"] == hist.selection


def test_patience_counts_from_the_selected_epoch(monkeypatch):
    leak = [0.50, 0.70, 0.60, 0.60, 0.60, 0.40]
    _, hist = _run(monkeypatch, leak, {"leak_auc_gender": 0.55}, patience=1)
    # epoch 1 raises the raw metric (patience reset); epochs 2, 3 improve nothing -> stop
    assert hist.stopped_early and len(hist.epochs) == 4 and hist.best_epoch == 0
    assert np.isfinite(hist.epochs[-1]["leak_auc_gender"])


def test_rising_accuracy_keeps_training_until_a_better_feasible_epoch(monkeypatch):
    # The barely trained epoch 0 is feasible; accuracy keeps rising while leaking; epoch 3 is
    # feasible and better. Counting patience on the selection key alone would stop at epoch 2.
    ndcg = [0.10, 0.20, 0.25, 0.30, 0.29, 0.10]
    leak = [0.50, 0.70, 0.70, 0.52, 0.70, 0.70]
    model, hist = _run(monkeypatch, leak, {"leak_auc_gender": 0.55}, patience=1, ndcg=ndcg)
    assert hist.best_epoch == 3 and model.module.w.item() == 3.0


class _Worst(_Script):
    """Also reports a per-group number; records the validation data it was given."""

    def __init__(self, worst):
        super().__init__([0.5] * len(worst))
        self.worst = worst
        self.seen_valid = None

    def setup_validation(self, model, train, valid):
        self.seen_valid = valid

    def validation_metrics(self, model, valid_users):
        return {"valid_worst_ndcg@10_gender": self.worst[self.epoch]}


def test_select_metric_picks_the_epoch_by_a_strategy_number(monkeypatch):
    # overall NDCG peaks at epoch 1, the worst group's at epoch 3: select_metric follows the latter
    worst = [0.05, 0.10, 0.12, 0.20, 0.11, 0.09]
    calls = iter(NDCG)
    monkeypatch.setattr(trainer_mod, "validation_score", lambda *a, **k: next(calls))
    model, strat, valid = _Scripted(), _Worst(worst), _Valid()
    cfg = TrainerConfig(
        epochs=6, optimizer="sgd", select_metric="valid_worst_ndcg@10_gender", patience=10
    )
    hist = Trainer(cfg, [strat]).fit(model, None, valid, rng=0)  # type: ignore[arg-type]
    assert hist.best_epoch == 3 and hist.best_value == pytest.approx(0.20)
    assert model.module.w.item() == 3.0
    assert strat.seen_valid is valid  # setup_validation received the validation data
    assert hist.epochs[1]["valid_ndcg@10"] == pytest.approx(0.30)  # still logged


def test_select_metric_unknown_name_lists_the_available_ones(monkeypatch):
    monkeypatch.setattr(trainer_mod, "validation_score", lambda *a, **k: 0.1)
    cfg = TrainerConfig(epochs=2, optimizer="sgd", select_metric="valid_worst_ndcg@10_age")
    with pytest.raises(ConfigError, match="valid_worst_ndcg@10_gender"):
        Trainer(cfg, [_Worst([0.1, 0.2])]).fit(_Scripted(), None, _Valid(), rng=0)  # type: ignore[arg-type]
