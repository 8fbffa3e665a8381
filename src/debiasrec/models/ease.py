"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019).

An item x item weight matrix ``B`` with a zero diagonal reconstructs the user x item matrix
``X``:

    min_B ||X - X B||_F^2 + reg ||B||_F^2   subject to diag(B) = 0

has the closed form ``P = (X^T X + reg I)^-1``, ``B_ij = -P_ij / P_jj`` (``i != j``), ``B_jj = 0``.
The score of ``(u, j)`` is ``sum_i X_ui B_ij``.

Weighted training data (``Dataset.weights``): the Gram matrix is built from ``X_w`` with entries
``sqrt(w_ui)`` (``Dataset.pair_weights``), i.e. ``G = X_w^T X_w``, the closed form of
``||X_w - X_w B||^2 + reg ||B||^2``: a user whose pairs all weigh ``k`` counts like ``k`` copies
of that user, a pair of weight 0 leaves the Gram matrix. Scoring reads the binary history ``X``.

Two paths (``method``):

* ``"dense"``: ``G`` from dense blocks of users (BLAS; one sparse product for data sparser than
  1%), ``P`` by a float32 Cholesky factorisation and inverse in torch (a few ``n_items^2``
  temporaries). The default up to ``dense_max_items``.
* ``"chunked"``: for large catalogues. ``G`` is filled block by block of ``block`` item columns
  into one column-major float32 ``n_items x n_items`` buffer, factorised and inverted *in place*
  (``torch.linalg.cholesky_ex`` and ``torch.cholesky_inverse`` with ``out=`` the same buffer:
  LAPACK ``potrf``/``potri`` without a copy), and normalised into ``B`` block by block in the
  same buffer, so the peak is one ``n_items^2`` float32 matrix (2.9 GB at ML-20M's 26,744 items)
  plus a block. (SciPy's bundled OpenBLAS ``spotrf``/``spotri`` crashed on this machine at that
  size, so the path uses torch's LAPACK, as the dense path does.)
  With ``topk`` each target item keeps only its ``topk`` largest-magnitude weights (a sparse
  ``B`` of ``n_items * topk`` entries: less memory at scoring and in the saved model, an
  approximation of the exact ``B``).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.errors import DataError
from debiasrec.models.base import MODELS, ModelConfig, Recommender
from debiasrec.models.capabilities import (
    WeightedTraining,
)


class EASEConfig(ModelConfig):
    """EASE hyper-parameters (``reg`` chosen on ML-100K validation, benchmarks/RESULTS.md)."""

    reg: float = Field(300.0, gt=0.0, description="L2 weight on B (added to the Gram diagonal)")
    method: Literal["auto", "dense", "chunked"] = Field(
        "auto", description="'auto': dense up to dense_max_items items, else chunked"
    )
    dense_max_items: int = Field(10_000, ge=1)
    block: int = Field(2048, ge=1, description="item columns per block of the chunked path")
    topk: int | None = Field(
        None, ge=1, description="keep the topk largest |B_ij| per target item j (sparse B)"
    )


def _csr_tensor(x: sp.csr_matrix) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(x.indptr.astype(np.int64)),
            torch.from_numpy(x.indices.astype(np.int64)),
            torch.from_numpy(x.data.astype(np.float32)),
            size=x.shape,
            check_invariants=False,
        )


def _weighted(train: Dataset) -> sp.csr_matrix:
    x = train.csr().astype(np.float32)
    if train.weights is None:
        return x
    xw = x.copy()
    xw.data = np.sqrt(train.pair_weights()).astype(np.float32)
    return xw


def _topk_columns(b: np.ndarray, start: int, k: int) -> tuple[np.ndarray, ...]:
    """Rows, columns (offset by ``start``) and values of each column's ``k`` largest |entries|."""
    k = min(k, b.shape[0])
    top = np.argpartition(-np.abs(b), k - 1, axis=0)[:k]
    vals = np.take_along_axis(b, top, axis=0)
    cols = np.broadcast_to(np.arange(start, start + b.shape[1]), top.shape)
    keep = vals != 0
    return top[keep], cols[keep], vals[keep]


#: From this density on, the Gram matrix is summed from dense blocks of users by BLAS (ML-100K,
#: 6%: 77 ms vs 126 ms for scipy's sparse product on one thread); sparser data use the latter.
DENSE_GRAM_DENSITY = 0.01


def _gram(xw: sp.csr_matrix) -> torch.Tensor:
    """``X_w^T X_w`` as a dense float32 tensor."""
    n_u, n_i = xw.shape
    if xw.nnz < DENSE_GRAM_DENSITY * n_u * n_i:
        return torch.from_numpy((xw.T @ xw).toarray().astype(np.float32, copy=False))
    g = torch.zeros(n_i, n_i)
    rows = max(1, (1 << 24) // max(n_i, 1))  # blocks of ~64 MB
    for lo in range(0, n_u, rows):
        blk = torch.from_numpy(xw[lo : lo + rows].toarray())
        g.addmm_(blk.T, blk)
    return g


@MODELS.register
class EASE(Recommender[EASEConfig], WeightedTraining):
    """Closed-form item-item linear autoencoder with a zero diagonal."""

    name = "ease"
    Config = EASEConfig

    def _fit(self, train: Dataset, *, valid: Dataset | None, rng: object) -> None:
        cfg = self.config
        xw = _weighted(train)
        n = xw.shape[1]
        method = cfg.method
        if method == "auto":
            method = "dense" if n <= cfg.dense_max_items else "chunked"
        if method == "dense":
            b = self._dense(xw, cfg.reg)
            if cfg.topk is not None:
                r, c, v = _topk_columns(b, 0, cfg.topk)
                self.B_ = sp.csr_matrix((v, (r, c)), shape=(n, n), dtype=np.float32)
            else:
                self.B_ = b
        else:
            self.B_ = self._chunked(xw, cfg.reg, cfg.block, cfg.topk)
        self._x = train.csr()

    @staticmethod
    def _dense(xw: sp.csr_matrix, reg: float) -> np.ndarray:
        g = _gram(xw)
        g.diagonal().add_(reg)
        chol, info = torch.linalg.cholesky_ex(g)
        if int(info) != 0:  # pragma: no cover - G + reg I is positive definite for reg > 0
            raise DataError(f"EASE: the Gram matrix is not positive definite (info {int(info)})")
        p = torch.cholesky_inverse(chol)
        del g, chol
        d = p.diagonal().clone()
        p.div_(-d[None, :])
        p.diagonal().zero_()
        return p.numpy()

    @staticmethod
    def _chunked(
        xw: sp.csr_matrix, reg: float, block: int, topk: int | None
    ) -> np.ndarray | sp.csr_matrix:
        n = xw.shape[1]
        xc = xw.tocsc()
        xt = xw.T.tocsr()
        # Column-major storage (LAPACK's order), so that the factorisation and the inverse run
        # in place on this one buffer (torch passes it to LAPACK without a copy).
        g = torch.empty(n, n).T
        for start in range(0, n, block):
            stop = min(start + block, n)
            g[:, start:stop] = torch.from_numpy((xt @ xc[:, start:stop]).toarray())
        g.diagonal().add_(reg)
        info = torch.empty((), dtype=torch.int32)
        torch.linalg.cholesky_ex(g, out=(g, info))
        if int(info) != 0:  # pragma: no cover - G + reg I is positive definite for reg > 0
            raise DataError(f"EASE: the Gram matrix is not positive definite (info {int(info)})")
        torch.cholesky_inverse(g, out=g)  # the full symmetric P
        diag = g.diagonal().clone()
        g.diagonal().zero_()
        if topk is not None:
            # Column j of B is column j of P times -1/P_jj: the same top-k by magnitude. Columns
            # of the column-major buffer are contiguous.
            rows, cols, vals = [], [], []
            for start in range(0, n, block):
                stop = min(start + block, n)
                r, c, v = _topk_columns(g[:, start:stop].numpy(), start, topk)
                rows.append(r)
                cols.append(c)
                vals.append((v / -diag.numpy()[c]).astype(np.float32))
            del g
            return sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(n, n),
            )
        # P is symmetric, so the buffer read in row-major order is P too: normalise it as
        # B_ij = -P_ij / P_jj row block by row block and return it C-contiguous (fast row
        # gathers when scoring), still without a second n x n buffer.
        b = g.T
        for start in range(0, n, block):
            b[start : min(start + block, n)].div_(-diag[None, :])
        return b.numpy()

    def _score(self, users: np.ndarray) -> np.ndarray | torch.Tensor:
        x = self._x[users]
        if sp.issparse(self.B_):
            return (x @ self.B_).toarray()
        # sum of the history's rows of B: a sparse x dense product on torch's threads
        xt = _csr_tensor(x)
        return torch.sparse.mm(xt, torch.from_numpy(np.ascontiguousarray(self.B_)))

    def item_weights(self) -> np.ndarray | sp.csr_matrix:
        """The item x item weight matrix ``B`` (dense, or sparse with ``topk``)."""
        self._check_fitted()
        return self.B_

    def _state(self) -> dict[str, np.ndarray]:
        if sp.issparse(self.B_):
            b = self.B_.tocsr()
            return {
                "b_data": b.data.astype(np.float32),
                "b_indices": b.indices.astype(np.int64),
                "b_indptr": b.indptr.astype(np.int64),
            }
        return {"b": np.ascontiguousarray(self.B_)}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        n = self.n_items_
        if "b" in state:
            self.B_ = state["b"]
        else:
            self.B_ = sp.csr_matrix(
                (state["b_data"], state["b_indices"], state["b_indptr"]), shape=(n, n)
            )
        self._x = self.train_csr_
