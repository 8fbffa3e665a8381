"""/fairness under a differencing attack, the private release mechanism, and its utility.

The attacker of issue 17: read /fairness, post feedback for a chosen user id, read again, and
read the user's group off the difference. With exact counts (``mechanism="off"``) that works
for every user; with the private releases (default) it must do no better than guessing the
majority group, while group estimates over enough traffic stay close to the truth.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from debiasrec.serve import create_app
from debiasrec.serve.config import PrivacyConfig
from debiasrec.serve.monitor import (
    QUANT,
    STATS,
    FairnessMonitor,
    discrete_laplace,
    discrete_laplace_var,
)

C = 20  # max_events_per_user in these tests
RELEASE = 50  # release_every in the attack tests
Z99 = 2.326  # one-sided 99% normal quantile


def _snapshot(client) -> dict:
    r = client.get("/fairness")
    assert r.status_code == 200, r.text
    return r.json()


def _signal(before: dict, after: dict, attr: str) -> dict[str, float]:
    """Per group: increase of users + impressions + exposure between two reads."""
    old = {r["group"]: r for r in before["user_groups"][attr]}
    out = {}
    for r in after["user_groups"][attr]:
        if "(" in r["group"]:  # (missing), (cold start): not a guess
            continue
        o = old.get(r["group"], {"users": 0, "impressions": 0})
        out[r["group"]] = (r["users"] - o["users"]) + (r["impressions"] - o["impressions"])
        if r.get("exposure") is not None and o.get("exposure") is not None:
            out[r["group"]] += r["exposure"] - o["exposure"]
    return out


def _attack(client, svc, targets: list[int], rounds: int) -> dict[str, list[dict[str, float]]]:
    """The differencing attack on each target: per attribute, per target, the summed signal of
    each group, and ``"_releases"``: how many releases the differences spanned."""
    p = svc.pipeline
    item = p.item_ids[0]
    attrs = list(svc.monitor.attrs)
    signal: dict[str, list[dict[str, float]]] = {a: [{} for _ in targets] for a in attrs}
    pad = 0
    for _ in range(rounds):  # repeated: a new window (and release) every time
        for n, u in enumerate(targets):
            before = _snapshot(client)
            uid = p.user_ids[u]
            events = [
                {"user_id": uid, "item_id": item, "type": "impression", "position": 1}
                for _ in range(C)
            ]
            assert client.post("/feedback", json={"events": events}).status_code == 200
            priv = _snapshot(client)["privacy"]
            if priv["mechanism"] != "off":  # force the release: pad with cold-start ids
                fill = []
                for _ in range(priv["pending_events"] and RELEASE - priv["pending_events"]):
                    pad += 1
                    fill.append({"user_id": f"pad{pad}", "item_id": item, "type": "impression"})
                if fill:
                    assert client.post("/feedback", json={"events": fill}).status_code == 200
            after = _snapshot(client)
            spanned = 0
            if priv["mechanism"] != "off":
                assert after["privacy"]["pending_events"] == 0
                spanned = after["privacy"]["releases"] - before["privacy"]["releases"]
            for a in attrs:
                acc = signal[a][n]
                for g, v in _signal(before, after, a).items():
                    acc[g] = acc.get(g, 0.0) + v
                acc["_releases"] = acc.get("_releases", 0) + spanned
    return signal


def _guesses(svc, signal: list[dict[str, float]], prior: dict[str, float] | None):
    """Best guess per target: the group with the largest signal, or, given the population
    ``prior``, the Bayes decision ``argmax log prior_g + mu s_g / sigma^2`` (Gaussian
    approximation of the summed noise; mu = 1 + 2C, the most one user adds to users +
    impressions + exposure; sigma^2 from the published noise scales)."""
    rep = svc.fairness()["privacy"]
    var1 = 0.0
    if rep["mechanism"] != "off":
        var1 = sum(
            float(discrete_laplace_var(rep["noise_scale"][s] * u)) / u**2
            for s, u in (("users", 1), ("impressions", 1), ("exposure", QUANT))
        )
    mu = 1.0 + 2 * C
    out = []
    for sig in signal:
        groups = [g for g in sig if g != "_releases"]
        if prior is None or var1 == 0.0:
            out.append(max(groups, key=sig.get))
            continue
        var = max(sig["_releases"], 1) * var1
        out.append(max(groups, key=lambda g: math.log(prior.get(g, 1e-9)) + mu * sig[g] / var))
    return out


def _leaks(svc, targets: list[int], signal: dict[str, list[dict[str, float]]]) -> dict:
    """Per attribute: does either attacker beat chance (99% one-sided binomial bounds)?

    - with the population prior (Bayes decision): accuracy vs always guessing the majority;
    - without it (largest signal): balanced accuracy vs 1/K.
    """
    out = {}
    for attr in svc.monitor.attrs:
        truth = _truth(svc, targets, attr)
        freq = pd.Series(truth).value_counts(normalize=True)
        n = len(truth)
        bayes = _guesses(svc, signal[attr], freq.to_dict())
        acc = float(np.mean([g == t for g, t in zip(bayes, truth, strict=True)]))
        base = float(freq.iloc[0])
        acc_bound = base + Z99 * math.sqrt(base * (1 - base) / n)
        plain = _guesses(svc, signal[attr], None)
        k = len(freq)
        recalls, var = [], 0.0
        for g in freq.index:
            idx = [i for i, t in enumerate(truth) if t == g]
            recalls.append(np.mean([plain[i] == g for i in idx]))
            var += (1 / k) * (1 - 1 / k) / len(idx)
        bal = float(np.mean(recalls))
        bal_bound = 1 / k + Z99 * math.sqrt(var) / k
        out[attr] = {
            "accuracy": acc,
            "majority": base,
            "balanced_accuracy": bal,
            "chance": 1 / k,
            "leaks": acc > acc_bound or bal > bal_bound,
        }
    return out


def _truth(svc, targets: list[int], attr: str) -> list[str]:
    cat = svc.pipeline.dataset.user_groups(attr)
    return [f"{attr}={cat[u]}" if not pd.isna(cat[u]) else "" for u in targets]


def _attack_service(make_service, mechanism: str):
    return make_service(
        online={"enabled": False},
        rate_limit={"enabled": False},
        synchronous="NORMAL",
        privacy={
            "mechanism": mechanism,
            "max_events_per_user": C,
            "release_every": RELEASE,
            "seed": 7,
        },
    )


def test_differencing_attack_learns_attributes_without_the_mechanism(make_service) -> None:
    svc = _attack_service(make_service, "off")
    targets = list(range(0, svc.pipeline.n_users, 4))  # 30 users
    with TestClient(create_app(svc)) as client:
        signal = _attack(client, svc, targets, rounds=1)
    for attr in svc.monitor.attrs:  # every one of them, with either attacker
        assert _guesses(svc, signal[attr], None) == _truth(svc, targets, attr)
        assert _leaks(svc, targets, signal)[attr]["leaks"]


def test_differencing_attack_is_no_better_than_chance(make_service) -> None:
    svc = _attack_service(make_service, "laplace")
    p = svc.pipeline
    targets = list(range(p.n_users))  # all 120 users, twice each, each time in a new window
    with TestClient(create_app(svc)) as client:
        signal = _attack(client, svc, targets, rounds=2)
    assert svc.monitor.n_releases >= 2 * len(targets)
    result = _leaks(svc, targets, signal)
    for attr, r in result.items():
        assert not r["leaks"], (attr, r)
    # the same attack against a mechanism 100x weaker (epsilon = 100) does learn: the test can
    # fail, and the signal it measures is real
    weak = make_service(
        online={"enabled": False},
        rate_limit={"enabled": False},
        synchronous="NORMAL",
        privacy={"max_events_per_user": C, "release_every": RELEASE, "seed": 7, "epsilon": 100},
        store=str(svc.store.path) + "-weak",
    )
    with TestClient(create_app(weak)) as client:
        signal = _attack(client, weak, targets[:40], rounds=1)
    assert all(r["leaks"] for r in _leaks(weak, targets[:40], signal).values())


def test_repeating_the_attack_adds_nothing(make_service) -> None:
    """After C counted events a user's further events change no release (contribution cap)."""
    svc = make_service(
        online={"enabled": False},
        privacy={"max_events_per_user": C, "release_every": 10_000, "seed": 1},
    )
    p = svc.pipeline
    u = p.user_ids[3]
    ev = [{"user_id": u, "item_id": p.item_ids[1], "type": "impression"}]
    svc.feedback(ev * (C + 15))
    window = svc.monitor._window["gender"].copy()
    svc.feedback(ev * 40)
    assert (svc.monitor._window["gender"] == window).all()
    assert window[:, STATS.index("impressions")].sum() == C
    assert window[:, STATS.index("users")].sum() == 1


