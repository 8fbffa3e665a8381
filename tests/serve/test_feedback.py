"""Feedback: persisted and idempotent, the live monitor, the online controller (bounded, logged)."""

from __future__ import annotations

import re
import sqlite3

import numpy as np
import pytest

from debiasrec.serve import RequestError, ServeConfig, Service


def _ev(uid, iid, typ="impression", **kw):
    return {"user_id": uid, "item_id": iid, "type": typ, **kw}


def test_feedback_is_persisted_and_idempotent(make_service, tmp_path) -> None:
    svc = make_service()
    p = svc.pipeline
    u, i = p.user_ids[3], p.item_ids[7]
    out = svc.feedback(
        [
            _ev(u, i, position=2, event_id="a1", request_id="req"),
            _ev(u, i, "click", event_id="a2"),
            _ev(u, i, "rating", value=4.5, event_id="a3"),
            _ev("brand-new-user", i, event_id="a4"),
        ]
    )
    assert out["accepted"] == 4 and len(set(out["seq"])) == 4
    again = svc.feedback([_ev(u, i, position=2, event_id="a1", request_id="req")])
    assert again["seq"] == out["seq"][:1]  # a retried event is stored once
    assert again["duplicates"] == 1 and out["duplicates"] == 0
    con = sqlite3.connect(tmp_path / "feedback.sqlite")
    rows = con.execute(
        "SELECT event_id, user_id, item_id, type, value, position FROM events"
    ).fetchall()
    con.close()
    assert sorted(rows) == [
        ("a1", u, i, "impression", None, 2),
        ("a2", u, i, "click", None, None),
        ("a3", u, i, "rating", 4.5, None),
        ("a4", "brand-new-user", i, "impression", None, None),
    ]


def test_clicked_items_are_masked_afterwards(make_service) -> None:
    svc = make_service(default_post="none")
    uid = svc.pipeline.user_ids[5]
    first = svc.recommend(uid, 3)["items"][0]["item_id"]
    svc.feedback([_ev(uid, first, "click")])
    assert first not in [it["item_id"] for it in svc.recommend(uid, 10)["items"]]


def test_monitor_matches_the_events(make_service) -> None:
    svc = make_service(min_group_users=1, online={"enabled": False}, privacy={"mechanism": "off"})
    p = svc.pipeline
    groups = p.dataset.user_groups("gender")
    rng = np.random.default_rng(0)
    users = rng.choice(p.n_users, 80)
    items = rng.choice(p.n_items, 80)
    clicks = rng.random(80) < 0.3
    events = [
        _ev(p.user_ids[u], p.item_ids[i], position=1) for u, i in zip(users, items, strict=True)
    ]
    events += [
        _ev(p.user_ids[u], p.item_ids[i], "click")
        for u, i, c in zip(users, items, clicks, strict=True)
        if c
    ]
    svc.feedback(events)
    snap = svc.fairness()
    assert snap["events"] == len(events)
    rows = {r["group"]: r for r in snap["user_groups"]["gender"]}
    for g in groups.categories:
        sel = np.asarray(groups.codes)[users] == list(groups.categories).index(g)
        row = rows[f"gender={g}"]
        assert row["impressions"] == sel.sum()
        assert row["clicks"] == (sel & clicks).sum()
        assert row["users"] == len(set(users[sel].tolist()))
        assert row["ctr"] == pytest.approx((sel & clicks).sum() / sel.sum())
    lt = p.long_tail[items]
    items_rows = {r["group"]: r for r in snap["item_groups"]}
    assert items_rows["long_tail"]["impressions"] == lt.sum()
    assert items_rows["long_tail"]["exposure_share"] == pytest.approx(lt.mean())


def _impressions(svc, n_users, k=10):
    p = svc.pipeline
    events = []
    for u in range(n_users):
        out = svc.recommend(p.user_ids[u], k)
        events += [_ev(p.user_ids[u], it["item_id"], position=it["rank"]) for it in out["items"]]
    return events


