"""Recommenders. Each registers itself in :data:`MODELS` (see :mod:`debiasrec.registry`)."""

from __future__ import annotations

from typing import Any

from debiasrec.models.base import MODELS, ModelConfig, Recommender, Recs
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


def model_class(name: str) -> type[Recommender[Any]]:
    """The model class registered as ``name`` (case-insensitive).

    Raises:
        ConfigError: unknown name (the message lists the registered ones).
    """
    return MODELS.lookup(name.lower())


__all__ = ["BPR", "EASE", "IALS", "MODELS", "ItemKNN", "LLMRanker", "LightGCN", "ModelConfig",
           "MultVAE", "Pop", "Recommender", "Recs", "SASRec", "TextTwoTower", "model_class"]  # fmt: skip
