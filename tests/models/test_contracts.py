"""Every shipped recommender passes the shipped contract (debiasrec.testing)."""

from __future__ import annotations

import pytest
import torch

from debiasrec.models import BPR, EASE, IALS, ItemKNN, LightGCN, MultVAE, Pop, SASRec
from debiasrec.testing import RecommenderContract


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models gain nothing from threads; on a busy shared machine they lose a lot."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# A few epochs on the 80 x 60 contract data; eval_every=1 so early stopping and the
# restore-best path run too.
_FAST = {"epochs": 4, "eval_every": 1, "patience": 2, "batch_size": 256}


class TestPop(RecommenderContract):
    component = Pop


class TestItemKNN(RecommenderContract):
    component = ItemKNN
    params = {"k": 10, "shrink": 1.0, "block": 16}  # several similarity blocks


class TestBPR(RecommenderContract):
    component = BPR
    params = {"dim": 8, "train": {**_FAST, "lr": 0.05}}


class TestMultVAE(RecommenderContract):
    component = MultVAE
    params = {"hidden": 16, "latent": 8, "train": {**_FAST, "batch_size": 32}}


class TestLightGCN(RecommenderContract):
    component = LightGCN
    params = {"dim": 8, "layers": 2, "train": {**_FAST, "lr": 0.05}}


class TestIALS(RecommenderContract):
    component = IALS
    params = {"dim": 8, "iterations": 3, "reg": 1.0}


class TestIALSCholesky(RecommenderContract):
    component = IALS
    params = {"dim": 8, "iterations": 2, "reg": 1.0, "solver": "cholesky", "block": 16}


class TestEASE(RecommenderContract):
    component = EASE
    params = {"reg": 10.0}


class TestEASEChunkedTopK(RecommenderContract):
    component = EASE
    params = {"reg": 10.0, "method": "chunked", "block": 16, "topk": 12}


class TestSASRec(RecommenderContract):
    component = SASRec
    params = {"dim": 8, "heads": 2, "layers": 1, "ffn": 16, "max_len": 8,
              "train": {**_FAST, "batch_size": 32, "lr": 0.01}}  # fmt: skip
