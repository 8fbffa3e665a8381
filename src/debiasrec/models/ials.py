"""iALS: weighted matrix factorisation for implicit feedback (Hu, Koren & Volinsky, ICDM 2008).

Every user x item cell is a target: ``p_ui = 1`` for observed pairs, ``0`` otherwise, with
confidence ``c_ui = 1 + alpha`` on observed pairs and ``1`` elsewhere. With user factors ``x_u``
and item factors ``y_i`` the objective is

    L = sum_{u,i} c_ui (p_ui - x_u^T y_i)^2 + sum_u reg_u ||x_u||^2 + sum_i reg_i ||y_i||^2

minimised by alternating exact least-squares steps: with ``Y`` fixed, user ``u``'s factors solve

    (Y^T Y + alpha * sum_{i in I_u} w_ui y_i y_i^T + reg_u I) x_u = (1 + alpha) sum_{i in I_u} w_ui y_i

(and symmetrically for items). ``reg_u = reg * n_u^reg_exponent`` with ``n_u`` the user's summed
pair weights (``reg_exponent = 0``: the constant regularisation of Hu et al. and of implicit;
``1``: frequency-scaled as in Zhou et al. 2008 and Rendle et al., "Revisiting the performance of
iALS on item recommendation benchmarks", RecSys 2022).

Solvers (``solver``):

* ``"cg"`` (default): a few conjugate-gradient steps per half-iteration, warm-started from the
  previous factors (Takács, Pilászy & Tikk, RecSys 2011; implicit's default). Matrix-vector
  products never form the ``d x d`` systems: ``Y^T Y p`` is one dense product for all users and
  the data term is one sampled dense-dense product (the per-pair dots ``<p_u, y_i>``) followed by
  one sparse-dense product, all over the whole CSR matrix at once (``O(nnz * d)`` per step).
* ``"cholesky"``: exact solves, the systems of a block of users built from their zero-padded
  item factors (``torch.bmm``) and solved with ``torch.linalg.cholesky_ex`` (``O(nnz * d^2 +
  n * d^3)`` per half-iteration: slower, for checks and small data).

Weighted training data (``Dataset.weights``): a pair's *observed* term counts ``w_ui`` times, i.e.
``L = sum_all (x_u^T y_i)^2 + sum_obs w_ui [(1 + alpha)(1 - x_u^T y_i)^2 - (x_u^T y_i)^2] + reg``,
which for ``w = 1`` is the objective above, for ``w = 0`` treats the pair as unobserved and for
``w = k`` acts like ``k`` copies of the observation (the normal equations above). The score of
``(u, i)`` is ``x_u^T y_i``; ``x_u`` is the user representation (leakage probes, adversaries
that act on a fitted representation).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.models.base import MODELS, ModelConfig, Recommender
from debiasrec.models.capabilities import (
    ItemEmbeddings,
    UserEmbeddings,
    WeightedTraining,
)
from debiasrec.random import np_rng


class IALSConfig(ModelConfig):
    """iALS hyper-parameters (defaults chosen on ML-100K validation, benchmarks/RESULTS.md)."""

    dim: int = Field(128, ge=1, description="number of latent factors")
    alpha: float = Field(1.0, ge=0.0, description="confidence of an observed pair: 1 + alpha")
    reg: float = Field(2.0, ge=0.0, description="L2 weight on user and item factors")
    reg_exponent: float = Field(
        0.5, ge=0.0, le=1.0, description="reg_u = reg * (summed pair weights of u) ** exponent"
    )
    iterations: int = Field(15, ge=1, description="alternating half-iteration pairs")
    solver: Literal["cg", "cholesky"] = "cg"
    cg_steps: int = Field(3, ge=1, description="conjugate-gradient steps per half-iteration")
    init_std: float = Field(0.01, gt=0.0, description="std of the Gaussian initial factors")
    block: int = Field(1024, ge=1, description="rows per block of the Cholesky solver")


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: Any) -> torch.Tensor:
    # Built from a canonical scipy CSR matrix: the invariants hold, skip the checks.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=False)


def _csr_tensor(m: sp.csr_matrix, values: np.ndarray) -> torch.Tensor:
    return _csr(
        torch.from_numpy(m.indptr.astype(np.int64)),
        torch.from_numpy(m.indices.astype(np.int64)),
        torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)),
        m.shape,
    )


class _Side:
    """One side of the alternation: the CSR rows to solve for and their per-pair weights."""

    def __init__(self, csr: sp.csr_matrix, weights: np.ndarray, cfg: IALSConfig) -> None:
        self.csr = csr
        self.w = weights.astype(np.float32)
        self.pattern = _csr_tensor(csr, np.ones(csr.nnz, np.float32))
        self.cw = _csr_tensor(csr, self.w)  # w_ui
        self.aw = torch.from_numpy(cfg.alpha * self.w)  # alpha * w_ui, CSR order
        rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        n_w = np.bincount(rows, weights=self.w, minlength=csr.shape[0])
        self.reg = torch.from_numpy(
            (cfg.reg * np.power(np.maximum(n_w, 1e-12), cfg.reg_exponent)).astype(np.float32)
            if cfg.reg_exponent > 0
            else np.full(csr.shape[0], cfg.reg, np.float32)
        )[:, None]


def _solve_cg(
    side: _Side, x: torch.Tensor, y: torch.Tensor, alpha: float, steps: int
) -> torch.Tensor:
    """``steps`` CG steps on every row's normal equations, warm-started from ``x``."""
    gram = y.T @ y
    b = (1.0 + alpha) * torch.sparse.mm(side.cw, y)

    def matvec(p: torch.Tensor) -> torch.Tensor:
        dots = torch.sparse.sampled_addmm(side.pattern, p, y.T, beta=0.0)
        weighted = _csr(dots.crow_indices(), dots.col_indices(), dots.values() * side.aw, dots.shape)
        return p @ gram + side.reg * p + torch.sparse.mm(weighted, y)

    r = b - matvec(x)
    p = r.clone()
    rs = (r * r).sum(1, keepdim=True)
    for _ in range(steps):
        ap = matvec(p)
        denom = (p * ap).sum(1, keepdim=True)
        step = torch.where(denom > 0, rs / torch.where(denom > 0, denom, 1.0), 0.0)
        x = x + step * p
        r = r - step * ap
        rs_new = (r * r).sum(1, keepdim=True)
        beta = torch.where(rs > 0, rs_new / torch.where(rs > 0, rs, 1.0), 0.0)
        p = r + beta * p
        rs = rs_new
    return x


