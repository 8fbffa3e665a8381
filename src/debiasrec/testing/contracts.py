"""Contract tests for :class:`~debiasrec.models.base.Recommender` implementations.

Subclass :class:`RecommenderContract` in a test module, set ``component`` (the model class) and
``params`` (small, fast hyper-parameters), and pytest runs every check below against the model
on a small synthetic dataset (LensKit's ``ScorerTests`` pattern)::

    class TestBPR(RecommenderContract):
        component = BPR
        params = {"dim": 8, "train": {"epochs": 3}}

The checks are the scikit-learn and debiasrec conventions: the constructor only stores a
validated config; ``fit`` returns ``self``; using an unfitted model raises ``NotFittedError``;
scores are finite float32 blocks; recommendations never contain training (or explicitly
excluded) items and are padded with ``-1`` only when too few items remain; the same seed gives
the same scores; ``save``/``load`` round-trips exactly through ``config.json`` and
``state.safetensors`` (no pickle); empty training data and out-of-range user codes raise
``DataError``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from debiasrec.data.split import Split, random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.errors import ConfigError, DataError, NotFittedError, require
from debiasrec.models.base import Recommender

pytest = require("pytest", "dev")


def _in_matrix(mat: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``mat[users[r], items[r, c]] != 0`` for every cell (``-1`` padding counts as absent)."""
    rows = np.broadcast_to(np.asarray(users)[:, None], items.shape)
    valid = items >= 0
    out = np.zeros(items.shape, dtype=bool)
    out[valid] = np.asarray(mat[rows[valid], items[valid]]).ravel() != 0
    return out


