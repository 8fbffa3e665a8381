"""Multi-task strategy: per-task losses, exact single-task reproduction at weight 0, MMoE gates,
PCGrad on hand-made gradients, uncertainty weighting's direction, config errors, resume."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from debiasrec.data import random_split
from debiasrec.data.split import Split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.inproc import Adversarial
from debiasrec.debias.inproc.multitask import MultiTask, TextTaskData, pcgrad_project
from debiasrec.errors import ConfigError, DataError
from debiasrec.models import BPR, LightGCN
from debiasrec.models.heads import MMoE, init_parameters
from debiasrec.random import torch_generator
from debiasrec.training import checkpoint
from debiasrec.training.trainer import Strategy

TRAIN = {"epochs": 8, "lr": 1e-2, "batch_size": 256, "eval_every": 2, "patience": 50}
#: Bit-identity checks run on the CPU (GPU reductions are not bit-reproducible).
CPU_TRAIN = {**TRAIN, "device": "cpu"}
ALL_TASKS = [{"kind": "genre"}, {"kind": "like"}, {"kind": "rating"}, {"kind": "text"}]


@pytest.fixture(scope="module")
def split() -> Split:
    ds, _ = generate(SyntheticConfig(n_users=150, n_items=100, mean_interactions=20), rng=3)
    return random_split(ds, rng=3)


@pytest.fixture(scope="module")
def text() -> TextTaskData:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return TextTaskData(x[:300], y[:300], valid_features=x[300:], valid_labels=y[300:])


def _weights(model: Any) -> dict[str, np.ndarray]:
    return {k: v.cpu().numpy().copy() for k, v in model.module.state_dict().items()}


def _strip(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


@pytest.mark.parametrize("architecture", ["separate", "shared_bottom", "mmoe"])
def test_every_task_loss_decreases_and_is_logged(split, text, architecture) -> None:
    mt = MultiTask(tasks=ALL_TASKS, architecture=architecture, text_data={"text": text})
    model = BPR(dim=16, train=TRAIN, strategies=[mt]).fit(split.train, valid=split.valid, rng=0)
    first, last = model.history_.epochs[0], model.history_.epochs[-1]
    for task in ("genre", "like", "rating", "text", "bpr"):
        key = f"loss_mt_{task}" if task != "bpr" else "loss_bpr"
        assert last[key] < first[key], (key, first[key], last[key])
    # the text head learns the (linearly separable) held-out task
    assert model.history_.epochs[-1]["mt_text_acc"] > 0.8


def test_zero_task_weights_reproduce_the_single_task_model_exactly(split, text) -> None:
    single = BPR(dim=16, train=CPU_TRAIN).fit(split.train, valid=split.valid, rng=7)
    tasks = [{**t, "weight": 0.0} for t in ALL_TASKS]
    for arch in ("shared_bottom", "mmoe"):
        mt = MultiTask(tasks=tasks, architecture=arch, text_data={"text": text})
        multi = BPR(dim=16, train=CPU_TRAIN, strategies=[mt])
        multi.fit(split.train, valid=split.valid, rng=7)
        a, b = _weights(single), _weights(multi)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert [r["valid_ndcg@10"] for r in single.history_.epochs if "valid_ndcg@10" in r] == [
            r["valid_ndcg@10"] for r in multi.history_.epochs if "valid_ndcg@10" in r
        ]
        # the heads were still evaluated: their raw losses are logged
        assert "loss_mt_genre" in multi.history_.epochs[0]


def test_zero_loss_weight_in_trainer_config_also_reproduces(split) -> None:
    single = BPR(dim=16, train=CPU_TRAIN).fit(split.train, rng=2)
    train = {**CPU_TRAIN, "loss_weights": {"mt_genre": 0.0}}
    multi = BPR(dim=16, train=train, strategies=[MultiTask(tasks=[{"kind": "genre"}])])
    multi.fit(split.train, rng=2)
    np.testing.assert_array_equal(single.user_embeddings(), multi.user_embeddings())


def test_nonzero_weight_changes_the_model(split) -> None:
    single = BPR(dim=16, train=TRAIN).fit(split.train, rng=2)
    multi = BPR(dim=16, train=TRAIN, strategies=[MultiTask(tasks=[{"kind": "genre"}])])
    multi.fit(split.train, rng=2)
    assert not np.array_equal(single.item_embeddings(), multi.item_embeddings())


def test_mmoe_gates_sum_to_one() -> None:
    mmoe = MMoE(6, 5, ["a", "b"], n_experts=3)
    init_parameters(mmoe, torch_generator(0))
    x = torch.randn(7, 6)
    for task in ("a", "b"):
        g = mmoe.gate(x, task)
        assert g.shape == (7, 3) and (g >= 0).all()
        torch.testing.assert_close(g.sum(1), torch.ones(7))
        # output = sum_e g_e f_e(x)
        manual = sum(g[:, e : e + 1] * mmoe.experts[e](x) for e in range(3))
        torch.testing.assert_close(mmoe(x, task), manual)
    with pytest.raises(ConfigError, match="unknown task"):
        mmoe.gate(x, "c")


def test_mmoe_gates_of_a_trained_strategy_sum_to_one(split) -> None:
    mt = MultiTask(tasks=[{"kind": "genre"}, {"kind": "like"}], architecture="mmoe", n_experts=3)
    model = BPR(dim=8, train={**TRAIN, "epochs": 2}, strategies=[mt]).fit(split.train, rng=0)
    q = model.item_repr(torch.arange(10)).detach()
    g = mt.gate_weights("genre", q)
    torch.testing.assert_close(g.sum(1), torch.ones(10))


def test_pcgrad_projection_equals_hand_computed_result() -> None:
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    # g1.g2 = -1 < 0: g1' = g1 - (-1 / 2) g2 = (0.5, 0.5); g2' = g2 - (-1 / 1) g1 = (0, 1)
    out = pcgrad_project(g)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    torch.testing.assert_close(out.sum(0), torch.tensor([0.5, 1.5]))
    # projected gradients no longer conflict with the other task's original gradient
    assert float(out[0] @ g[1]) == pytest.approx(0.0)
    assert float(out[1] @ g[0]) == pytest.approx(0.0)
    # non-conflicting gradients are left alone
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(pcgrad_project(h), h)


def test_pcgrad_three_tasks_fixed_order() -> None:
    g = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, -1.0, 1.0]])
    out = pcgrad_project(g)
    # task 0: vs task 1 (dot -1): (1,0,0) + 0.5 (-1,1,0) = (0.5, 0.5, 0); vs task 2: dot -0.5,
    # ||g2||^2 = 2 -> + 0.25 (0,-1,1) = (0.5, 0.25, 0.25)
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.25, 0.25]))
    # task 1: vs task 0 (dot -1, norm 1): (0, 1, 0); vs task 2 (dot -1, norm 2): (0, 0.5, 0.5)
    torch.testing.assert_close(out[1], torch.tensor([0.0, 0.5, 0.5]))
    # task 2: vs task 0 (dot 0): unchanged; vs task 1 (dot -1, norm 2): (-0.5, -0.5, 1)
    torch.testing.assert_close(out[2], torch.tensor([-0.5, -0.5, 1.0]))


def test_pcgrad_backward_projects_only_shared_parameters() -> None:
    mt = MultiTask(tasks=[{"kind": "genre"}], gradient="pcgrad")
    mt._rng = np.random.default_rng(0)
    w = torch.nn.Parameter(torch.zeros(2))  # shared by rec and genre
    a = torch.nn.Parameter(torch.zeros(1))  # genre only
    b = torch.nn.Parameter(torch.zeros(1))  # unused
    weighted = {
        "bpr": (w * torch.tensor([1.0, 0.0])).sum(),
        "mt_genre": (w * torch.tensor([-1.0, 1.0])).sum() + 3.0 * a.sum(),
    }
    assert mt.backward(weighted, [w, a, b]) is True
    torch.testing.assert_close(w.grad, torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(a.grad, torch.tensor([3.0]))
    assert b.grad is None
    assert MultiTask(tasks=[{"kind": "genre"}]).backward(weighted, [w]) is False


def test_pcgrad_training_with_an_adversary_as_one_more_task(split) -> None:
    adv = Adversarial(attrs=["gender"], strength=0.5, mode="grl", validate_leakage=False)
    mt = MultiTask(tasks=[{"kind": "genre"}, {"kind": "like"}], gradient="pcgrad")
    assert mt.group_of("adv_gender") == "adversarial"
    assert mt.group_of("bpr") == "rec" and mt.group_of("mt_like") == "like"
    model = BPR(dim=8, train={**TRAIN, "epochs": 3}, strategies=[adv, mt])
    model.fit(split.train, valid=split.valid, rng=0)
    row = model.history_.epochs[-1]
    assert {"loss_adv_gender", "loss_mt_genre", "loss_mt_like", "loss_bpr"} <= set(row)
    assert all(np.isfinite(v) for v in row.values())


def test_uncertainty_log_variances_move_towards_log_loss(split) -> None:
    mt = MultiTask(tasks=[{"kind": "genre"}], weighting="uncertainty")
    model = BPR(dim=8)
    model._build(split.train, torch_generator(0))
    mt.setup(model, split.train, np.random.default_rng(0))
    assert set(mt.log_variances()) == {"rec", "genre"}
    opt = torch.optim.SGD(mt.net.log_vars.parameters(), lr=0.05)
    losses = {"bpr": torch.tensor(4.0), "mt_genre": torch.tensor(0.25)}
    for step in range(400):
        total = sum(mt.combine_terms(dict(losses), 0).values())
        opt.zero_grad()
        total.backward()
        opt.step()
        if step == 0:
            s = mt.log_variances()
            assert s["rec"] > 0 > s["genre"]  # large loss -> larger variance (smaller weight)
    s = mt.log_variances()
    assert s["rec"] == pytest.approx(np.log(4.0), abs=1e-3)
    assert s["genre"] == pytest.approx(np.log(0.25), abs=1e-3)


def test_uncertainty_weighting_in_training_orders_variances_by_loss(split) -> None:
    mt = MultiTask(tasks=[{"kind": "genre"}, {"kind": "rating"}], weighting="uncertainty")
    model = BPR(dim=8, train={**TRAIN, "epochs": 10}, strategies=[mt])
    model.fit(split.train, valid=split.valid, rng=0)
    last = model.history_.epochs[-1]
    s = mt.log_variances()
    assert last["loss_mt_genre"] < last["loss_mt_rating"]
    assert s["genre"] < s["rating"]
    assert last["mt_logvar_genre"] == pytest.approx(s["genre"], abs=0.1)


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"tasks\.0\.kind"):
        MultiTask(tasks=[{"kind": "sentiment"}])
    with pytest.raises(ConfigError, match="architecture"):
        MultiTask(tasks=[{"kind": "genre"}], architecture="moe")
    with pytest.raises(ConfigError, match="n_experts"):
        MultiTask(tasks=[{"kind": "genre"}], n_experts=0)
    with pytest.raises(ConfigError, match=r"tasks\.0\.weight"):
        MultiTask(tasks=[{"kind": "genre", "weight": -1}])
    with pytest.raises(ConfigError, match="tasks"):
        MultiTask(tasks=[])
    with pytest.raises(ConfigError, match="repeated"):
        MultiTask(tasks=[{"kind": "genre"}, {"kind": "genre"}])
    with pytest.raises(ConfigError, match=r"tasks\.0 \(text task 'rt'\) has no data"):
        MultiTask(tasks=[{"kind": "text", "name": "rt"}])
    with pytest.raises(ConfigError, match="not text tasks"):
        MultiTask(tasks=[{"kind": "genre"}], text_data={"x": TextTaskData(np.ones((2, 3)), [0, 1])})
    with pytest.raises(ConfigError, match="weighting"):
        MultiTask(tasks=[{"kind": "genre"}], weighting="gradnorm")


def test_bad_data_raises(split) -> None:
    with pytest.raises(DataError, match="0/1"):
        TextTaskData(np.ones((2, 3)), np.array([0, 2]))
    with pytest.raises(DataError, match="labels"):
        TextTaskData(np.ones((2, 3)), np.array([0, 1, 1]))
    mt = MultiTask(tasks=[{"kind": "genre", "category": "colour"}])
    with pytest.raises(DataError, match="colour"):
        BPR(dim=4, train={"epochs": 1}, strategies=[mt]).fit(split.train, rng=0)


def test_lightgcn_hosts_item_tasks(split) -> None:
    mt = MultiTask(tasks=[{"kind": "genre"}, {"kind": "like"}], architecture="mmoe")
    model = LightGCN(dim=8, layers=1, train={"epochs": 2, "batch_size": 512}, strategies=[mt])
    model.fit(split.train, rng=0)
    assert "loss_mt_genre" in model.history_.epochs[-1]


class _Interrupt(Exception):
    pass


class _Crash(Strategy):
    name = "crash"

    def __init__(self, at: int | None) -> None:
        self.at = at

    def before_step(self, model: Any, batch: dict, epoch: int) -> None:
        if epoch == self.at:
            raise _Interrupt


def test_resume_equals_uninterrupted_run(split, text, tmp_path) -> None:
    def make(crash: int | None, resume: bool) -> BPR:
        mt = MultiTask(
            tasks=ALL_TASKS, architecture="mmoe", weighting="uncertainty", gradient="pcgrad",
            text_data={"text": text},
        )  # fmt: skip
        train = {**CPU_TRAIN, "epochs": 5, "checkpoint_dir": str(tmp_path / "c"), "resume": resume}
        return BPR(dim=8, train=train, strategies=[mt, _Crash(crash)])

    full_train = {**CPU_TRAIN, "epochs": 5}
    mt_full = MultiTask(
        tasks=ALL_TASKS, architecture="mmoe", weighting="uncertainty", gradient="pcgrad",
        text_data={"text": text},
    )  # fmt: skip
    full = BPR(dim=8, train=full_train, strategies=[mt_full, _Crash(None)])
    full.fit(split.train, valid=split.valid, rng=4)
    with pytest.raises(_Interrupt):
        make(3, False).fit(split.train, valid=split.valid, rng=4)
    meta = json.loads((tmp_path / "c" / checkpoint.CHECKPOINT_FILE).read_text())
    assert meta["state"]["__dict__"][0] == ["next_epoch", 3]
    resumed = make(None, True).fit(split.train, valid=split.valid, rng=4)
    assert _strip(resumed.history_.epochs) == _strip(full.history_.epochs)
    a, b = _weights(full), _weights(resumed)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
