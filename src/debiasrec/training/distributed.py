"""Data-parallel training across processes (``torchrun``): process group, sharding, gradient sync.

The one :class:`~debiasrec.training.trainer.Trainer` uses these helpers when
``TrainerConfig.distributed`` is ``"on"``, or ``"auto"`` and the process was started by
``torchrun`` (``WORLD_SIZE > 1`` in the environment) or a process group is already initialised.

Scheme (synchronous data parallelism, as ``DistributedDataParallel``):

* every rank builds the *same* epoch (same seed: same shuffle, same sampled negatives) and keeps a
  disjoint, contiguous slice of every global batch (:func:`shard_batch`), so the global batch size
  and the order of the data are those of a single process;
* after the backward pass the gradients of every trainable parameter (model and strategy modules)
  are summed over ranks and each rank's loss is weighted by its share of the batch
  (``n_rank * world / n_global``), so the averaged gradient is exactly the gradient of the global
  batch mean (:func:`sync_grads`);
* every rank takes the same optimizer step, so parameters stay identical (they are broadcast from
  rank 0 once at the start, like DDP does).

Why not wrap the module in ``torch.nn.parallel.DistributedDataParallel``: DDP only works when the
loss is computed through the wrapper's ``forward``; our models compute named loss terms from their
submodules directly (``model.loss_terms(batch)``), and strategies run extra backward passes on their
own modules (an adversary's discriminator updates). One explicit, bucketed ``all_reduce`` per step
covers all of these with the same arithmetic as DDP (sum, then divide by the world size).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from debiasrec.errors import ConfigError

#: Gradient tensors are flattened into buckets of at most this many elements per ``all_reduce``.
BUCKET_ELEMS = 1 << 24


@dataclass(frozen=True)
class DistContext:
    """Who this process is: ``rank`` of ``world`` (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False  # this context initialised the process group

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_world() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def backend_for(device: torch.device | str | None, backend: str = "auto") -> str:
    """The process-group backend for training on ``device``: ``nccl`` for a CUDA device, else
    ``gloo`` (``backend`` other than ``"auto"`` is returned as given).

    The backend follows where the reduced tensors live, not whether CUDA exists: CPU tensors
    with ``nccl`` fail (``ncclInvalidUsage``), as they did when the backend was chosen by
    ``torch.cuda.is_available()``.
    """
    if backend != "auto":
        return backend
    dev = torch.device("cpu") if device is None else torch.device(device)
    return "nccl" if dev.type == "cuda" else "gloo"


def setup(
    mode: str = "auto", backend: str = "auto", device: torch.device | str | None = None
) -> DistContext:
    """Join (or, under ``torchrun``, create) the default process group as ``mode`` says.

    ``mode``: ``"off"`` (single process), ``"on"`` (must be distributed) or ``"auto"`` (distributed
    when a group is initialised or ``WORLD_SIZE > 1``). ``backend`` ``"auto"`` picks ``nccl`` when
    ``device`` (where this rank trains; default the CPU) is a CUDA device, else ``gloo``
    (:func:`backend_for`); with ``nccl`` the rank's GPU becomes the current CUDA device. The
    group is created from the ``torchrun`` environment (``MASTER_ADDR``, ``MASTER_PORT``,
    ``RANK``, ``WORLD_SIZE``).

    Raises:
        ConfigError: ``mode="on"`` without a process group or ``torchrun`` environment; ``nccl``
            for CPU training.
    """
    if mode == "off":
        return DistContext()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistContext(rank=dist.get_rank(), world=dist.get_world_size())
    world = _env_world()
    if world <= 1:
        if mode == "on":
            raise ConfigError(
                "train.distributed='on' but no process group is initialised and WORLD_SIZE is "
                "not > 1; start the script with torchrun (see docs/distributed.md) or use 'auto'"
            )
        return DistContext()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    dev = torch.device("cpu") if device is None else torch.device(device)
    backend = backend_for(dev, backend)
    if backend == "nccl":
        if dev.type != "cuda":
            raise ConfigError(
                "train.backend='nccl' but the model trains on the CPU; nccl reduces GPU tensors "
                "only: use backend='gloo' (or 'auto'), or device='cuda'"
            )
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=backend)
    return DistContext(rank=dist.get_rank(), world=dist.get_world_size(), owns_group=True)