class RecommenderContract:
    """Checks every recommender must pass; subclasses set ``component`` and ``params``."""

    #: The :class:`Recommender` subclass under test.
    component: ClassVar[type[Recommender]]
    #: Hyper-parameters for a fast fit on the contract data (a few epochs, small dimensions).
    params: ClassVar[dict[str, Any]] = {}
    #: The synthetic data every check uses; override for models that need something else.
    data_config: ClassVar[SyntheticConfig] = SyntheticConfig(
        n_users=80, n_items=60, mean_interactions=12
    )
    #: Seed of data generation, split and fit.
    seed: ClassVar[int] = 0

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def contract_split(cls) -> Split:
        """The synthetic dataset split 8:1:1 per user."""
        ds, _ = generate(cls.data_config, rng=cls.seed)
        return random_split(ds, rng=cls.seed)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, contract_split: Split) -> Recommender:
        """A model fitted once per test class (tests must not modify it)."""
        return cls.make().fit(contract_split.train, valid=contract_split.valid, rng=cls.seed)

    @classmethod
    def make(cls, **override: Any) -> Recommender:
        """A fresh, unfitted model built from ``params`` (updated with ``override``)."""
        return cls.component({**cls.params, **override})

    # ------------------------------------------------------------------ construction
    def test_constructor_only_stores_config(self) -> None:
        model = self.make()
        assert isinstance(model.config, self.component.Config)
        learned = [k for k in vars(model) if k.endswith("_") and not k.startswith("__")]
        assert learned == [], f"constructor set learned attributes {learned}"
        # the stored config rebuilds an equal model config
        assert self.component(model.config).config == model.config

    def test_unknown_config_key_fails_at_construction(self) -> None:
        with pytest.raises(ConfigError, match="no_such_option"):
            self.make(no_such_option=1)

    def test_unfitted_model_raises(self, tmp_path: Path) -> None:
        model = self.make()
        with pytest.raises(NotFittedError):
            model.score(np.arange(3))
        with pytest.raises(NotFittedError):
            model.recommend(np.arange(3), k=5)
        with pytest.raises(NotFittedError):
            model.save(tmp_path / "model")
        if self.component.has_embeddings:
            with pytest.raises(NotFittedError):
                model.user_embeddings()

    # ------------------------------------------------------------------ fit and score
    def test_fit_returns_self(self, contract_split: Split) -> None:
        model = self.make()
        assert model.fit(contract_split.train, rng=self.seed) is model

    def test_score_shape_dtype_finite(self, fitted: Recommender, contract_split: Split) -> None:
        train = contract_split.train
        users = np.arange(train.n_users)
        scores = fitted.score(users)
        assert scores.shape == (train.n_users, train.n_items)
        assert scores.dtype == np.float32
        assert np.isfinite(scores).all()
        # rows follow the requested users, whatever their order or repetition
        some = np.array([5, 0, 5, 17])
        np.testing.assert_allclose(fitted.score(some), scores[some], rtol=1e-5, atol=1e-6)
        assert fitted.score(np.array([], dtype=np.int64)).shape == (0, train.n_items)

    def test_out_of_range_users_raise(self, fitted: Recommender, contract_split: Split) -> None:
        n = contract_split.train.n_users
        for bad in ([n], [-1], [0, n + 5]):
            with pytest.raises(DataError):
                fitted.score(np.array(bad))
            with pytest.raises(DataError):
                fitted.recommend(np.array(bad), k=5)

    def test_empty_training_data_raises(self, contract_split: Split) -> None:
        train = contract_split.train
        empty = train.subset(np.zeros(train.n_interactions, dtype=bool))
        with pytest.raises(DataError):
            self.make().fit(empty, rng=self.seed)

    def test_same_seed_same_scores(self, contract_split: Split) -> None:
        train, valid = contract_split.train, contract_split.valid
        users = np.arange(train.n_users)
        a = self.make().fit(train, valid=valid, rng=123).score(users)
        b = self.make().fit(train, valid=valid, rng=123).score(users)
        np.testing.assert_array_equal(a, b)

    def test_refit_forgets_the_previous_fit(self, contract_split: Split) -> None:
        train, valid = contract_split.train, contract_split.valid
        users = np.arange(train.n_users)
        fresh = self.make().fit(train, valid=valid, rng=123).score(users)
        reused = self.make().fit(train, rng=7)
        reused.score(users)  # fill any inference cache
        np.testing.assert_array_equal(reused.fit(train, valid=valid, rng=123).score(users), fresh)

    # ------------------------------------------------------------------ recommend
    def test_recommend_never_returns_training_items(
        self, fitted: Recommender, contract_split: Split
    ) -> None:
        train = contract_split.train.csr()
        n_users, n_items = train.shape
        for k in (10, n_items):
            recs = fitted.recommend(k=k)
            np.testing.assert_array_equal(recs.users, np.arange(n_users))
            assert recs.items.shape == (n_users, k) == recs.scores.shape
            assert not _in_matrix(train, recs.users, recs.items).any()
            # -1 padding exactly when fewer than k items remain, and only at the end of a row
            remaining = n_items - np.diff(train.indptr)
            n_listed = (recs.items >= 0).sum(axis=1)
            np.testing.assert_array_equal(n_listed, np.minimum(k, remaining))
            listed = np.arange(k)[None, :] < n_listed[:, None]
            assert ((recs.items >= 0) == listed).all()
            assert np.isneginf(recs.scores[~listed]).all()
            # no repeats, sorted by score, and the scores are the model's scores
            for row in recs.items:
                valid = row[row >= 0]
                assert len(np.unique(valid)) == len(valid)
            both = listed[:, 1:]  # consecutive listed pairs
            assert (recs.scores[:, 1:][both] <= recs.scores[:, :-1][both]).all()
            full = fitted.score(recs.users)
            rows = np.broadcast_to(np.arange(n_users)[:, None], recs.items.shape)
            np.testing.assert_allclose(
                recs.scores[listed], full[rows[listed], recs.items[listed]], rtol=1e-5, atol=1e-6
            )

    def test_recommend_masks_explicit_exclusions(
        self, fitted: Recommender, contract_split: Split
    ) -> None:
        train = contract_split.train.csr()
        extra = contract_split.valid.csr()
        n_items = train.shape[1]
        recs = fitted.recommend(k=n_items, exclude=[extra])
        assert not _in_matrix(train, recs.users, recs.items).any()
        assert not _in_matrix(extra, recs.users, recs.items).any()
        remaining = n_items - np.diff((train + extra).indptr)
        np.testing.assert_array_equal((recs.items >= 0).sum(axis=1), remaining)

    def test_recommend_subset_of_users(self, fitted: Recommender) -> None:
        users = np.array([7, 2, 7])
        part = fitted.recommend(users, k=8)
        whole = fitted.recommend(k=8)
        np.testing.assert_array_equal(part.users, users)
        np.testing.assert_array_equal(part.items, whole.items[users])
        with pytest.raises(ConfigError):
            fitted.recommend(users, k=0)

    # ------------------------------------------------------------------ representations
    def test_user_embeddings(self, fitted: Recommender, contract_split: Split) -> None:
        if not self.component.has_embeddings:
            with pytest.raises(NotImplementedError):
                fitted.user_embeddings()
            return
        emb = fitted.user_embeddings()
        assert emb.ndim == 2
        assert emb.shape[0] == contract_split.train.n_users
        assert emb.shape[1] >= 1
        assert np.issubdtype(emb.dtype, np.floating)
        assert np.isfinite(emb).all()

    # ------------------------------------------------------------------ persistence
    def test_save_load_round_trip(self, fitted: Recommender, tmp_path: Path) -> None:
        from safetensors import safe_open

        folder = tmp_path / "model"
        fitted.save(folder)
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "state.safetensors"]
        meta = json.loads((folder / "config.json").read_text())
        assert meta["model"] == self.component.name
        with safe_open(str(folder / "state.safetensors"), framework="numpy") as f:
            assert len(list(f.keys())) > 0
        loaded = self.component.load(folder)
        assert isinstance(loaded, self.component)
        assert loaded.config == fitted.config
        users = np.arange(fitted.n_users_)  # type: ignore[attr-defined]
        np.testing.assert_array_equal(loaded.score(users), fitted.score(users))
        np.testing.assert_array_equal(loaded.recommend(k=10).items, fitted.recommend(k=10).items)
        if self.component.has_embeddings:
            np.testing.assert_array_equal(loaded.user_embeddings(), fitted.user_embeddings())

    def test_load_refuses_another_models_folder(self, fitted: Recommender, tmp_path: Path) -> None:
        folder = tmp_path / "model"
        fitted.save(folder)
        meta = json.loads((folder / "config.json").read_text())
        meta["model"] = "not-" + self.component.name
        (folder / "config.json").write_text(json.dumps(meta))
        with pytest.raises(DataError):
            self.component.load(folder)