def test_published_totals_are_sums_of_stored_releases(make_service, result_dir, tmp_path) -> None:
    """No fresh noise after a restart, and the open window is never published."""
    from debiasrec.serve import ServeConfig, Service

    opts = {
        "model": "itemknn",
        "online": {"enabled": False},
        "privacy": {"release_every": 30, "max_events_per_user": 5},  # OS entropy, no seed
        "store": str(tmp_path / "feedback.sqlite"),
    }
    svc = Service(result_dir, ServeConfig.model_validate(opts))
    p = svc.pipeline
    rng = np.random.default_rng(0)
    events = [
        {"user_id": p.user_ids[u], "item_id": p.item_ids[i], "type": "impression"}
        for u, i in zip(
            rng.integers(0, p.n_users, 100), rng.integers(0, p.n_items, 100), strict=True
        )
    ]
    svc.feedback(events)
    first = svc.fairness()
    assert first["privacy"]["releases"] == 3 and first["privacy"]["pending_events"] == 10
    stored = svc.store.releases(svc.monitor.series)
    assert [r.end_seq for r in stored] == [30, 60, 90]
    total = sum(np.array(r.payload["tables"]["gender"]) for r in stored)
    rows = first["user_groups"]["gender"]
    assert [r["impressions"] for r in rows] == np.maximum(total[:, 1], 0).tolist()
    svc.feedback(events[:5])  # still inside the open window: nothing published changes
    assert svc.fairness()["user_groups"] == first["user_groups"]
    svc.close()
    again = Service(result_dir, ServeConfig.model_validate(opts))
    try:
        assert again.fairness()["user_groups"] == first["user_groups"]
        again.feedback(events[:15])  # closes window 4: new noise, appended
        assert len(again.store.releases(again.monitor.series)) == 4
    finally:
        again.close()
    # other privacy settings: a new series that starts after the events already stored
    other = Service(
        result_dir,
        ServeConfig.model_validate({**opts, "privacy": {"release_every": 40, "epsilon": 0.5}}),
    )
    try:
        assert other.monitor.series != svc.monitor.series
        assert other.monitor.series_start == 120 and other.fairness()["privacy"]["releases"] == 0
    finally:
        other.close()


