"""Masked top-k over score blocks: the hot path of full-ranking evaluation and recommendation.

Scores come from any callable ``score_fn(user_codes) -> [n, n_items]`` (NumPy or torch, on any
device), so this module does not depend on models. Excluded items (training items, and
validation items when testing) are set to ``-inf`` before a partial sort; they can never be
ranked.

On a GPU the whole hot path stays there: :func:`full_ranking_topk` copies the exclusion
matrices to the scores' device once per call (:class:`~debiasrec.data.torch_csr.TorchCSR`),
masks and takes the top-k there, and brings back only the ``[n, k]`` ids and scores; its
``chunk="auto"`` sizes the user blocks to the GPU's free memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from debiasrec.data.torch_csr import TorchCSR
from debiasrec.limits import check_memory, topk_bytes

ScoreFn = Callable[[np.ndarray], "np.ndarray | torch.Tensor"]


def pad_rows(m: sp.csr_matrix, n_rows: int) -> sp.csr_matrix:
    """``m`` with empty rows appended up to ``n_rows`` (unchanged when it has that many).

    Valid/test matrices of a split have one row per original user; a training set augmented
    with appended users (:meth:`debiasrec.data.Dataset.append_users`) has more, and the extra users have no
    held-out interactions.
    """
    if m.shape[0] >= n_rows:
        return m
    indptr = np.concatenate([m.indptr, np.full(n_rows - m.shape[0], m.indptr[-1])])
    return sp.csr_matrix((m.data, m.indices, indptr), shape=(n_rows, m.shape[1]))


#: ``chunk="auto"``: users per block on the CPU (and the first block anywhere).
DEFAULT_CHUNK = 2048
#: ``chunk="auto"`` on a GPU: the blocks' scores take at most this share of the free memory.
GPU_MEMORY_SHARE = 0.25


def auto_chunk(device: torch.device, n_items: int, default: int = DEFAULT_CHUNK) -> int:
    """Users per scoring block: ``default`` on the CPU; on CUDA as many as
    :data:`GPU_MEMORY_SHARE` of the free memory holds at ~3 float32 copies of a block (scores,
    masked copy, top-k work space), at least ``default`` and at most 65,536."""
    if device.type != "cuda":
        return default
    free, _ = torch.cuda.mem_get_info(device)
    per_user = max(int(n_items), 1) * 4 * 3
    return int(max(default, min(65_536, (free * GPU_MEMORY_SHARE) // per_user)))


def mask_rows(
    scores: torch.Tensor,
    users: np.ndarray | torch.Tensor,
    exclude: Sequence[sp.csr_matrix | TorchCSR],
) -> None:
    """Set ``scores[r, j] = -inf`` in place for every item ``j`` of ``users[r]`` in ``exclude``.

    ``exclude`` may hold SciPy CSR matrices (their entries are gathered on the host and moved to
    the scores' device once per call) or :class:`TorchCSR` matrices (gathered where they live).
    """
    for mat in exclude:
        if isinstance(mat, TorchCSR):
            r, c, _ = mat.entries(torch.as_tensor(users, dtype=torch.long))
            scores[r.to(scores.device), c.to(scores.device)] = float("-inf")
            continue
        users = np.asarray(users)
        indptr = mat.indptr
        starts, ends = indptr[users], indptr[users + 1]
        lens = ends - starts
        total = int(lens.sum())
        if total == 0:
            continue
        rows = np.repeat(np.arange(len(users)), lens)
        offs = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        cols = mat.indices[np.repeat(starts, lens) + offs]
        r_t, c_t = torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))
        if scores.device.type != "cpu":
            r_t, c_t = r_t.to(scores.device), c_t.to(scores.device)
        scores[r_t, c_t] = float("-inf")


def topk_from_scores(
    scores: torch.Tensor | np.ndarray,
    k: int,
    users: np.ndarray | None = None,
    exclude: Sequence[sp.csr_matrix | TorchCSR] = (),
    *,
    inplace: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` item codes and scores per row after masking ``exclude`` for ``users``.

    A torch ``scores`` block is masked and ranked on its device; the results come back to the
    host as NumPy arrays.

    Rows where fewer than ``k`` items remain are padded with item ``-1`` and score ``-inf``.
    ``inplace=True`` lets the masking overwrite ``scores`` (saves a copy of the block) where that
    cannot reach other memory: a torch tensor or a NumPy array that owns its writable memory. A
    NumPy view (e.g. ``np.broadcast_to(pop, ...)``, whose rows share one memory row) is copied.
    """
    if isinstance(scores, np.ndarray) and (
        not scores.flags.writeable or (exclude and not (inplace and scores.flags.owndata))
    ):
        # Writing through a view would change the caller's array and, for a broadcast view,
        # mask every user's items in every row.
        scores = np.array(scores, dtype=np.float32)
        inplace = True
    s = torch.as_tensor(scores, dtype=torch.float32)
    if exclude:
        if users is None:
            raise ValueError("users are needed to mask excluded items")
        if not inplace and (s.data_ptr() == torch.as_tensor(scores).data_ptr()):
            s = s.clone()
        mask_rows(s, np.asarray(users), exclude)
    k_eff = min(k, s.shape[1])
    vals, idx = torch.topk(s, k_eff, dim=1, largest=True, sorted=True)
    items = idx.cpu().numpy().astype(np.int64)
    vals_np = vals.cpu().numpy()
    items[~np.isfinite(vals_np) & (vals_np < 0)] = -1
    if k_eff < k:
        pad = k - k_eff
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        vals_np = np.pad(vals_np, ((0, 0), (0, pad)), constant_values=-np.inf)
    return items, vals_np


def iter_chunks(users: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    """Consecutive blocks of ``users`` of at most ``chunk`` codes."""
    for start in range(0, len(users), chunk):
        yield users[start : start + chunk]


def full_ranking_topk(
    score_fn: ScoreFn,
    users: np.ndarray,
    k: int,
    exclude: Sequence[sp.csr_matrix] = (),
    *,
    chunk: int | Literal["auto"] = DEFAULT_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` over the whole catalog for ``users``, scored in chunks (memory bounded).

    Args:
        score_fn: maps user codes to a score block ``[len(block), n_items]`` (NumPy, or torch
            on any device: a GPU block is masked and ranked there).
        users: user codes to rank for.
        k: list length.
        exclude: user x item matrices whose nonzeros must never be ranked (training items, and
            validation items when evaluating on test).
        chunk: users per block; peak memory is ``chunk * n_items * 4`` bytes of scores.
            ``"auto"``: :data:`DEFAULT_CHUNK` on the CPU; on a GPU sized to its free memory
            after the first block (:func:`auto_chunk`).
    """
    users = np.asarray(users, dtype=np.int64)
    check_memory(
        topk_bytes(len(users), k),
        setting="k (eval.ks)",
        what=f"top-{k:,} lists of {len(users):,} users",
    )
    out_items = np.empty((len(users), k), dtype=np.int64)
    out_scores = np.empty((len(users), k), dtype=np.float32)
    size = DEFAULT_CHUNK if chunk == "auto" else int(chunk)
    masks: Sequence[sp.csr_matrix | TorchCSR] = exclude
    start = 0
    while start < len(users):
        block = users[start : start + size]
        with torch.no_grad():
            scores = score_fn(block)
        if start == 0 and isinstance(scores, torch.Tensor) and scores.device.type != "cpu":
            # On a GPU: the exclusion matrices go there once; blocks grow to fit its memory.
            masks = [TorchCSR(m, scores.device) for m in exclude]
            if chunk == "auto":
                size = auto_chunk(scores.device, int(scores.shape[1]), size)
        items, vals = topk_from_scores(scores, k, block, masks, inplace=True)
        out_items[start : start + len(block)] = items
        out_scores[start : start + len(block)] = vals
        start += len(block)
    return out_items, out_scores