def test_online_adjustments_are_bounded_and_logged(make_service) -> None:
    online = {
        "target": 0.95,
        "gain": 5.0,
        "max_delta": 0.04,
        "hi": 0.3,
        "update_every": 50,
        "min_events": 1.0,
    }
    svc = make_service(online=online)
    strengths = [svc.online.strength]
    for _ in range(12):
        svc.feedback(_impressions(svc, 10))  # 100 impressions -> one update each
        strengths.append(svc.online.strength)
    steps = np.diff(strengths)
    assert strengths[0] == 0.0 and max(strengths) == pytest.approx(0.3)
    assert np.all(steps >= -1e-12) and np.all(steps <= 0.04 + 1e-12)
    ctl = svc.fairness()["controller"]
    assert ctl["post"] == "exposure" and ctl["kind"] == "exposure_share"
    assert ctl["n_adjustments"] == len(ctl["adjustments"]) == 12
    assert all(
        0.0 <= a["strength"] <= 0.3 and abs(a["delta"]) <= 0.04 + 1e-12 for a in ctl["adjustments"]
    )
    logged = svc.store.adjustments()
    assert len(logged) == 12 and logged["strength"].iloc[-1] == pytest.approx(svc.online.strength)
    # the controlled strength is what requests are served with
    assert svc.recommend(svc.pipeline.user_ids[0], 5)["strength"] == svc.online.strength
    # slack lowers it again (an easy target), never below lo
    easy = make_service(
        online={**online, "target": 0.0, "init": 0.3}, store=str(svc.store.path) + "2"
    )
    for _ in range(3):
        easy.feedback(_impressions(easy, 10))
    assert easy.online.strength == pytest.approx(0.3 - 3 * 0.04)


def test_utility_gap_controller(make_service) -> None:
    svc = make_service(
        default_post="group_fair",
        online={
            "post": "group_fair",
            "kind": "utility_gap",
            "target": 0.0,
            "update_every": 20,
            "min_events": 1.0,
            "max_delta": 0.1,
        },
        privacy={"mechanism": "off"},  # raw events feed the controller (see test_privacy.py)
    )
    p = svc.pipeline
    codes = np.asarray(p.dataset.user_groups("gender").codes)
    events = []
    for u in range(40):  # one group clicks everything, the other nothing: a gap of 1
        events.append(_ev(p.user_ids[u], p.item_ids[0], position=1))
        if codes[u] == 0:
            events.append(_ev(p.user_ids[u], p.item_ids[0], "click"))
    svc.feedback(events)
    ctl = svc.fairness()["controller"]
    assert ctl["kind"] == "utility_gap" and ctl["attr"] == "gender"
    assert ctl["adjustments"][-1]["value"] == pytest.approx(1.0)
    assert svc.online.strength == pytest.approx(0.1)


def test_restart_restores_monitor_and_strength(make_service, result_dir, tmp_path) -> None:
    online = {"target": 0.95, "update_every": 50, "min_events": 1.0}
    svc = make_service(online=online)
    for _ in range(3):
        svc.feedback(_impressions(svc, 10))
    before, strength = svc.fairness(), svc.online.strength
    assert strength > 0
    svc.close()
    again = Service(
        result_dir,
        ServeConfig.model_validate(
            {"model": "itemknn", "online": online, "store": str(tmp_path / "feedback.sqlite")}
        ),
    )
    try:
        after = again.fairness()
        assert after["events"] == before["events"]
        for attr, rows in before["user_groups"].items():
            for a, b in zip(after["user_groups"][attr], rows, strict=True):
                assert (a["group"], a["users"], a["impressions"]) == (
                    b["group"],
                    b["users"],
                    b["impressions"],
                )
                assert a["exposure_share"] == pytest.approx(b["exposure_share"])
        assert again.online.strength == pytest.approx(strength)
        assert after["controller"]["n_adjustments"] == 3
    finally:
        again.close()


# ---------------------------------------------------------------------------------------------
# idempotency: counters come from what the store accepted


def _counters(svc) -> dict:
    snap = svc.fairness()
    rows = {r["group"]: r for r in snap["user_groups"]["gender"]}
    ctl = snap["controller"]
    return {
        "events": snap["events"],
        "impressions": {g: r["impressions"] for g, r in rows.items()},
        "clicks": {g: r["clicks"] for g, r in rows.items()},
        "ctr": {g: r["ctr"] for g, r in rows.items()},
        "item_impressions": [r["impressions"] for r in snap["item_groups"]],
        "buffered": ctl.get("buffered_impressions"),
        "n_adjustments": ctl.get("n_adjustments"),
    }


