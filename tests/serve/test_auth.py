"""API keys on /feedback and /fairness, the per-client rate limit, and bounded explanations."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient

from debiasrec.errors import ConfigError
from debiasrec.serve import create_app
from debiasrec.serve.app import TokenBuckets
from debiasrec.serve.config import RateLimitConfig

KEY = "k3y-" + "a" * 28
OTHER = "second-key-" + "b" * 20


@pytest.fixture()
def keyed(make_service, monkeypatch):
    monkeypatch.setenv("DEBIASREC_TEST_KEYS", f"{KEY}, {OTHER}")
    svc = make_service(api_key_env="DEBIASREC_TEST_KEYS", rate_limit={"enabled": False})
    with TestClient(create_app(svc)) as c:
        c.service = svc
        yield c


def _ev(svc):
    p = svc.pipeline
    return {"events": [{"user_id": p.user_ids[0], "item_id": p.item_ids[0], "type": "click"}]}


def test_protected_endpoints_need_a_key(keyed, caplog) -> None:
    svc = keyed.service
    caplog.set_level(logging.DEBUG)
    for method, url, kw in (("POST", "/feedback", {"json": _ev(svc)}), ("GET", "/fairness", {})):
        r = keyed.request(method, url, **kw)
        assert r.status_code == 401 and "missing API key" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
        r = keyed.request(method, url, headers={"Authorization": "Bearer wrong-key"}, **kw)
        assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
        assert "wrong-key" not in r.text
        for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": OTHER}):
            r = keyed.request(method, url, headers=headers, **kw)
            assert r.status_code == 200, r.text
            assert KEY not in r.text and OTHER not in r.text
    assert svc.store.count() == 2  # the two accepted posts only: refused ones stored nothing
    # open by default: recommendations and health
    assert keyed.get("/recommend", params={"user_id": svc.pipeline.user_ids[0]}).status_code == 200
    assert keyed.get("/health").status_code == 200
    assert KEY not in caplog.text and OTHER not in caplog.text
    assert not any(KEY in repr(v) for v in vars(svc).values())  # only digests are kept


def test_recommend_can_be_protected(make_service, monkeypatch) -> None:
    monkeypatch.setenv("DEBIASREC_TEST_KEYS", KEY)
    svc = make_service(api_key_env="DEBIASREC_TEST_KEYS", protect=["recommend"])
    with TestClient(create_app(svc)) as c:
        uid = svc.pipeline.user_ids[0]
        assert c.get("/recommend", params={"user_id": uid}).status_code == 401
        r = c.get("/recommend", params={"user_id": uid}, headers={"X-API-Key": KEY})
        assert r.status_code == 200
        assert c.get("/fairness").status_code == 200  # only what `protect` names


def test_missing_or_weak_key_fails_at_start(make_service, monkeypatch) -> None:
    monkeypatch.delenv("DEBIASREC_NO_SUCH_VAR", raising=False)
    with pytest.raises(ConfigError, match="DEBIASREC_NO_SUCH_VAR is not set"):
        make_service(api_key_env="DEBIASREC_NO_SUCH_VAR")
    monkeypatch.setenv("DEBIASREC_TEST_KEYS", " , ")
    with pytest.raises(ConfigError, match="holds no API key"):
        make_service(api_key_env="DEBIASREC_TEST_KEYS")
    monkeypatch.setenv("DEBIASREC_TEST_KEYS", "short")
    with pytest.raises(ConfigError, match="shorter than 16") as err:
        make_service(api_key_env="DEBIASREC_TEST_KEYS")
    assert "short'" not in str(err.value)  # the value is never shown
    with pytest.raises(Exception, match="api_key_env"):
        make_service(api_key_env="NOT A NAME")


def test_token_bucket_arithmetic() -> None:
    now = [0.0]
    b = TokenBuckets(RateLimitConfig(per_second=2.0, burst=3, max_clients=2), clock=lambda: now[0])
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a") == pytest.approx(0.5)  # one token comes back after 1 / 2 s
    assert b.take("b") == 0.0  # another client has its own bucket
    now[0] = 0.5
    assert b.take("a") == 0.0  # refilled at 2/s (the refused attempt took nothing)
    assert b.take("a") == pytest.approx(0.5)
    now[0] = 100.0
    assert [b.take("a") for _ in range(3)] == [0.0] * 3  # never above the burst
    assert b.take("a") > 0
    b.take("c")
    b.take("d")  # at most 2 clients kept: "a" (least recent) was dropped -> a full bucket
    assert b.take("a") == 0.0


def test_rate_limit_answers_429_per_client(make_service, monkeypatch) -> None:
    monkeypatch.setenv("DEBIASREC_TEST_KEYS", f"{KEY},{OTHER}")
    svc = make_service(
        api_key_env="DEBIASREC_TEST_KEYS", rate_limit={"per_second": 0.5, "burst": 3}
    )
    uid = svc.pipeline.user_ids[0]
    with TestClient(create_app(svc)) as c:
        codes = [c.get("/recommend", params={"user_id": uid}).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = c.get("/recommend", params={"user_id": uid})
        assert r.status_code == 429 and "rate limit exceeded" in r.json()["detail"]
        assert int(r.headers["retry-after"]) >= 1
        assert c.get("/health").status_code == 200  # exempt
        # a client with a valid key has its own bucket; wrong keys count against the address
        ok = {"X-API-Key": KEY}
        assert [c.get("/fairness", headers=ok).status_code for _ in range(4)] == [200] * 3 + [429]
        assert c.get("/fairness", headers={"X-API-Key": OTHER}).status_code == 200
        assert c.get("/fairness", headers={"X-API-Key": "x" * 20}).status_code == 429


def test_because_is_bounded_by_default(make_service) -> None:
    svc = make_service(default_post="none")
    p = svc.pipeline
    counts = np.diff(p.history.indptr)
    uid = p.user_ids[int(np.argmax(counts))]
    distinct = lambda out: {b["item_id"] for it in out["items"] for b in it["because"]}  # noqa: E731
    bounded = svc.recommend(uid, 20)
    assert 1 <= len(distinct(bounded)) <= svc.config.explain_max_items == 3
    full = make_service(default_post="none", explain="full", store=str(svc.store.path) + "f")
    assert len(distinct(full.recommend(uid, 20))) > 3  # what the default no longer shows
    # the bounded lists keep the full lists' weights for the items they keep
    fw = {
        (it["item_id"], b["item_id"]): b["weight"]
        for it in full.recommend(uid, 20)["items"]
        for b in it["because"]
    }
    for it in bounded["items"]:
        for b in it["because"]:
            assert fw[(it["item_id"], b["item_id"])] == b["weight"]
    # the top-ranked items keep their strongest contributor
    for it, ref in zip(bounded["items"][:3], full.recommend(uid, 20)["items"][:3], strict=True):
        assert it["because"][:1] == ref["because"][:1]
    off = make_service(default_post="none", explain="off", store=str(svc.store.path) + "o")
    assert distinct(off.recommend(uid, 20)) == set()