def test_privacy_report_states_the_guarantee(make_service) -> None:
    svc = make_service(privacy={"epsilon": 0.5, "max_events_per_user": 10})
    rep = svc.fairness()["privacy"]
    assert rep["mechanism"] == "discrete_laplace" and rep["epsilon"] == 0.5
    assert "0.5-differentially private" in rep["guarantee"]
    # t = A * 2 * (1 + 2C) / epsilon with A = 2 attributes (gender, age), C = 10
    assert rep["noise_scale"]["impressions"] == pytest.approx(2 * 2 * 21 / 0.5)
    assert rep["noise_scale"]["exposure"] == pytest.approx(2 * 2 * 21 / 0.5)
    off = make_service(privacy={"mechanism": "off"}, store=str(svc.store.path) + "2")
    assert "learn a user's group" in off.fairness()["privacy"]["warning"]


def test_discrete_laplace_distribution() -> None:
    rng = np.random.default_rng(0)
    t = np.full(200_000, 3.0)
    z = discrete_laplace(t, 1.0 - rng.random((2, len(t))))
    assert z.dtype == np.int64
    p = math.exp(-1 / 3)
    for k in (0, 1, 4):  # P(z = k) = (1 - p) / (1 + p) p^|k|
        want = (1 - p) / (1 + p) * p**k
        assert np.mean(z == k) == pytest.approx(want, abs=0.004)
        assert np.mean(z == -k) == pytest.approx(want, abs=0.004)
    assert z.var() == pytest.approx(discrete_laplace_var(3.0), rel=0.03)