def test_duplicate_and_reused_event_ids_change_no_counter(make_service) -> None:
    svc = make_service(
        min_group_users=1, privacy={"mechanism": "off"}, online={"update_every": 10_000}
    )
    p = svc.pipeline
    u, i = p.user_ids[2], p.item_ids[4]
    batch = [_ev(u, i, position=1, event_id=f"imp{n}") for n in range(3)]
    batch += [_ev(u, i, "click", event_id="clk0")]
    first = svc.feedback(batch)
    assert first["duplicates"] == 0
    before = _counters(svc)
    assert before["events"] == 4 and sum(before["clicks"].values()) == 1
    for _ in range(5):  # client retries: stored once, counted once
        again = svc.feedback(batch)
        assert again["seq"] == first["seq"] and again["duplicates"] == 4
    dup_in_batch = svc.feedback([_ev(u, i, "click", event_id="clk1")] * 3)
    assert dup_in_batch["duplicates"] == 2 and len(set(dup_in_batch["seq"])) == 1
    after = _counters(svc)
    assert after["events"] == 5 == svc.store.count()
    assert sum(after["clicks"].values()) == 2 and sum(after["impressions"].values()) == 3
    assert max(v for v in after["ctr"].values() if v is not None) <= 1.0
    assert after["buffered"] == before["buffered"] == 3  # the controller saw each impression once
    # a reused id with another payload: refused (409), nothing of that request is stored
    with pytest.raises(RequestError, match="event_id 'imp0' was already used") as err:
        svc.feedback(
            [_ev(u, i, position=1, event_id="new1"), _ev(u, i, position=2, event_id="imp0")]
        )
    assert err.value.status == 409 and "differs in: position" in str(err.value)
    with pytest.raises(RequestError, match="'dup' was already used"):  # ... also inside a batch
        svc.feedback([_ev(u, i, event_id="dup"), _ev(u, i, "click", event_id="dup")])
    assert svc.store.count() == 5 and _counters(svc) == after


def test_reused_event_id_over_http_is_409(client) -> None:
    p = client.service.pipeline
    ev = _ev(p.user_ids[0], p.item_ids[0], event_id="x1")
    assert client.post("/feedback", json={"events": [ev]}).status_code == 200
    r = client.post("/feedback", json={"events": [{**ev, "type": "click"}]})
    assert r.status_code == 409 and "differs in: type" in r.json()["detail"]
    assert client.service.store.count() == 1


@pytest.mark.parametrize("mechanism", ["off", "laplace"])
def test_concurrent_posts_count_each_event_once(make_service, mechanism) -> None:
    import threading

    svc = make_service(
        min_group_users=1,
        privacy={"mechanism": mechanism, "release_every": 25, "seed": 0},
        online={"update_every": 10_000},
    )
    p = svc.pipeline
    rng = np.random.default_rng(0)
    pool = [
        _ev(p.user_ids[int(rng.integers(p.n_users))], p.item_ids[int(rng.integers(p.n_items))],
            "impression" if n % 4 else "click", position=1, event_id=f"e{n}")
        for n in range(120)
    ]  # fmt: skip
    errors = []

    def worker(w: int) -> None:
        r = np.random.default_rng(w)
        try:
            for _ in range(15):  # overlapping ids across threads and retries
                idx = sorted(set(r.integers(0, len(pool), 8).tolist()))
                svc.feedback([pool[k] for k in idx])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = svc.store.events()
    assert stored["event_id"].is_unique
    snap = svc.fairness()
    assert snap["events"] == len(stored) == svc.store.count()
    imps = int((stored["type"] == "impression").sum())
    assert sum(r["impressions"] for r in snap["item_groups"]) == imps
    assert sum(r["clicks"] for r in snap["item_groups"]) == len(stored) - imps
    assert snap["controller"]["buffered_impressions"] == imps
    if mechanism == "off":
        assert sum(r["impressions"] for r in snap["user_groups"]["gender"]) == imps
    else:  # windows of exactly 25 accepted events, in store order
        ends = [r.end_seq for r in svc.store.releases(svc.monitor.series)]
        assert ends == stored["seq"].tolist()[24::25][: len(ends)]
        assert len(ends) == len(stored) // 25


def test_invalid_events_are_refused_before_anything_is_stored(make_service) -> None:
    svc = make_service()
    p = svc.pipeline
    good = _ev(p.user_ids[0], p.item_ids[0])
    cases = [
        ({"item_id": p.item_ids[0], "type": "click"}, "events[1].user_id is required"),
        ({**good, "type": "purchase"}, "events[1].type must be one of"),
        ({**good, "position": 2.5}, "events[1].position must be an integer"),
        ({**good, "position": True}, "events[1].position must be an integer"),
        ({**good, "position": 0}, "events[1].position must be an integer"),
        ({**good, "value": "high"}, "events[1].value must be a number"),
        ({**good, "type": "rating", "value": float("nan")}, "events[1].value must be finite"),
        ({**good, "type": "rating"}, "a rating needs a finite 'value'"),
        ({**good, "type": "rating", "value": 1e300}, "events[1].value: a rating must lie in ["),
        ({**good, "event_id": ""}, "events[1].event_id must be a string"),
        ({**good, "user_id": ["u1"]}, "events[1].user_id is required"),
        ({**good, "gender": "F"}, "unknown field(s) ['gender']"),
        ("click", "events[1] must be an object"),
    ]
    for bad, needle in cases:
        with pytest.raises(RequestError, match=re.escape(needle)):
            svc.feedback([good, bad])
    assert svc.store.count() == 0 and svc.fairness()["events"] == 0
