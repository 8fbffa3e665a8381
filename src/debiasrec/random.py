"""Seeds in, generators out. Library code never touches global random state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def np_rng(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """Return a NumPy ``Generator`` for ``seed`` (passed through if already a Generator)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def derive_seed(rng: np.random.Generator) -> int:
    """Draw a fresh 63-bit seed from ``rng`` (to seed torch or child processes)."""
    return int(rng.integers(0, 2**63 - 1))


def torch_generator(seed: int | np.random.Generator | None = None) -> torch.Generator:
    """Return a CPU ``torch.Generator`` seeded from ``seed`` (an int or a NumPy generator)."""
    import torch

    gen = torch.Generator(device="cpu")
    if seed is None:
        gen.seed()
    elif isinstance(seed, np.random.Generator):
        gen.manual_seed(derive_seed(seed))
    else:
        gen.manual_seed(int(seed))
    return gen