def _planted_monitor(seed: int, n_users: int = 20_000):
    """Gender F (40%) clicks 10% of 10 impressions, M 5%: exact truth known."""
    rng = np.random.default_rng(1000 + seed)
    female = rng.random(n_users) < 0.4
    groups = {"gender": pd.Categorical(np.where(female, "F", "M"), categories=["F", "M"])}
    long_tail = np.zeros(50, dtype=bool)
    mon = FairnessMonitor(
        groups,
        long_tail,
        privacy=PrivacyConfig(max_events_per_user=C, release_every=10_000, seed=seed),
    )
    users = np.repeat(np.arange(n_users), 10)
    ctr = np.where(female[users], 0.10, 0.05)
    clicks = users[rng.random(len(users)) < ctr]
    all_users = np.concatenate([users, clicks])
    types = np.r_[np.zeros(len(users), np.int64), np.ones(len(clicks), np.int64)]
    order = rng.permutation(len(all_users))  # clicks interleaved with impressions
    all_users, types = all_users[order], types[order]
    n = len(all_users)
    mon.observe(
        np.arange(1, n + 1),
        all_users,
        np.zeros(n, np.int64),
        types,
        np.full(n, np.nan),
        np.ones(n),
    )
    imp = np.bincount(female[users].astype(int), minlength=2)[::-1]  # [F, M]
    clk = np.bincount(female[clicks].astype(int), minlength=2)[::-1]
    return mon, clk / imp


def test_group_estimates_stay_close_to_the_truth() -> None:
    """20k users, ~220k events, epsilon 1: CTR per group within its reported SE of the truth."""
    z = []
    for seed in range(6):
        mon, truth = _planted_monitor(seed)
        rows = {r["group"]: r for r in mon.snapshot()["user_groups"]["gender"]}
        assert mon.n_releases == 21
        for g, want in zip(("gender=F", "gender=M"), truth, strict=True):
            r = rows[g]
            assert not r["suppressed"] and r["ctr_se"] < 0.01
            assert abs(r["ctr"] - want) < 0.02
            z.append((r["ctr"] - want) / r["ctr_se"])
        assert rows["gender=F"]["ctr"] - rows["gender=M"]["ctr"] > 0.03  # the planted gap
        share = rows["gender=F"]["exposure_share"]
        assert share == pytest.approx(0.4, abs=0.01)
    # the reported standard errors (sampling + noise) are calibrated, not decorative
    rms = float(np.sqrt(np.mean(np.square(z))))
    assert 0.4 < rms < 1.8, z


def test_ratings_are_clipped_and_estimated() -> None:
    groups = {"gender": pd.Categorical(["F"] * 3000 + ["M"] * 3000)}
    mon = FairnessMonitor(
        groups,
        np.zeros(4, dtype=bool),
        privacy=PrivacyConfig(release_every=1000, seed=3, epsilon=4.0, max_events_per_user=2),
        rating_range=(1.0, 5.0),
    )
    users = np.arange(6000)
    values = np.where(users < 3000, 4.0, 2.0)
    values[0] = 1e9  # clipped to 5: one user cannot move the sum by more than the range
    mon.observe(users + 1, users, np.zeros(6000, np.int64), np.full(6000, 2), values, np.ones(6000))
    rows = {r["group"]: r for r in mon.snapshot()["user_groups"]["gender"]}
    assert rows["gender=F"]["mean_rating"] == pytest.approx(4.0, abs=0.1)
    assert rows["gender=M"]["mean_rating"] == pytest.approx(2.0, abs=0.1)
    assert rows["gender=F"]["mean_rating_se"] < 0.1
    assert QUANT == 100


def test_budget_periods_reset_the_cap() -> None:
    groups = {"gender": pd.Categorical(["F", "M"])}
    mon = FairnessMonitor(
        groups,
        np.zeros(2, dtype=bool),
        privacy=PrivacyConfig(release_every=5, period_releases=2, max_events_per_user=3, seed=0),
    )
    seq = iter(range(1, 1000))

    def post(n: int) -> None:
        s = [next(seq) for _ in range(n)]
        mon.observe(s, np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64),
                    np.full(n, np.nan), np.ones(n))  # fmt: skip

    post(10)  # two windows = one period: user 0 counted 3 times
    assert mon._counted[0] == 0 and mon.n_releases == 2  # new period: the cap restarts
    post(4)
    assert mon._counted[0] == 3 and mon._window["gender"][0, 1] == 3
    assert mon.privacy_report()["period"] == 1


def test_time_based_release(make_service) -> None:
    svc = make_service(
        online={"enabled": False}, privacy={"release_every": 10_000, "release_seconds": 5.0}
    )
    p = svc.pipeline
    svc.feedback([{"user_id": p.user_ids[0], "item_id": p.item_ids[0], "type": "impression"}])
    assert svc.monitor.tick() == []  # not old enough
    started = svc.monitor._window_started
    made = svc.monitor.tick(now=started + 5.0)
    assert len(made) == 1 and svc.monitor.n_releases == 1
    assert svc.monitor.tick(now=started + 100.0) == []  # an empty window is not released


