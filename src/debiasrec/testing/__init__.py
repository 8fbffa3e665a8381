"""Test helpers shipped with debiasrec: contract tests any recommender, re-ranker or transform
can reuse (:class:`RecommenderContract`, with a check per declared capability;
:class:`RerankerContract`; :class:`TransformContract`).

A new model is checked against the :class:`~debiasrec.models.base.Recommender` contract with::

    from debiasrec.testing import RecommenderContract

    class TestMyModel(RecommenderContract):
        component = MyModel
        params = {"dim": 8, "train": {"epochs": 2}}

Needs ``pytest`` (``pip install 'debiasrec[dev]'``).
"""

from __future__ import annotations

from debiasrec.testing.contracts import RecommenderContract, RerankerContract, TransformContract

__all__ = ["RecommenderContract", "RerankerContract", "TransformContract"]
