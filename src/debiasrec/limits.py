"""Bounds on user-given sizes: memory estimates before big allocations, seed range, list lengths.

A size that cannot work (a list longer than the catalogue, a bootstrap that needs more memory
than the machine has) is rejected with a :class:`~debiasrec.errors.ConfigError` naming the
setting, before anything is allocated -- not a ``MemoryError`` traceback minutes later.

This module imports nothing of debiasrec but :mod:`debiasrec.errors`, so every layer may use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from debiasrec.errors import ConfigError

__all__ = [
    "SEED_MAX",
    "available_memory",
    "bootstrap_bytes",
    "check_list_length",
    "check_memory",
    "check_seed",
    "format_bytes",
    "topk_bytes",
]

#: Largest accepted seed: results store seeds as int64 and torch takes 64-bit seeds.
SEED_MAX = 2**63 - 1

#: Environment variable capping the memory :func:`available_memory` reports (bytes; for
#: containers whose limit ``/proc/meminfo`` does not show, and for tests).
MEMORY_ENV = "DEBIASREC_MEMORY_LIMIT"


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit, if one is set."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes of memory a new allocation can use, or None when it cannot be told.

    The smallest of ``MemAvailable`` (``/proc/meminfo``), the room under a cgroup v2 limit, and
    ``$DEBIASREC_MEMORY_LIMIT``; without ``/proc`` (macOS), the free physical pages.
    """
    values: list[int] = []
    env = os.environ.get(MEMORY_ENV)
    if env:
        try:
            values.append(int(float(env)))
        except ValueError:
            raise ConfigError(
                f"${MEMORY_ENV}={env!r} is not a number of bytes; unset it or give e.g. 8e9"
            ) from None
    mem = _meminfo_available()
    if mem is None:
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            mem = None
    for v in (mem, _cgroup_available()):
        if v is not None:
            values.append(v)
    return min(values) if values else None


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``; binary units up to TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_memory(nbytes: float, *, setting: str, what: str, fraction: float = 0.9) -> None:
    """Raise when ``nbytes`` exceeds ``fraction`` of :func:`available_memory`.

    Args:
        nbytes: estimated peak bytes of the allocation.
        setting: the option or config field that sets its size (named in the message).
        what: what is being allocated, e.g. ``"top-10 lists of 943 users"``.
        fraction: share of the available memory one allocation may take.

    Raises:
        ConfigError: naming ``setting``, the estimate and the memory available.
    """
    avail = available_memory()
    if avail is None or nbytes <= fraction * avail:
        return
    raise ConfigError(
        f"{setting}: {what} need about {format_bytes(nbytes)} of memory, but only "
        f"{format_bytes(avail)} is available; lower {setting}"
    )


def topk_bytes(n_users: int, k: int) -> int:
    """Bytes of top-``k`` lists for ``n_users``: int64 item codes and float32 scores."""
    return int(n_users) * int(k) * (8 + 4)


#: Workspace of the chunked bootstrap draws (int32 indices, counts, float64 weights of at most
#: ``2**21`` elements; :func:`debiasrec.metrics.fairness.by_group`).
BOOTSTRAP_WORKSPACE = 24 * 2**21


def bootstrap_bytes(n_boot: int, n_groups: int, n_metrics: int) -> int:
    """Peak bytes of bootstrap replicates: ``[n_boot, n_groups, n_metrics]`` float64, about
    three live copies at once (replicates, the quantile's sorted copy, and its output), plus
    the draws' workspace :data:`BOOTSTRAP_WORKSPACE`."""
    reps = 8 * int(n_boot) * max(1, int(n_groups)) * max(1, int(n_metrics))
    return 3 * reps + BOOTSTRAP_WORKSPACE


def check_seed(value: object, field: str) -> int:
    """``value`` as a seed in ``[0, SEED_MAX]``.

    Raises:
        ConfigError: not an integer (``True`` included), negative, or above :data:`SEED_MAX`.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= SEED_MAX:
        raise ConfigError(
            f"{field} = {value!r} is not a valid seed; seeds are integers from 0 to "
            f"2**63 - 1 = {SEED_MAX}"
        )
    return value


def check_list_length(
    ks: int | Iterable[int], n_items: int, *, setting: str, catalogue: str = "the catalogue"
) -> None:
    """Every list length in ``ks`` must be at most the catalogue size ``n_items``.

    Raises:
        ConfigError: naming ``setting``, the offending length and the catalogue size.
    """
    values = [ks] if isinstance(ks, int) else list(ks)
    too_long = [k for k in values if k > n_items]
    if too_long:
        raise ConfigError(
            f"{setting}: a list of {too_long[0]:,} items is longer than {catalogue} "
            f"({n_items:,} items); use lengths of at most {n_items:,}"
        )