def test_private_utility_gap_controller_moves_only_at_releases(make_service) -> None:
    svc = make_service(
        default_post="group_fair",
        online={
            "post": "group_fair",
            "kind": "utility_gap",
            "target": 0.0,
            "update_every": 5,
            "min_events": 1.0,
            "max_delta": 0.1,
        },
        privacy={"release_every": 100, "seed": 0},
    )
    p = svc.pipeline
    ev = [{"user_id": p.user_ids[u], "item_id": p.item_ids[0], "type": "click"} for u in range(40)]
    out = svc.feedback(ev)  # raw events alone never move a private utility_gap controller
    assert not out["adjusted"] and svc.online.strength == 0.0
    imp = [
        {"user_id": p.user_ids[u], "item_id": p.item_ids[1], "type": "impression"}
        for u in range(60)
    ]  # noqa: E501
    out = svc.feedback(imp)  # event 100: one release, one update
    assert out["adjusted"] and svc.online.n_updates == 1
    ctl = svc.fairness()["controller"]
    assert ctl["fed_by"] == "private releases" and len(ctl["adjustments"]) == 1


def test_no_monitored_attributes(make_service) -> None:
    svc = make_service(monitor_attrs=[], privacy={"release_every": 3})
    p = svc.pipeline
    svc.feedback([{"user_id": p.user_ids[0], "item_id": p.item_ids[0], "type": "impression"}] * 7)
    snap = svc.fairness()
    assert snap["user_groups"] == {} and snap["privacy"]["releases"] == 2
    assert snap["item_groups"][0]["impressions"] + snap["item_groups"][1]["impressions"] == 7


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.integers(-3, 5),  # user code; negative = not in the training data
            st.integers(0, 2),  # impression, click, rating
            st.integers(0, 30),  # position (0 = unknown)
            st.one_of(st.floats(allow_nan=True, allow_infinity=False), st.none()),
        ),
        max_size=150,
    ),
    cap=st.integers(1, 6),
    release_every=st.integers(1, 40),
    flip=st.tuples(st.integers(0, 2), st.integers(0, 3)),
)
def test_one_users_attributes_move_the_releases_by_at_most_the_sensitivity(
    data, cap, release_every, flip
) -> None:
    """The bound the guarantee rests on: changing user 0's attributes changes everything the
    monitor releases (noise off here) by at most 2 * A * (1 + 2C) in L1, in normalised units."""
    gender = ["F", "M", "F", "M", "F", "M"]
    age = ["18-24", "25-34", "35-44", "18-24", "45+", "25-34"]
    cats = {"gender": ["F", "M", "X"], "age": ["18-24", "25-34", "35-44", "45+"]}

    def released(g0: str, a0: str) -> np.ndarray:
        groups = {
            "gender": pd.Categorical([g0, *gender[1:]], categories=cats["gender"]),
            "age": pd.Categorical([a0, *age[1:]], categories=cats["age"]),
        }
        mon = FairnessMonitor(
            groups,
            np.zeros(3, dtype=bool),
            privacy=PrivacyConfig(max_events_per_user=cap, release_every=release_every, seed=0),
            rating_range=(1.0, 5.0),
        )
        mon._noise = lambda release, shape: np.zeros(shape, np.int64)  # the exact tables
        n = len(data)
        users = np.array([d[0] for d in data], dtype=np.int64)
        vals = np.array([np.nan if d[3] is None else d[3] for d in data], dtype=np.float64)
        mon.observe(
            np.arange(1, n + 1),
            users,
            np.zeros(n, np.int64),
            np.array([d[1] for d in data], dtype=np.int64),
            vals,
            np.array([d[2] for d in data], dtype=np.float64),
        )
        out = [mon._released[a] + mon._window[a] for a in ("gender", "age")]
        return np.concatenate(out).astype(np.float64) / np.array(
            [1, 1, QUANT, 1, 1, QUANT], dtype=np.float64
        )

    before = released(gender[0], age[0])
    after = released(cats["gender"][flip[0]], cats["age"][flip[1]])
    assert np.abs(after - before).sum() <= 2 * 2 * (1 + 2 * cap) + 1e-9
