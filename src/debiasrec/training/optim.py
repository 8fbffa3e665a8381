"""Row-sparse ("lazy") Adam for embedding tables.

With a dense optimizer every step reads and writes the *whole* user and item tables (the
parameter, its gradient and both moment buffers), although a batch touches only a few thousand
rows. On ML-100K that is cheap; on ML-20M-sized data (165k rows x 128) it makes a BPR epoch cost
``batches x table size`` instead of ``batches x batch size`` -- x103 time for x20 data, 150 s
per epoch at 20M interactions against 44 s row-sparse (``benchmarks/RESULTS.md``, "Scaling"). :class:`LazyAdam` updates only the rows that have a gradient:

* a **sparse** gradient (``nn.Embedding(sparse=True)``, coalesced: one entry per touched row)
  updates the moments and the parameter of those rows only; rows outside the batch keep their
  value and moments (no momentum drift while they are absent) -- the update rule of TensorFlow's
  ``LazyAdam`` and of ``torch.optim.SparseAdam``;
* a **dense** gradient gets exactly :class:`torch.optim.Adam`'s update (same formula and
  operation order, so the two agree to float rounding), so one optimizer serves the tables and
  every dense parameter next to them (filters, adversaries, heads).

The bias correction uses the parameter's step count (steps in which it had a gradient), as
Adam does. ``decoupled=True`` gives AdamW's weight decay, applied lazily to the touched rows of a
sparse parameter. When every row has a gradient at every step the lazy and the dense rule are the
same update.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import torch


class _Step(NamedTuple):
    """One parameter's update settings for the current step."""

    lr: float
    b1: float
    b2: float
    eps: float
    wd: float
    decoupled: bool
    step_size: float  # lr / bias correction 1
    bc2_sqrt: float  # sqrt(bias correction 2)


class LazyAdam(torch.optim.Optimizer):
    """Adam (or AdamW) that updates only the rows present in a sparse gradient.

    Args:
        params: parameters or parameter groups, as for :class:`torch.optim.Adam`.
        lr, betas, eps, weight_decay: as for Adam.
        decoupled: AdamW-style (decoupled) weight decay instead of an L2 term in the gradient.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0:
            raise ValueError(f"invalid LazyAdam settings: lr={lr}, eps={eps}, wd={weight_decay}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "decoupled": decoupled,
        }
        super().__init__(params, defaults)
        # Work buffers of the sparse update, by parameter (not state: never checkpointed).
        self._buffers: dict[int, dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            wd, decoupled = group["weight_decay"], group["decoupled"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])
                bc1 = 1.0 - b1**step
                bc2_sqrt = math.sqrt(1.0 - b2**step)
                step_size = lr / bc1
                h = _Step(lr, b1, b2, eps, wd, decoupled, step_size, bc2_sqrt)
                if p.grad.is_sparse:
                    self._sparse_update(p, state, h)
                else:
                    self._dense_update(p, state, h)
        return loss

    @staticmethod
    def _dense_update(p: torch.Tensor, state: dict[str, Any], h: _Step) -> None:
        lr, b1, b2, eps, wd, decoupled, step_size, bc2_sqrt = h
        grad = p.grad
        assert grad is not None
        if wd:
            if decoupled:
                p.mul_(1.0 - lr * wd)
            else:
                grad = grad.add(p, alpha=wd)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1.0 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
        denom = (v.sqrt() / bc2_sqrt).add_(eps)
        p.addcdiv_(m, denom, value=-step_size)

    def _sparse_update(self, p: torch.Tensor, state: dict[str, Any], h: _Step) -> None:
        lr, b1, b2, eps, wd, decoupled, step_size, bc2_sqrt = h
        assert p.grad is not None
        grad = p.grad
        if grad.is_coalesced():
            rows, g_in = grad.indices()[0], grad.values()
            k = rows.numel()
            if k == 0:
                return
            g = self._scratch(p, "g", k)
            g.copy_(g_in.reshape(k, -1))
        else:  # sum the duplicate rows (what coalesce() does, into a reused buffer)
            idx = grad._indices()[0]
            if idx.numel() == 0:
                return
            rows, inverse = torch.unique(idx, sorted=True, return_inverse=True)
            k = rows.numel()
            g = self._scratch(p, "g", k).zero_()
            g.index_add_(0, inverse, grad._values().reshape(idx.numel(), -1))
        flat = p.view(p.shape[0], -1)
        w = torch.index_select(flat, 0, rows, out=self._scratch(p, "w", k))
        m = torch.index_select(
            state["exp_avg"].view_as(flat), 0, rows, out=self._scratch(p, "m", k)
        )
        v = torch.index_select(
            state["exp_avg_sq"].view_as(flat), 0, rows, out=self._scratch(p, "v", k)
        )
        if wd:
            if decoupled:
                w.mul_(1.0 - lr * wd)
            else:
                g.add_(w, alpha=wd)
        m.lerp_(g, 1.0 - b1)
        v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
        denom = torch.sqrt(v, out=g).div_(bc2_sqrt).add_(eps)  # g is no longer needed
        w.addcdiv_(m, denom, value=-step_size)
        state["exp_avg"].view_as(flat).index_copy_(0, rows, m)
        state["exp_avg_sq"].view_as(flat).index_copy_(0, rows, v)
        flat.index_copy_(0, rows, w)

    def _scratch(self, p: torch.Tensor, name: str, k: int) -> torch.Tensor:
        """A reused ``[k, row size]`` work buffer (fresh large tensors each step page-fault)."""
        bufs = self._buffers.setdefault(id(p), {})
        width = p[0].numel()
        buf = bufs.get(name)
        if buf is None or buf.shape[0] < k:
            buf = torch.empty(
                (max(k, 2 * (0 if buf is None else buf.shape[0])), width), dtype=p.dtype
            )
            bufs[name] = buf
        return buf[:k]
