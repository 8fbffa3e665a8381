"""Vectorised re-rankers equal straightforward per-user reference implementations."""

from __future__ import annotations

import math

import numpy as np
from _rerank_helpers import context
from hypothesis import given, settings
from hypothesis import strategies as st

from debiasrec.debias.post import (
    CalibratedReranker,
    ExposureReranker,
    GroupFairReranker,
    MMRReranker,
    candidates,
)
from debiasrec.debias.post.base import minmax_relevance, sort_candidates
from debiasrec.debias.post.exposure import minimum_counts


def _problem(seed: int, n_users: int, n_items: int, n_genres: int, ties: bool):
    rng = np.random.default_rng(seed)
    hist = (rng.random((n_users, n_items)) < 0.3).astype(float)
    genres = (rng.random((n_items, n_genres)) < 0.4).astype(float)
    hist[:, 0] = 0  # every user has a validation item (item 0) and a candidate
    valid = (rng.random((n_users, n_items)) < 0.2).astype(float) * (1 - hist)
    valid[:, 0] = 1
    scores = (
        rng.integers(0, 3, (n_users, n_items)).astype(np.float32)
        if ties
        else (rng.standard_normal((n_users, n_items)).astype(np.float32))
    )
    groups = {"gender": [["F", "M"][int(x)] for x in rng.integers(0, 2, n_users)]}
    ctx = context(hist, genres, groups=groups, valid=valid)
    return ctx, scores


def _per_user(cand, r):
    items, s, valid = sort_candidates(cand)
    rel = minmax_relevance(s, valid)
    m = int(valid[r].sum())
    return items[r, :m], rel[r, :m]


def _kl(p, q):
    return sum(pc * math.log(pc / qc) for pc, qc in zip(p, q, strict=True) if pc > 0)


def _dist(vecs):
    tot = np.sum(vecs, axis=0) if len(vecs) else None
    if tot is None or tot.sum() == 0:
        return None
    return tot / tot.sum()


def _calibrated_objectives(chosen, items, rel, p, pi, lam, alpha=0.01):
    """Reference marginal objectives of every candidate given the chosen prefix."""
    out = []
    for j in range(len(items)):
        if j in chosen:
            out.append(-math.inf)
            continue
        q = _dist([pi[items[c]] for c in [*chosen, j]])
        q = np.zeros_like(p) if q is None else q
        qt = (1 - alpha) * q + alpha * p
        out.append((1 - lam) * rel[j] - lam * _kl(p, qt))
    return np.array(out)


def _mmr_objectives(chosen, items, rel, unit, lam):
    out = []
    for j in range(len(items)):
        if j in chosen:
            out.append(-math.inf)
            continue
        red = max((float(unit[items[c]] @ unit[items[j]]) for c in chosen), default=0.0)
        out.append((1 - lam) * rel[j] - lam * red)
    return np.array(out)


def _replay(got_items, items, objectives, tol):
    """Each chosen item is (within tol) the best reference choice given the chosen prefix."""
    chosen: list[int] = []
    pos_of = {int(it): j for j, it in enumerate(items)}
    for it in got_items:
        if it < 0:
            assert len(chosen) == len(items)
            break
        j = pos_of[int(it)]
        obj = objectives(chosen)
        assert obj[j] >= np.max(obj) - tol, (chosen, j, obj)
        chosen.append(j)


sizes = dict(
    seed=st.integers(0, 2**31 - 1),
    n_users=st.integers(1, 5),
    n_items=st.integers(2, 12),
    n_genres=st.integers(1, 4),
    k=st.integers(1, 6),
    n_cand=st.integers(1, 9),
    lam=st.sampled_from([0.1, 0.5, 0.9, 1.0]),
    ties=st.booleans(),
)


@settings(max_examples=40, deadline=None)
@given(**sizes)
def test_calibrated_matches_reference(seed, n_users, n_items, n_genres, k, n_cand, lam, ties):
    ctx, scores = _problem(seed, n_users, n_items, n_genres, ties)
    cand = candidates(scores, np.arange(n_users), n=n_cand, exclude=[ctx.history])
    out = CalibratedReranker(strength=lam, k=k, n_candidates=n_cand).rerank(cand, ctx)
    feats = ctx.item_features.toarray()
    pi = feats / np.where(feats.sum(1, keepdims=True) > 0, feats.sum(1, keepdims=True), 1)
    for r in range(n_users):
        items, rel = _per_user(cand, r)
        p = _dist([pi[i] for i in np.flatnonzero(ctx.history[r].toarray().ravel())])
        p = np.zeros(n_genres) if p is None else p
        _replay(
            out.items[r],
            items,
            lambda ch, items=items, rel=rel, p=p: _calibrated_objectives(
                ch, items, rel, p, pi, lam
            ),
            tol=1e-4,
        )
        assert (out.items[r] >= 0).sum() == min(k, len(items))


