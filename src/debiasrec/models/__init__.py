"""Recommenders. ``MODELS`` maps config names to classes (an explicit registry)."""

from __future__ import annotations

from debiasrec.errors import ConfigError
from debiasrec.models.base import ModelConfig, Recommender, Recs
from debiasrec.models.bpr import BPR
from debiasrec.models.ease import EASE
from debiasrec.models.ials import IALS
from debiasrec.models.itemknn import ItemKNN
from debiasrec.models.lightgcn import LightGCN
from debiasrec.models.llm_ranker import LLMRanker
from debiasrec.models.multvae import MultVAE
from debiasrec.models.pop import Pop
from debiasrec.models.sasrec import SASRec
from debiasrec.models.text2tower import TextTwoTower

MODELS: dict[str, type[Recommender]] = {
    "pop": Pop,
    "itemknn": ItemKNN,
    "bpr": BPR,
    "multvae": MultVAE,
    "lightgcn": LightGCN,
    "text2tower": TextTwoTower,
    "ials": IALS,
    "ease": EASE,
    "sasrec": SASRec,

    "llm_ranker": LLMRanker,
}


def model_class(name: str) -> type[Recommender]:
    """The model class registered as ``name``.

    Raises:
        ConfigError: unknown name (the message lists the registered ones).
    """
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {sorted(MODELS)}") from None


__all__ = ["BPR", "EASE", "IALS", "MODELS", "ItemKNN", "LLMRanker", "LightGCN", "ModelConfig", "MultVAE", "Pop",
           "Recommender", "Recs", "SASRec", "TextTwoTower", "model_class"]  # fmt: skip
