"""Where torch work runs (CPU or a CUDA GPU), in what precision, and with what batch size.

One setting chooses the device of every model, strategy, pre-processing GAN, leakage probe and
the evaluator: ``"auto"`` (a CUDA GPU when one is available, else the CPU), ``"cpu"``, ``"cuda"``
(the current GPU; under ``torchrun`` the one of ``LOCAL_RANK``) or ``"cuda:N"``.
:func:`resolve_device` turns it into a ``torch.device`` once, with one clear
:class:`~debiasrec.errors.ConfigError` when CUDA is asked for and absent.

Precision (``"fp32"`` default, ``"tf32"``, ``"bf16"``): :func:`precision_context` wraps
training steps and scoring; ``tf32`` lets CUDA matmuls use TensorFloat-32, ``bf16`` also runs
them under bfloat16 autocast. On the CPU ``fp32`` and ``tf32`` are the same thing.

Batch size ``"auto"`` (:func:`auto_batch`): a model declares its CPU batch size (the one its
defaults were tuned with) and the largest batch worth running on a GPU; on the CPU ``"auto"`` is
exactly the CPU batch size (and learning rate), so CPU results do not change. On CUDA the batch
grows towards the GPU size while every epoch keeps at least :data:`AUTO_MIN_STEPS` steps, and the
learning rate follows the square-root rule ``lr * sqrt(batch / cpu_batch)`` (the scaling rule
for Adam-type optimizers: Malladi et al., "On the SDEs and Scaling Rules for Adaptive Gradient
Algorithms", NeurIPS 2022). Small data (ML-100K) keeps the CPU batch on any device.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch

from debiasrec.errors import ConfigError

#: The values a device setting may take (besides ``cuda:N``).
DEVICE_WORDS = ("auto", "cpu", "cuda")
_CUDA_N = re.compile(r"^cuda:(\d+)$")

Precision = Literal["fp32", "tf32", "bf16"]

#: ``batch_size = "auto"`` on CUDA keeps at least this many steps per epoch.
AUTO_MIN_STEPS = 256


def check_device_setting(value: str) -> str:
    """Validate the *spelling* of a device setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

    Whether the device exists is checked later, by :func:`resolve_device` on the machine that
    runs the work (a config may be written on a laptop and run on a GPU server).

    Raises:
        ValueError: anything else (pydantic turns it into a field error).
    """
    v = str(value).strip().lower()
    if v in DEVICE_WORDS or _CUDA_N.match(v):
        return v
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")


def _env_int(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


def resolve_device(setting: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` a setting means on this machine.

    ``"auto"`` (or ``None``) is CUDA when available, else the CPU. ``"cuda"`` without an index
    is ``cuda:LOCAL_RANK`` under ``torchrun`` (``WORLD_SIZE > 1``; one GPU per rank), else the
    current CUDA device.

    Raises:
        ConfigError: CUDA asked for but unavailable, a GPU index out of range, or a bad spelling.
    """
    if isinstance(setting, torch.device):
        setting = str(setting)
    try:
        s = check_device_setting("auto" if setting is None else setting)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if s == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if s == "auto" and not available:
        return torch.device("cpu")
    if not available:
        raise ConfigError(
            f"device={s!r} but CUDA is not available on this machine (torch "
            f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); use "
            "device='auto' or 'cpu'"
        )
    count = torch.cuda.device_count()
    m = _CUDA_N.match(s)
    if m:
        index = int(m.group(1))
    else:
        world = _env_int("WORLD_SIZE") or 1
        local = _env_int("LOCAL_RANK")
        index = local if world > 1 and local is not None else torch.cuda.current_device()
    if index >= count:
        why = " (LOCAL_RANK under torchrun: one GPU per rank)" if not m else ""
        raise ConfigError(
            f"device {s!r} means GPU {index}{why}, but this machine has {count} visible GPU(s); "
            f"use at most {count} processes per node or an index below {count}"
        )
    return torch.device("cuda", index)


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for an empty module)."""
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def model_device(model: Any) -> torch.device:
    """The device a model (anything with a ``module``) computes on."""
    module = getattr(model, "module", None)
    return module_device(module) if isinstance(module, torch.nn.Module) else torch.device("cpu")


def generator_for(device: torch.device, seed: int) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (for draws made on a GPU)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) & ((1 << 63) - 1))
    return gen


@contextlib.contextmanager
def precision_context(device: torch.device, precision: str = "fp32") -> Iterator[None]:
    """Run the block in ``precision`` on ``device``.

    ``fp32``: nothing changes. ``tf32``: CUDA matmuls and convolutions may use TensorFloat-32
    inside the block (the previous flags are restored after it). ``bf16``: the same, plus
    bfloat16 autocast (on the CPU too, where it is supported). Losses that need full precision
    switch autocast off locally.
    """
    if precision == "fp32":
        yield
        return
    if precision not in ("tf32", "bf16"):
        raise ConfigError(f"precision must be 'fp32', 'tf32' or 'bf16', got {precision!r}")
    with contextlib.ExitStack() as stack:
        if device.type == "cuda":
            stack.enter_context(_tf32())
        if precision == "bf16":
            stack.enter_context(torch.autocast(device_type=device.type, dtype=torch.bfloat16))
        yield


@contextlib.contextmanager
def _tf32() -> Iterator[None]:
    mm, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = mm
        torch.backends.cudnn.allow_tf32 = cudnn


def no_autocast(t: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
    """A context in which autocast is off on ``t``'s device (for losses kept in fp32)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


@dataclass(frozen=True)
class BatchRule:
    """How ``batch_size = "auto"`` resolves for a model.

    Attributes:
        cpu: the batch size on the CPU (the one the model's defaults were tuned with).
        gpu: the largest batch size on CUDA.
        min_steps: on CUDA the batch never exceeds ``rows / min_steps`` (at least ``cpu``).
    """

    cpu: int
    gpu: int
    min_steps: int = AUTO_MIN_STEPS


def auto_batch(rule: BatchRule, lr: float, device: torch.device, rows: int) -> tuple[int, float]:
    """``(batch_size, lr)`` of ``batch_size = "auto"`` for ``rows`` training rows per epoch.

    CPU: ``(rule.cpu, lr)`` unchanged. CUDA: ``b = clip(rows // min_steps, cpu, gpu)`` rounded
    down to a multiple of ``cpu``, and ``lr * sqrt(b / cpu)`` (square-root scaling for Adam).
    """
    if device.type != "cuda":
        return rule.cpu, lr
    b = max(rule.cpu, min(rule.gpu, rows // max(rule.min_steps, 1)))
    b = max(rule.cpu, (b // rule.cpu) * rule.cpu)
    return b, lr * math.sqrt(b / rule.cpu)


__all__ = [
    "AUTO_MIN_STEPS",
    "DEVICE_WORDS",
    "BatchRule",
    "Precision",
    "auto_batch",
    "check_device_setting",
    "generator_for",
    "model_device",
    "module_device",
    "no_autocast",
    "precision_context",
    "resolve_device",
]