def shutdown() -> None:
    """End the process group at the end of a distributed script (no-op when none exists).

    All ranks first meet at a barrier, so no rank tears down its connections (and, on rank 0,
    the rendezvous store) while another is still finishing its last collective; destroying the
    group without it can abort a rank that is still shutting down.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def batch_size_of(batch: dict[str, torch.Tensor]) -> int:
    """Rows of a batch: the first dimension of its ``users`` tensor (else of its first tensor)."""
    t = batch.get("users")
    if t is None:
        t = next(v for v in batch.values() if isinstance(v, torch.Tensor))
    return int(t.shape[0])


def shard_batch(
    batch: dict[str, torch.Tensor], ctx: DistContext
) -> tuple[dict[str, torch.Tensor], float]:
    """This rank's contiguous slice of a global batch and its loss weight.

    Every tensor whose first dimension is the batch size is sliced; others (e.g. a shared
    lookup table) are passed through. The weight ``n_rank * world / n_global`` makes the
    rank-averaged gradient equal the gradient of the global batch mean.
    """
    if not ctx.active:
        return batch, 1.0
    n = batch_size_of(batch)
    lo = n * ctx.rank // ctx.world
    hi = n * (ctx.rank + 1) // ctx.world
    out = {
        k: (v[lo:hi] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n else v)
        for k, v in batch.items()
    }
    return out, (hi - lo) * ctx.world / max(n, 1)


def unique_params(groups: Iterable[Iterable[torch.nn.Parameter]]) -> list[torch.nn.Parameter]:
    """Trainable parameters of several collections, each once, in a fixed order."""
    seen: set[int] = set()
    out: list[torch.nn.Parameter] = []
    for params in groups:
        for p in params:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def sync_grads(params: Iterable[torch.nn.Parameter], ctx: DistContext | None = None) -> None:
    """Average ``.grad`` over ranks (sum / world), in place; a no-op when not distributed.

    A parameter whose gradient is ``None`` on every rank keeps ``None`` (so optimizers skip it
    exactly as in a single process); if some ranks have one, the others contribute zeros.
    Row-sparse gradients (embedding tables trained with ``row_sparse``) stay sparse: the ranks'
    rows are gathered and summed (:func:`_reduce_sparse`), so only rows touched by some rank's
    shard are exchanged and updated -- the rows of the global batch, as in one process.
    """
    ctx = ctx or current()
    if not ctx.active:
        return
    import torch.distributed as dist

    params = [p for p in params if p.requires_grad]
    if not params:
        return
    dev = params[0].device
    flags = torch.tensor(
        [
            [p.grad is not None for p in params],
            [p.grad is not None and p.grad.is_sparse for p in params],
        ],
        dtype=torch.float32,
        device=dev,
    )
    dist.all_reduce(flags)
    has, sparse = flags.tolist()
    live = [p for p, h, sp in zip(params, has, sparse, strict=True) if h > 0 and sp == 0]
    for p, sp in zip(params, sparse, strict=True):
        if sp > 0:
            _reduce_sparse(p, ctx.world)
    bucket: list[torch.nn.Parameter] = []
    size = 0
    for p in live:
        bucket.append(p)
        size += p.numel()
        if size >= BUCKET_ELEMS:
            _reduce_bucket(bucket, ctx.world)
            bucket, size = [], 0
    if bucket:
        _reduce_bucket(bucket, ctx.world)


def _reduce_bucket(params: list[torch.nn.Parameter], world: int) -> None:
    import torch.distributed as dist

    grads = []
    for p in params:
        g = p.grad
        if g is None:
            g = torch.zeros_like(p)
        elif g.is_sparse:
            g = g.to_dense()
        grads.append(g.reshape(-1))
    flat = torch.cat(grads)
    dist.all_reduce(flat)
    flat.div_(world)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def _reduce_sparse(p: torch.nn.Parameter, world: int) -> None:
    """Average a row-sparse ``p.grad`` over ranks: gather every rank's rows, sum, divide.

    Every rank receives the same rows in the same order, so all end with the same coalesced
    gradient. A rank without a gradient contributes no rows.
    """
    import torch.distributed as dist

    dev = p.device  # nccl exchanges GPU tensors only: everything sent lives with the parameter
    if p.grad is None:
        g = torch.sparse_coo_tensor(
            torch.zeros((1, 0), dtype=torch.long, device=dev),
            torch.zeros((0, *p.shape[1:]), dtype=p.dtype, device=dev),
            p.shape,
            check_invariants=False,
        )
    else:  # a dense gradient here while other ranks' are sparse: send its nonzero rows
        g = (p.grad if p.grad.is_sparse else p.grad.to_sparse(1)).coalesce()
    idx, val = g.indices()[0].contiguous(), g.values().contiguous()
    n = torch.tensor([idx.numel()], dtype=torch.long, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(c) for c in sizes]
    m = max(counts)
    pad_idx = torch.zeros(m, dtype=idx.dtype, device=dev)
    pad_idx[: idx.numel()] = idx
    pad_val = torch.zeros((m, *val.shape[1:]), dtype=val.dtype, device=dev)
    pad_val[: val.shape[0]] = val
    all_idx = [torch.empty_like(pad_idx) for _ in range(world)]
    all_val = [torch.empty_like(pad_val) for _ in range(world)]
    dist.all_gather(all_idx, pad_idx)
    dist.all_gather(all_val, pad_val)
    idx = torch.cat([t[:c] for t, c in zip(all_idx, counts, strict=True)])
    val = torch.cat([t[:c] for t, c in zip(all_val, counts, strict=True)]).div_(world)
    # rows came from valid sparse gradients of this very parameter: no invariant check needed
    p.grad = torch.sparse_coo_tensor(
        idx.unsqueeze(0), val, p.shape, check_invariants=False
    ).coalesce()


def broadcast_modules(modules: Iterable[torch.nn.Module], ctx: DistContext) -> None:
    """Copy parameters and buffers of ``modules`` from rank 0 to every rank."""
    if not ctx.active:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for m in modules:
            for t in [*m.parameters(), *m.buffers()]:
                dist.broadcast(t.data, src=0)


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (in-memory only; nothing is written to disk)."""
    if not ctx.active:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Sum of per-rank ``{name: value}`` dicts over ranks (missing names count as 0)."""
    if not ctx.active:
        return values
    import torch.distributed as dist

    gathered: list[Any] = [None] * ctx.world
    dist.all_gather_object(gathered, values)
    out: dict[str, float] = {}
    for d in gathered:
        for k, v in d.items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


_CURRENT: list[DistContext] = [DistContext()]


def current() -> DistContext:
    """The context of the training run in progress in this process (single process otherwise).

    Strategies with their own optimizers call ``sync_grads(params)`` before stepping; it finds the
    run's context here.
    """
    return _CURRENT[-1]


class active_context:  # noqa: N801 - used as a context manager
    """Make ``ctx`` the :func:`current` one inside a ``with`` block."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx

    def __enter__(self) -> DistContext:
        _CURRENT.append(self.ctx)
        return self.ctx

    def __exit__(self, *exc: object) -> None:
        _CURRENT.pop()
