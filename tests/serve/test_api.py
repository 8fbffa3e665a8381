"""The HTTP API through FastAPI's TestClient: recommendations, explanations, cold start, 4xx."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from debiasrec.serve import create_app


def _user_with_history(svc) -> tuple[str, int]:
    p = svc.pipeline
    counts = np.diff(p.history.indptr)
    code = int(np.argmax(counts))
    return p.user_ids[code], code


def test_health_and_openapi(client) -> None:
    h = client.get("/health")
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok" and body["model"] == "itemknn" and body["store"] == "sqlite"
    assert body["n_items"] == 60 and body["events"] == 0
    spec = client.get("/openapi.json").json()
    assert {"/recommend", "/feedback", "/fairness", "/health"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_recommend_known_user_masks_history_and_explains(client) -> None:
    svc = client.service
    p = svc.pipeline
    uid, code = _user_with_history(svc)
    r = client.get("/recommend", params={"user_id": uid, "k": 5, "post": "none"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cold_start"] is None and body["post"] is None
    assert body["explanation_method"] == "itemknn_similarity"
    items = [it["item_id"] for it in body["items"]]
    assert [it["rank"] for it in body["items"]] == [1, 2, 3, 4, 5]
    assert len(set(items)) == 5
    seen = {p.item_ids[i] for i in p.seen[code].indices}
    assert not seen & set(items)
    # post=none is exactly the model's own masked top-k
    ref = p.model.recommend(np.array([code]), 5, exclude=[p.split.valid.csr()])
    assert items == [p.item_ids[i] for i in ref.items[0]]
    # explanations: training-history items, weights = the ItemKNN contributions W[i, j]
    history = set(p.history[code].indices.tolist())
    w = p.model.item_similarity()
    for it in body["items"]:
        j = p.item_code(it["item_id"])
        weights = [b["weight"] for b in it["because"]]
        assert weights == sorted(weights, reverse=True)
        assert len(it["because"]) <= svc.config.n_explain
        for b in it["because"]:
            i = p.item_code(b["item_id"])
            assert i in history
            assert b["weight"] == pytest.approx(w[i, j], abs=1e-5)


@pytest.mark.parametrize(
    ("model", "method"), [("pop", "cooccurrence_cosine"), ("bpr", "embedding_cosine")]
)
def test_explanations_for_other_models(make_service, model, method) -> None:
    svc = make_service(model=model, default_post="none")
    uid, code = _user_with_history(svc)
    out = svc.recommend(uid, 4)
    assert out["explanation_method"] == method and out["model"] == model
    history = {svc.pipeline.item_ids[i] for i in svc.pipeline.history[code].indices}
    assert any(it["because"] for it in out["items"])
    assert all(b["item_id"] in history for it in out["items"] for b in it["because"])


@pytest.mark.parametrize(
    "post", ["exposure", "group_fair", "calibrated", "popularity", "diversity"]
)
def test_every_post_processor(client, post) -> None:
    uid, _ = _user_with_history(client.service)
    r = client.get("/recommend", params={"user_id": uid, "k": 6, "post": post})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["post"] == post and len(body["items"]) == 6
    assert 0.0 <= body["strength"] <= 1.0


def test_exposure_post_raises_long_tail_share(make_service) -> None:
    svc = make_service(strengths={"exposure": 1.0}, online={"enabled": False})
    p = svc.pipeline
    users = np.arange(p.n_users)
    base = p.recommend_codes(users, 10, "none")
    fair = p.recommend_codes(users, 10, "exposure", 1.0)
    share = lambda r: p.long_tail[r.items[r.items >= 0]].mean()  # noqa: E731
    assert share(fair) > share(base)


def test_cold_start(client) -> None:
    p = client.service.pipeline
    r = client.get("/recommend", params={"user_id": "nobody", "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["cold_start"]["policy"] == "popularity"
    assert [it["item_id"] for it in body["items"]] == [p.item_ids[i] for i in p.popular[:3]]
    assert body["post"] is None and all(it["because"] == [] for it in body["items"])
    r = client.get("/recommend", params={"user_id": "nobody", "user_text": "likes jazz"})
    assert r.status_code == 200
    assert "text-based cold start is not available" in r.json()["cold_start"]["reason"]
    r = client.get("/recommend", params={"user_id": "nobody", "cold_start": "error"})
    assert r.status_code == 404 and "unknown user 'nobody'" in r.json()["detail"]


def test_recommend_4xx(client) -> None:
    uid, _ = _user_with_history(client.service)
    k_max = client.service.config.k_max
    cases = [
        ({"user_id": uid, "k": 0}, "k"),
        ({"user_id": uid, "k": k_max + 1}, "k"),
        ({"user_id": uid, "k": "ten"}, "k"),
        ({}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "x" * 500}, "user_id"),
        ({"user_id": uid, "post": "magic"}, "unknown post-processor 'magic'"),
        ({"user_id": uid, "cold_start": "guess"}, "cold_start"),
    ]
    for params, needle in cases:
        r = client.get("/recommend", params=params)
        assert r.status_code == 422, (params, r.text)
        assert needle in r.json()["detail"], (params, r.json())


def _event(uid, iid, typ="impression", **kw):
    return {"user_id": uid, "item_id": iid, "type": typ, **kw}


def test_feedback_4xx(make_service) -> None:
    svc = make_service(max_events=5, max_body_bytes=2048)
    p = svc.pipeline
    uid, iid = p.user_ids[0], p.item_ids[0]
    with TestClient(create_app(svc)) as c:

        def post(payload, status, needle, **kw):
            r = c.post("/feedback", **({"json": payload} if payload is not None else kw))
            assert r.status_code == status, (payload, kw, r.text)
            assert needle in r.json()["detail"], r.json()

        post(
            None,
            400,
            "malformed JSON",
            content=b'{"events": [',
            headers={"content-type": "application/json"},
        )
        post({"events": []}, 422, "events")
        post({}, 422, "events")
        post({"events": [_event(uid, "no-such-item")]}, 422, "unknown item_id 'no-such-item'")
        post({"events": [_event(uid, iid, "purchase")]}, 422, "type")
        post({"events": [_event(uid, iid, "rating")]}, 422, "rating needs a finite 'value'")
        post({"events": [_event(uid, iid, position=0)]}, 422, "position")
        post({"events": [_event(uid, iid, gender="F")]}, 422, "gender")
        post({"events": [_event(uid, iid)] * 6}, 413, "too many events")
        big = {"events": [_event(uid, iid, request_id="r" * 100)] * 5, "pad": "x" * 3000}
        post(big, 413, "too large")

        def chunks():
            yield b'{"events": ['
            for _ in range(40):
                yield json.dumps(_event(uid, iid)).encode() + b","
            yield json.dumps(_event(uid, iid)).encode() + b"]}"

        post(None, 413, "too large", content=chunks(), headers={"content-type": "application/json"})
        assert svc.store.count() == 0  # nothing refused was stored


def test_sensitive_attributes_never_returned(client) -> None:
    svc = client.service
    p = svc.pipeline
    users = p.dataset.users_frame()
    uid, _ = _user_with_history(svc)
    texts = []
    for params in ({"user_id": uid}, {"user_id": uid, "post": "group_fair"}, {"user_id": "new"}):
        texts.append(client.get("/recommend", params=params).text)
    events = [_event(u, p.item_ids[1], "click") for u in p.user_ids[:20]]
    events += [_event(u, p.item_ids[1], position=1) for u in p.user_ids[:20]]
    texts.append(client.post("/feedback", json={"events": events}).text)
    texts.append(client.get("/health").text)
    for t in texts:
        low = t.lower()
        assert "gender" not in low and '"age' not in low and "sensitive" not in low, t
    # the monitor reports aggregates only: no user ids, no per-user rows
    fair = client.get("/fairness").text
    assert "user_id" not in fair
    for u in users["user_id"]:
        assert f'"{u}"' not in fair
    groups = json.loads(fair)["user_groups"]["gender"]
    assert {g["group"] for g in groups} <= {
        "gender=F",
        "gender=M",
        "gender=(missing)",
        "(cold start)",
    }


def test_small_groups_are_suppressed(make_service) -> None:
    svc = make_service(min_group_users=3, privacy={"mechanism": "off"})
    p = svc.pipeline
    svc.feedback([_event(p.user_ids[0], p.item_ids[0], position=1)])
    rows = svc.fairness()["user_groups"]["gender"]
    row = next(r for r in rows if r["impressions"] == 1)
    assert row["suppressed"] and row["ctr"] is None and row["exposure"] is None
