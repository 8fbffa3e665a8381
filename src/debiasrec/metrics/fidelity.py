"""Fidelity of generated user profiles: are synthetic users like real ones, and not copies?

Profiles are binary user x item matrices (SciPy sparse or NumPy; any non-zero counts as an
interaction). Four complementary numbers:

* :func:`two_sample_auc` -- classifier two-sample test (Lopez-Paz & Oquab, "Revisiting
  Classifier Two-Sample Tests", ICLR 2017): an L2-regularised logistic regression on the
  multi-hot profiles learns real-vs-generated on one half of each set and is scored (ROC AUC)
  on the other half, and vice versa (2-fold); the mean is reported. ``0.5``: the classifier
  cannot tell them apart (ideal); ``1.0``: perfectly separable.
* :func:`popularity_distance` -- how the generated interactions spread over popular and rare
  items: the Jensen-Shannon divergence (base 2, in ``[0, 1]``) between the two item-popularity
  distributions ``p_i = n_i / sum_j n_j``, and the Wasserstein-1 distance between the
  distributions of the *popularity rank* of the interacted item (items ranked by real
  popularity, descending, ties by item code, ranks scaled to ``[0, 1]``), i.e.
  ``W1 = sum_k |F_real(k) - F_gen(k)| / (n_items - 1)`` over ranks ``k``.
* :func:`genre_distance` -- per user group, the Jensen-Shannon divergence (base 2) between the
  genre distributions of the real and the generated profiles of that group (each interaction
  adds its item's multi-hot genre row; the sum over the group's interactions is normalised to a
  distribution).
* :func:`memorisation_rate` -- share of generated profiles whose nearest training profile (by
  Jaccard similarity ``|a & b| / |a | b|``) has Jaccard ``>= threshold`` (default ``0.8``):
  near-copies of training users, a privacy and overfitting warning sign (the nearest-neighbour
  memorisation test of e.g. Webster et al., "Detecting Overfitting of Deep Generative Networks
  via Latent Recovery", CVPR 2019, with Jaccard for sets).

Pure NumPy/SciPy plus torch for the logistic regression; seeded; no per-user Python loops.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from debiasrec.errors import DataError
from debiasrec.metrics.leakage import auc
from debiasrec.random import np_rng

Profiles = Any  # scipy.sparse matrix or np.ndarray [users, items]


def _binary(x: Profiles, what: str) -> sp.csr_matrix:
    """``x`` as a binary float64 CSR matrix."""
    m = sp.csr_matrix(x, dtype=np.float64)
    if m.ndim != 2:
        raise DataError(f"{what} must be a 2-d users x items matrix, got shape {m.shape}")
    m = m.copy()
    m.eliminate_zeros()
    m.data[:] = 1.0
    return m


def _same_items(a: sp.csr_matrix, b: sp.csr_matrix) -> None:
    if a.shape[1] != b.shape[1]:
        raise DataError(
            f"real and generated profiles have different item counts ({a.shape[1]} vs {b.shape[1]})"
        )


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in ``[0, 1]``) of two non-negative vectors.

    Each vector is normalised to sum 1; ``JS = KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q)
    / 2``, with ``0 log 0 = 0``. NaN (with a warning) when a vector sums to 0.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        warnings.warn("Jensen-Shannon divergence of an empty distribution is NaN", stacklevel=2)
        return float("nan")
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(min(max(0.5 * kl(p) + 0.5 * kl(q), 0.0), 1.0))


def _fit_logreg(x: np.ndarray, y: np.ndarray, l2: float, max_iter: int) -> tuple[Any, Any]:
    """Binary logistic regression ``mean BCE + l2 ||w||^2 / (2 n)``, zero start, LBFGS."""
    import torch

    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y.astype(np.float64))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    reg = l2 / (2.0 * len(y))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt)
        loss = loss + reg * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def two_sample_auc(
    real: Profiles,
    generated: Profiles,
    *,
    l2: float = 1.0,
    max_iter: int = 200,
    rng: int | np.random.Generator | None = 0,
) -> dict[str, float]:
    """Classifier two-sample test AUC of real vs generated profiles (see module docstring).

    Each set is shuffled and cut in two halves; a logistic regression on the multi-hot rows is
    fitted on halves A (real vs generated) and scored on halves B, then the other way round.

    Args:
        real: real profiles ``[n_real, n_items]``.
        generated: generated profiles ``[n_gen, n_items]``.
        l2: L2 strength (``1 / C`` in scikit-learn's scaling).
        max_iter: LBFGS iterations per fit.
        rng: seed of the halving.

    Returns:
        ``{"auc", "auc_ab", "auc_ba", "n_real", "n_generated"}``; ``auc`` is the mean of the
        two folds. NaN (with a warning) when a set has fewer than 2 profiles.
    """
    a, b = _binary(real, "real"), _binary(generated, "generated")
    _same_items(a, b)
    out = {"n_real": float(a.shape[0]), "n_generated": float(b.shape[0])}
    if a.shape[0] < 2 or b.shape[0] < 2:
        warnings.warn("two-sample test needs >= 2 real and 2 generated profiles", stacklevel=2)
        return {"auc": float("nan"), "auc_ab": float("nan"), "auc_ba": float("nan"), **out}
    import torch

    gen = np_rng(rng)
    x = sp.vstack([a, b]).toarray()
    y = np.r_[np.zeros(a.shape[0]), np.ones(b.shape[0])].astype(np.int64)
    half = np.zeros(len(y), dtype=bool)
    for cls in (0, 1):
        idx = gen.permutation(np.flatnonzero(y == cls))
        half[idx[: len(idx) // 2]] = True
    aucs = []
    for fit_mask in (half, ~half):
        w, bias = _fit_logreg(x[fit_mask], y[fit_mask], l2, max_iter)
        with torch.no_grad():
            s = (torch.from_numpy(x[~fit_mask]) @ w + bias).numpy()
        aucs.append(auc(s, y[~fit_mask]))
    return {"auc": float(np.mean(aucs)), "auc_ab": aucs[0], "auc_ba": aucs[1], **out}


def popularity_distance(real: Profiles, generated: Profiles) -> dict[str, float]:
    """Item-popularity distribution distance of generated vs real interactions.

    Returns:
        ``{"js": Jensen-Shannon divergence (base 2) of the item distributions,
        "wasserstein_rank": W1 distance of the interacted items' popularity ranks in [0, 1]}``
        (ranks from the *real* popularity). NaN (with a warning) for an empty side.
    """
    a, b = _binary(real, "real"), _binary(generated, "generated")
    _same_items(a, b)
    n_items = a.shape[1]
    pa = np.asarray(a.sum(axis=0)).ravel()
    pb = np.asarray(b.sum(axis=0)).ravel()
    js = js_divergence(pa, pb)
    if pa.sum() <= 0 or pb.sum() <= 0:
        return {"js": js, "wasserstein_rank": float("nan")}
    order = np.lexsort((np.arange(n_items), -pa))  # rank 0 = most popular real item
    ca = np.cumsum(pa[order]) / pa.sum()
    cb = np.cumsum(pb[order]) / pb.sum()
    w1 = float(np.abs(ca - cb)[:-1].sum() / max(n_items - 1, 1))
    return {"js": js, "wasserstein_rank": w1}


def genre_distance(
    real: Profiles,
    real_groups: Sequence[Any] | np.ndarray,
    generated: Profiles,
    generated_groups: Sequence[Any] | np.ndarray,
    item_genres: Profiles,
) -> dict[str, float]:
    """Per-group Jensen-Shannon divergence (base 2) of real vs generated genre distributions.

    Args:
        real: real profiles; ``real_groups[r]`` is row ``r``'s group label.
        generated: generated profiles; ``generated_groups[r]`` likewise.
        item_genres: item x genre multi-hot matrix (e.g. ``Dataset.item_category_matrix``).

    Returns:
        ``{group label: JS}`` for every group present on either side; NaN (with a warning) where
        a side has no interaction of the group.
    """
    a, b = _binary(real, "real"), _binary(generated, "generated")
    _same_items(a, b)
    genres = sp.csr_matrix(item_genres, dtype=np.float64)
    if genres.shape[0] != a.shape[1]:
        raise DataError(
            f"item_genres has {genres.shape[0]} rows, expected one per item ({a.shape[1]})"
        )
    ga = np.asarray(real_groups, dtype=object).astype(str)
    gb = np.asarray(generated_groups, dtype=object).astype(str)
    if len(ga) != a.shape[0] or len(gb) != b.shape[0]:
        raise DataError("group labels must have one entry per profile row")
    out: dict[str, float] = {}
    for g in sorted(set(ga) | set(gb)):
        da = np.asarray((a[ga == g] @ genres).sum(axis=0)).ravel()
        db = np.asarray((b[gb == g] @ genres).sum(axis=0)).ravel()
        out[str(g)] = js_divergence(da, db)
    return out


def memorisation_rate(
    generated: Profiles, train: Profiles, *, threshold: float = 0.8, chunk: int = 1024
) -> dict[str, float]:
    """Share of generated profiles whose nearest training profile has Jaccard ``>= threshold``.

    Jaccard ``|a & b| / |a | b|`` (0 when both are empty) of every generated row with every
    training row, computed blockwise with sparse products.

    Returns:
        ``{"rate", "mean_max_jaccard", "threshold"}``; NaN (with a warning) for no generated
        profiles.
    """
    if not 0.0 < threshold <= 1.0:
        raise DataError(f"threshold must lie in (0, 1], got {threshold}")
    g, t = _binary(generated, "generated"), _binary(train, "train")
    _same_items(t, g)
    if g.shape[0] == 0:
        warnings.warn("memorisation rate of no generated profiles is NaN", stacklevel=2)
        return {"rate": float("nan"), "mean_max_jaccard": float("nan"), "threshold": threshold}
    len_g = np.asarray(g.sum(axis=1)).ravel()
    len_t = np.asarray(t.sum(axis=1)).ravel()
    tt = t.T.tocsc()
    best = np.zeros(g.shape[0])
    for start in range(0, g.shape[0], chunk):
        stop = min(start + chunk, g.shape[0])
        inter = (g[start:stop] @ tt).toarray()
        union = len_g[start:stop, None] + len_t[None, :] - inter
        jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        best[start:stop] = jac.max(axis=1) if jac.shape[1] else 0.0
    return {
        "rate": float(np.mean(best >= threshold - 1e-12)),
        "mean_max_jaccard": float(best.mean()),
        "threshold": threshold,
    }


__all__ = [
    "genre_distance",
    "js_divergence",
    "memorisation_rate",
    "popularity_distance",
    "two_sample_auc",
]
