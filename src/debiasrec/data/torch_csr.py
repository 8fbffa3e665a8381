"""A CSR user x item matrix held as torch tensors on a device (CPU or GPU).

What models and the evaluator need from a training matrix on a GPU, without a host round trip:
the nonzeros of a block of rows (:meth:`TorchCSR.entries`) and those rows as a dense block
(:meth:`TorchCSR.dense`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class TorchCSR:
    """``indptr``/``indices``/``data`` of a CSR matrix as tensors on ``device``.

    Args:
        csr: a ``scipy.sparse`` CSR matrix (``shape = (rows, cols)``).
        device: where the tensors live.
        data: values to use instead of ``csr.data`` (``None``: the matrix's values).
    """

    def __init__(self, csr: Any, device: torch.device | str, data: np.ndarray | None = None):
        self.shape = (int(csr.shape[0]), int(csr.shape[1]))
        self.device = torch.device(device)
        self.indptr = torch.as_tensor(np.asarray(csr.indptr, dtype=np.int64), device=self.device)
        self.indices = torch.as_tensor(np.asarray(csr.indices, dtype=np.int64), device=self.device)
        vals = csr.data if data is None else data
        self.data = torch.as_tensor(np.asarray(vals, dtype=np.float32), device=self.device)

    def entries(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(r, col, value)`` of every nonzero of ``rows`` (``r`` indexes ``rows``), row-major."""
        rows = rows.to(self.device, torch.long)
        starts = self.indptr[rows]
        lens = self.indptr[rows + 1] - starts
        total = int(lens.sum())
        r = torch.repeat_interleave(
            torch.arange(len(rows), device=self.device), lens, output_size=total
        )
        first = torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens, output_size=total)
        pos = torch.repeat_interleave(starts, lens, output_size=total)
        pos = pos + torch.arange(total, device=self.device) - first
        return r, self.indices[pos], self.data[pos]

    def dense(self, rows: torch.Tensor) -> torch.Tensor:
        """The rows as a dense float32 block ``[len(rows), cols]`` on the device."""
        r, c, v = self.entries(rows)
        out = torch.zeros((len(rows), self.shape[1]), dtype=torch.float32, device=self.device)
        out[r, c] = v
        return out


__all__ = ["TorchCSR"]
