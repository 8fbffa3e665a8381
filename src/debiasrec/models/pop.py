"""Most-popular baseline.

With weighted training data (``Dataset.weights``) an item's popularity is the sum of its
interactions' weights (weighted counts) instead of their number.
"""

from __future__ import annotations

import numpy as np

from debiasrec.data.dataset import Dataset
from debiasrec.models.base import MODELS, ModelConfig, Recommender
from debiasrec.models.capabilities import (
    WeightedTraining,
)


class PopConfig(ModelConfig):
    """Pop has no hyper-parameters."""


@MODELS.register
class Pop(Recommender[PopConfig], WeightedTraining):
    """Scores every item by its number of training interactions (same list for every user).

    Weighted training data: the sum of the item's interaction weights.
    """

    name = "pop"
    Config = PopConfig

    def _fit(self, train: Dataset, *, valid: Dataset | None, rng: object) -> None:
        if train.weights is None:
            self.item_pop_ = train.item_counts().astype(np.float32)
        else:
            self.item_pop_ = np.bincount(
                train.items, weights=train.weights, minlength=train.n_items
            ).astype(np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_pop_, (len(users), self.n_items_)).copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_pop": self.item_pop_}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_pop_ = state["item_pop"]
