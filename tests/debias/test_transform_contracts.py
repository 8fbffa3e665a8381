"""Every shipped pre-processing transform passes the shipped contract (TransformContract)."""

from __future__ import annotations

from debiasrec.debias.pre import GANBalance, GANTwins, GroupReweight, Oversample, PopularityIPS
from debiasrec.testing import TransformContract


class TestGroupReweight(TransformContract):
    component = GroupReweight
    params = {"attr": "gender"}


class TestPopularityIPS(TransformContract):
    component = PopularityIPS


class TestOversample(TransformContract):
    component = Oversample
    params = {"attr": "gender"}


class TestGANBalance(TransformContract):
    component = GANBalance
    params = {"attr": "gender", "steps": 3, "fidelity": False, "hidden": 8, "taste_dim": 4}


class TestGANTwins(TransformContract):
    component = GANTwins
    params = {"attr": "gender", "steps": 3, "fidelity": False, "hidden": 8, "taste_dim": 4}