def _solve_cholesky(side: _Side, y: torch.Tensor, alpha: float, block: int) -> torch.Tensor:
    """Exact solves of every row's normal equations (blocks of ``block`` rows of similar length)."""
    n, d = side.csr.shape[0], y.shape[1]
    gram = y.T @ y
    b = (1.0 + alpha) * torch.sparse.mm(side.cw, y)
    out = torch.empty(n, d, dtype=y.dtype)
    indptr = side.csr.indptr
    counts = np.diff(indptr)
    order = np.argsort(counts, kind="stable")  # similar lengths per block: little padding
    eye = torch.eye(d, dtype=y.dtype)
    for lo in range(0, n, block):
        rows = order[lo : lo + block]
        cnt = counts[rows]
        length = int(cnt.max(initial=0))
        a = gram.expand(len(rows), d, d) + side.reg[rows][:, :, None] * eye
        if length:
            # Zero-padded [rows, length] item indices and sqrt(alpha * w) of this block.
            valid = np.arange(length)[None, :] < cnt[:, None]
            src = (indptr[rows][:, None] + np.arange(length)[None, :])[valid]
            idx = np.zeros((len(rows), length), np.int64)
            idx[valid] = side.csr.indices[src]
            sw = np.zeros((len(rows), length), np.float32)
            sw[valid] = np.sqrt(alpha * side.w[src])
            yg = y[torch.from_numpy(idx)] * torch.from_numpy(sw)[:, :, None]
            a = a + yg.transpose(1, 2) @ yg
        chol, _ = torch.linalg.cholesky_ex(a)
        rows_t = torch.from_numpy(rows)
        out[rows_t] = torch.cholesky_solve(b[rows_t][:, :, None], chol)[:, :, 0]
    return out


@MODELS.register
class IALS(Recommender[IALSConfig], UserEmbeddings, ItemEmbeddings, WeightedTraining):
    """Implicit-feedback ALS (weighted matrix factorisation), CG or exact Cholesky solves."""

    name = "ials"
    Config = IALSConfig

    def _fit(
        self, train: Dataset, *, valid: Dataset | None, rng: int | np.random.Generator | None
    ) -> None:
        cfg = self.config
        gen = np_rng(rng)
        csr = train.csr()
        w = train.pair_weights()
        users = _Side(csr, w, cfg)
        # Item side: the transposed matrix with the same weights.
        wt = sp.csr_matrix((w, csr.indices, csr.indptr), shape=csr.shape).T.tocsr()
        wt.sort_indices()
        items = _Side(sp.csr_matrix((np.ones(wt.nnz, np.float32), wt.indices, wt.indptr),
                                    shape=wt.shape), wt.data, cfg)  # fmt: skip
        n_u, n_i = csr.shape
        y = torch.from_numpy((gen.standard_normal((n_i, cfg.dim)) * cfg.init_std).astype(np.float32))
        x = torch.zeros(n_u, cfg.dim)
        with torch.no_grad():
            for _ in range(cfg.iterations):
                if cfg.solver == "cg":
                    x = _solve_cg(users, x, y, cfg.alpha, cfg.cg_steps)
                    y = _solve_cg(items, y, x, cfg.alpha, cfg.cg_steps)
                else:
                    x = _solve_cholesky(users, y, cfg.alpha, cfg.block)
                    y = _solve_cholesky(items, x, cfg.alpha, cfg.block)
        self.user_factors_ = x.numpy()
        self.item_factors_ = y.numpy()

    def _score(self, users: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(self.user_factors_)[torch.as_tensor(users, dtype=torch.long)]
        return x @ torch.from_numpy(self.item_factors_).T

    def user_embeddings(self) -> np.ndarray:
        """User factors ``x_u`` ``[n_users, dim]``."""
        self._check_fitted()
        return self.user_factors_.copy()

    def item_embeddings(self) -> np.ndarray:
        """Item factors ``y_i`` ``[n_items, dim]``."""
        self._check_fitted()
        return self.item_factors_.copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors_ = state["user_factors"]
        self.item_factors_ = state["item_factors"]
