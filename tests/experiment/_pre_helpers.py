"""Small pre-processing transforms registered by the runner tests for the duration of a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.debias.pre import TRANSFORMS, PreConfig, PreTransform
from debiasrec.random import np_rng


class DropConfig(PreConfig):
    strength: float = Field(0.1, ge=0.0, le=0.9)


class DropShare(PreTransform[DropConfig]):
    """Drops a random share ``strength`` of the training interactions (a test transform)."""

    name = "test_drop"
    Config = DropConfig
    sweep_key = "strength"
    calls = 0

    def apply(self, train: Dataset, *, rng: np.random.Generator | int | None = None) -> Dataset:
        type(self).calls += 1
        keep = np_rng(rng).random(train.n_interactions) >= self.config.strength
        self.report_ = {"dropped": int((~keep).sum()), "kept": int(keep.sum())}
        return train.subset(keep, name=f"{train.name}:dropped")


class Identity(PreTransform):
    """Returns the data unchanged; has no strength (sweeps must be rejected)."""

    name = "test_identity"

    def apply(self, train: Dataset, *, rng: np.random.Generator | int | None = None) -> Dataset:
        self.report_ = {"n": train.n_interactions}
        return train


@contextmanager
def registered() -> Iterator[None]:
    """Register the test transforms for the duration of a block."""
    added = (DropShare, Identity)
    for cls in added:
        TRANSFORMS.register(cls)
    try:
        yield
    finally:
        for cls in added:
            TRANSFORMS.unregister(cls.name)