@settings(max_examples=40, deadline=None)
@given(**sizes)
def test_mmr_matches_reference(seed, n_users, n_items, n_genres, k, n_cand, lam, ties):
    ctx, scores = _problem(seed, n_users, n_items, n_genres, ties)
    cand = candidates(scores, np.arange(n_users), n=n_cand, exclude=[ctx.history])
    out = MMRReranker(strength=lam, k=k, n_candidates=n_cand).rerank(cand, ctx)
    f = ctx.item_features.toarray()
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    unit = f / np.where(norm > 0, norm, 1)
    for r in range(n_users):
        items, rel = _per_user(cand, r)
        _replay(
            out.items[r],
            items,
            lambda ch, items=items, rel=rel: _mmr_objectives(ch, items, rel, unit, lam),
            tol=1e-9,
        )


@settings(max_examples=40, deadline=None)
@given(**sizes, method=st.sampled_from(["fair", "det"]))
def test_exposure_matches_reference(seed, n_users, n_items, n_genres, k, n_cand, lam, ties, method):
    ctx, scores = _problem(seed, n_users, n_items, n_genres, ties)
    cand = candidates(scores, np.arange(n_users), n=n_cand, exclude=[ctx.history])
    rr = ExposureReranker(strength=lam, k=k, n_candidates=n_cand, method=method, head_share=0.4)
    out = rr.rerank(cand, ctx)
    codes, _ = rr.item_groups(ctx)
    mins = minimum_counts(k, np.array([lam]), method, 0.1)[:, 0]
    for r in range(n_users):
        items, _ = _per_user(cand, r)
        left, chosen, n_prot = list(items), [], 0
        for t in range(min(k, len(items))):
            prot = [i for i in left if codes[i] == 1]
            pick = prot[0] if (n_prot < mins[t] and prot) else left[0]
            chosen.append(pick)
            left.remove(pick)
            n_prot += int(codes[pick] == 1)
        got = [int(x) for x in out.items[r] if x >= 0]
        assert got == chosen


@settings(max_examples=30, deadline=None)
@given(**sizes)
def test_group_fair_matches_reference(seed, n_users, n_items, n_genres, k, n_cand, lam, ties):
    ctx, scores = _problem(seed, n_users, n_items, n_genres, ties)
    cand = candidates(scores, np.arange(n_users), n=n_cand, exclude=[ctx.history])
    rr = GroupFairReranker(attr="gender", k=k, n_candidates=n_cand, min_group_users=1)
    rr = rr.fit(ctx, cand).with_strength(lam)
    out = rr.rerank(cand, ctx)
    rho_g = rr.utility_ratio()
    labels = ctx.user_groups["gender"]
    h = rr._hit_curve(n_cand)
    for r in range(n_users):
        items, _ = _per_user(cand, r)
        rho = rho_g[str(labels[r])]
        chosen: list[int] = []
        spent, base = 0.0, 0.0
        for t in range(min(k, len(items))):
            d = 1 / math.log2(t + 2)
            base += h[t] * d
            cap = rho * base * (1 + 1e-9) + 1e-15
            free = [j for j in range(len(items)) if j not in chosen]
            fits = [j for j in free if spent + h[j] * d <= cap]
            j = fits[0] if fits else free[-1]
            chosen.append(j)
            spent += h[j] * d
        got = [int(x) for x in out.items[r] if x >= 0]
        assert got == [int(items[j]) for j in chosen]


def test_calibrated_exact_on_continuous_random_case() -> None:
    ctx, scores = _problem(11, 30, 40, 5, ties=False)
    cand = candidates(scores, np.arange(30), n=20, exclude=[ctx.history])
    out = CalibratedReranker(strength=0.6, k=8, n_candidates=20).rerank(cand, ctx)
    feats = ctx.item_features.toarray()
    pi = feats / np.where(feats.sum(1, keepdims=True) > 0, feats.sum(1, keepdims=True), 1)
    for r in range(30):
        items, rel = _per_user(cand, r)
        p = _dist([pi[i] for i in np.flatnonzero(ctx.history[r].toarray().ravel())])
        p = np.zeros(5) if p is None else p
        chosen: list[int] = []
        for _ in range(8):
            chosen.append(int(np.argmax(_calibrated_objectives(chosen, items, rel, p, pi, 0.6))))
        assert out.items[r].tolist() == [int(items[j]) for j in chosen]
