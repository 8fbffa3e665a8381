"""Contract tests for recommenders, their declared capabilities, re-rankers and transforms.

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
``DataError``. Every capability a model declares (:mod:`debiasrec.models.capabilities`) is
exercised by its own check (``test_capability_*``), so a declaration that does not hold fails.

:class:`RerankerContract` and :class:`TransformContract` do the same for re-rankers and
pre-processing transforms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import scipy.sparse as sp

from debiasrec.data.split import Split, random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.errors import ConfigError, DataError, NotFittedError, require
from debiasrec.models.base import MODELS, Recommender
from debiasrec.models.capabilities import (
    ItemEmbeddings,
    ItemRepresentation,
    ItemSimilarity,
    PairScorer,
    PairwiseTraining,
    SparseTables,
    TextScorer,
    TrainedByTrainer,
    UserEmbeddings,
    UserFilterHost,
    UserRepresentation,
    WeightedTraining,
)

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
    component: ClassVar[type[Recommender[Any]]]
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
    def fitted(cls, contract_split: Split) -> Recommender[Any]:
        """A model fitted once per test class (tests must not modify it)."""
        return cls.make().fit(contract_split.train, valid=contract_split.valid, rng=cls.seed)

    @classmethod
    def make(cls, **override: Any) -> Recommender[Any]:
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
        if UserEmbeddings in self.component.capabilities(model.config):
            with pytest.raises(NotFittedError):
                cast(UserEmbeddings, model).user_embeddings()

    # ------------------------------------------------------------------ fit and score
    def test_fit_returns_self(self, contract_split: Split) -> None:
        model = self.make()
        assert model.fit(contract_split.train, rng=self.seed) is model

    def test_score_shape_dtype_finite(
        self, fitted: Recommender[Any], contract_split: Split
    ) -> None:
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

    def test_out_of_range_users_raise(
        self, fitted: Recommender[Any], contract_split: Split
    ) -> None:
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
        self, fitted: Recommender[Any], contract_split: Split
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
        self, fitted: Recommender[Any], contract_split: Split
    ) -> None:
        train = contract_split.train.csr()
        extra = contract_split.valid.csr()
        n_items = train.shape[1]
        recs = fitted.recommend(k=n_items, exclude=[extra])
        assert not _in_matrix(train, recs.users, recs.items).any()
        assert not _in_matrix(extra, recs.users, recs.items).any()
        remaining = n_items - np.diff((train + extra).indptr)
        np.testing.assert_array_equal((recs.items >= 0).sum(axis=1), remaining)

    def test_recommend_subset_of_users(self, fitted: Recommender[Any]) -> None:
        users = np.array([7, 2, 7])
        part = fitted.recommend(users, k=8)
        whole = fitted.recommend(k=8)
        np.testing.assert_array_equal(part.users, users)
        np.testing.assert_array_equal(part.items, whole.items[users])
        with pytest.raises(ConfigError):
            fitted.recommend(users, k=0)

    # ------------------------------------------------------------------ registry and capabilities
    def test_registered_under_its_name(self) -> None:
        assert MODELS.lookup(self.component.name) is self.component

    def test_score_tensor_is_score(self, fitted: Recommender[Any]) -> None:
        users = np.arange(min(fitted.n_users_, 9))
        np.testing.assert_array_equal(fitted.score_tensor(users).numpy(), fitted.score(users))

    def _declares(self, fitted: Recommender[Any], capability: type) -> bool:
        return capability in self.component.capabilities(fitted.config)

    def test_capability_user_embeddings(
        self, fitted: Recommender[Any], contract_split: Split
    ) -> None:
        if not self._declares(fitted, UserEmbeddings):
            pytest.skip("does not declare UserEmbeddings")
        emb = cast(UserEmbeddings, fitted).user_embeddings()
        assert emb.ndim == 2 and emb.shape[0] == contract_split.train.n_users and emb.shape[1] >= 1
        assert np.issubdtype(emb.dtype, np.floating) and np.isfinite(emb).all()

    def test_capability_item_embeddings(
        self, fitted: Recommender[Any], contract_split: Split
    ) -> None:
        if not self._declares(fitted, ItemEmbeddings):
            pytest.skip("does not declare ItemEmbeddings")
        emb = cast(ItemEmbeddings, fitted).item_embeddings()
        assert emb.ndim == 2 and emb.shape[0] == contract_split.train.n_items
        assert np.isfinite(emb).all()

    def test_capability_item_similarity(
        self, fitted: Recommender[Any], contract_split: Split
    ) -> None:
        if not self._declares(fitted, ItemSimilarity):
            pytest.skip("does not declare ItemSimilarity")
        sim = cast(ItemSimilarity, fitted).item_similarity()
        n = contract_split.train.n_items
        assert sp.issparse(sim) and sim.shape == (n, n)

    def test_capability_representations(
        self, fitted: Recommender[Any], contract_split: Split
    ) -> None:
        import torch

        caps = self.component.capabilities(fitted.config)
        wanted = {UserRepresentation, ItemRepresentation, PairScorer}
        if not caps & wanted:
            pytest.skip("declares no differentiable representation")
        m: Any = fitted
        n_u, n_i = contract_split.train.n_users, contract_split.train.n_items
        users = torch.arange(min(n_u, 7))
        items = torch.arange(len(users)) % n_i
        if UserRepresentation in caps:
            z = m.user_repr(users)
            assert isinstance(z, torch.Tensor) and z.shape[0] == len(users) and z.ndim == 2
        if ItemRepresentation in caps:
            q = m.item_repr(items)
            assert isinstance(q, torch.Tensor) and q.shape[0] == len(items) and q.ndim == 2
        if PairScorer in caps:
            s = m.pair_scores(users, items)
            assert isinstance(s, torch.Tensor) and s.shape == (len(users),)
            assert torch.isfinite(s).all()
            if s.requires_grad:
                s.sum().backward()  # differentiable

    def test_capability_trained_by_trainer(
        self, fitted: Recommender[Any], contract_split: Split
    ) -> None:
        caps = self.component.capabilities(fitted.config)
        if TrainedByTrainer not in caps:
            pytest.skip("not trained by the Trainer")
        m: Any = fitted
        gen = np.random.default_rng(0)
        batch = next(iter(m.batches(contract_split.train, 16, gen)))
        assert isinstance(batch, dict) and batch
        terms = m.loss_terms(batch)
        assert terms and all(v.ndim == 0 for v in terms.values())
        if PairwiseTraining in caps:
            assert {"users", "pos", "neg"} <= set(batch)
        if SparseTables in caps:
            import torch

            tables = m.sparse_tables()
            assert tables and all(isinstance(t, torch.nn.Embedding) for t in tables)

    def test_capability_user_filter_host(self, contract_split: Split) -> None:
        import torch

        model = self.make()
        if UserFilterHost not in self.component.capabilities(model.config):
            pytest.skip("does not declare UserFilterHost")
        model.fit(contract_split.train, rng=self.seed)
        m: Any = model
        users = np.arange(5)
        before = model.score(users)
        dim = int(m.user_repr(torch.arange(1)).shape[1])
        zero = torch.nn.Linear(dim, dim)
        torch.nn.init.zeros_(zero.weight)
        torch.nn.init.zeros_(zero.bias)
        m.set_user_filter(zero)
        assert not np.allclose(model.score(users), before)  # the filter is applied
        m.set_user_filter(None)
        np.testing.assert_allclose(model.score(users), before, rtol=1e-5, atol=1e-6)

    def test_capability_weighted_training(self, contract_split: Split) -> None:
        train, valid = contract_split.train, contract_split.valid
        if WeightedTraining not in self.component.capabilities(self.make().config):
            pytest.skip("does not declare WeightedTraining")
        users = np.arange(train.n_users)
        plain = self.make().fit(train, valid=valid, rng=3).score(users)
        ones = self.make().fit(
            train.with_weights(np.ones(len(train), np.float32)), valid=valid, rng=3
        )
        np.testing.assert_allclose(ones.score(users), plain, rtol=1e-4, atol=1e-5)
        w = np.random.default_rng(0).uniform(0.0, 3.0, len(train)).astype(np.float32)
        weighted = self.make().fit(train.with_weights(w), valid=valid, rng=3).score(users)
        assert not np.allclose(weighted, plain, rtol=1e-4, atol=1e-5), "weights are ignored"

    def test_capability_text_scorer(self, fitted: Recommender[Any], contract_split: Split) -> None:
        if not self._declares(fitted, TextScorer):
            pytest.skip("does not declare TextScorer")
        users = np.arange(3)
        out = cast(TextScorer, fitted).score_with_texts(users, ["a user", "another user", ""])
        assert out.shape == (3, contract_split.train.n_items)

    # ------------------------------------------------------------------ persistence
    def test_save_load_round_trip(self, fitted: Recommender[Any], tmp_path: Path) -> None:
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
        users = np.arange(fitted.n_users_)
        np.testing.assert_array_equal(loaded.score(users), fitted.score(users))
        np.testing.assert_array_equal(loaded.recommend(k=10).items, fitted.recommend(k=10).items)
        if self._declares(fitted, UserEmbeddings):
            np.testing.assert_array_equal(
                cast(UserEmbeddings, loaded).user_embeddings(),
                cast(UserEmbeddings, fitted).user_embeddings(),
            )

    def test_load_refuses_another_models_folder(
        self, fitted: Recommender[Any], tmp_path: Path
    ) -> None:
        folder = tmp_path / "model"
        fitted.save(folder)
        meta = json.loads((folder / "config.json").read_text())
        meta["model"] = "not-" + self.component.name
        (folder / "config.json").write_text(json.dumps(meta))
        with pytest.raises(DataError):
            self.component.load(folder)


# ================================================================================ re-rankers
class RerankerContract:
    """Checks every re-ranker must pass; subclasses set ``component`` and ``params``.

    Example::

        class TestCalibrated(RerankerContract):
            component = CalibratedReranker
            params = {"strength": 0.5}
    """

    #: The :class:`~debiasrec.debias.post.Reranker` subclass under test.
    component: ClassVar[type[Any]]
    #: Options (a non-zero ``strength`` so that the re-ranker acts).
    params: ClassVar[dict[str, Any]] = {"strength": 0.5}
    data_config: ClassVar[SyntheticConfig] = SyntheticConfig(
        n_users=80, n_items=60, mean_interactions=12
    )
    seed: ClassVar[int] = 0
    k: ClassVar[int] = 5

    @pytest.fixture(scope="class")
    @classmethod
    def setting(cls) -> tuple[Any, Any, Any]:
        """``(context, candidates, valid candidates)`` from a synthetic split and random scores."""
        from debiasrec.debias.post.base import RerankContext, candidates

        ds, _ = generate(cls.data_config, rng=cls.seed)
        split = random_split(ds, rng=cls.seed)
        context = RerankContext.from_datasets(split.train, split.valid)
        scores = np.random.default_rng(cls.seed).random((ds.n_users, ds.n_items), dtype=np.float32)
        cand = candidates(scores, n=20, exclude=[split.train.csr(), split.valid.csr()])
        vcand = candidates(scores, n=20, exclude=[split.train.csr()])
        return context, cand, vcand

    @classmethod
    def make(cls, **override: Any) -> Any:
        return cls.component({"k": cls.k, "n_candidates": 20, **cls.params, **override})

    def _fitted(self, setting: tuple[Any, Any, Any], **override: Any) -> Any:
        context, _, vcand = setting
        return self.make(**override).fit(context, vcand)

    def test_registered_under_its_name(self) -> None:
        from debiasrec.debias.post.base import RERANKERS

        assert RERANKERS.lookup(self.component.name) is self.component

    def test_unknown_config_key_fails(self) -> None:
        with pytest.raises(ConfigError, match="no_such_option"):
            self.make(no_such_option=1)

    def test_lists_come_from_the_candidates(self, setting: tuple[Any, Any, Any]) -> None:
        context, cand, _ = setting
        recs = self._fitted(setting).rerank(cand, context)
        np.testing.assert_array_equal(recs.users, cand.users)
        assert recs.items.shape == (len(cand.users), self.k)
        for row, pool in zip(recs.items, cand.items, strict=True):
            got = row[row >= 0]
            assert len(np.unique(got)) == len(got), "an item is listed twice"
            assert set(got) <= set(pool[pool >= 0]), "an item outside the candidates"
            assert (row[: len(got)] >= 0).all(), "-1 padding only at the end"

    def test_strength_zero_is_the_base_ranking(self, setting: tuple[Any, Any, Any]) -> None:
        context, cand, _ = setting
        recs = self._fitted(setting, strength=0.0).rerank(cand, context)
        np.testing.assert_array_equal(recs.items, cand.items[:, : self.k])

    def test_deterministic(self, setting: tuple[Any, Any, Any]) -> None:
        context, cand, _ = setting
        a = self._fitted(setting).rerank(cand, context)
        b = self._fitted(setting).rerank(cand, context)
        np.testing.assert_array_equal(a.items, b.items)

    def test_with_strength_copies(self, setting: tuple[Any, Any, Any]) -> None:
        fitted = self._fitted(setting)
        other = fitted.with_strength(0.0)
        assert other.strength == 0.0 and fitted.strength == self.params.get("strength", 0.5)
        with pytest.raises(ConfigError):
            fitted.with_strength(1.5)

    def test_out_of_range_users_raise(self, setting: tuple[Any, Any, Any]) -> None:
        from debiasrec.models.base import Recs

        context, cand, _ = setting
        bad = Recs(users=cand.users + context.n_users, items=cand.items, scores=cand.scores)
        with pytest.raises(DataError):
            self._fitted(setting).rerank(bad, context)


# ================================================================================ transforms
class TransformContract:
    """Checks every pre-processing transform must pass; subclasses set ``component``/``params``.

    Example::

        class TestOversample(TransformContract):
            component = Oversample
            params = {"attr": "gender"}
    """

    #: The :class:`~debiasrec.debias.pre.PreTransform` subclass under test.
    component: ClassVar[type[Any]]
    params: ClassVar[dict[str, Any]] = {}
    data_config: ClassVar[SyntheticConfig] = SyntheticConfig(
        n_users=80, n_items=60, mean_interactions=12
    )
    seed: ClassVar[int] = 0

    @pytest.fixture(scope="class")
    @classmethod
    def train(cls) -> Any:
        ds, _ = generate(cls.data_config, rng=cls.seed)
        return random_split(ds, rng=cls.seed).train

    @classmethod
    def make(cls, **override: Any) -> Any:
        return cls.component({**cls.params, **override})

    def test_registered_under_its_name(self) -> None:
        from debiasrec.debias.pre.base import TRANSFORMS

        assert TRANSFORMS.lookup(self.component.name) is self.component

    def test_unknown_config_key_fails(self) -> None:
        with pytest.raises(ConfigError, match="no_such_option"):
            self.make(no_such_option=1)

    def test_keeps_every_item_and_user_code(self, train: Any) -> None:
        out = self.make().apply(train, rng=self.seed)
        assert out.item_vocab.equals(train.item_vocab)
        assert out.n_users >= train.n_users
        assert out.user_vocab[: train.n_users].equals(train.user_vocab)
        if self.component.sets_weights:
            assert out.weights is not None and np.isfinite(out.weights).all()

    def test_input_untouched_and_deterministic(self, train: Any) -> None:
        before = train.fingerprint()
        a = self.make().apply(train, rng=self.seed)
        b = self.make().apply(train, rng=self.seed)
        assert train.fingerprint() == before
        assert a.fingerprint() == b.fingerprint()

    def test_report_is_json(self, train: Any) -> None:
        t = self.make()
        t.apply(train, rng=self.seed)
        json.dumps(t.report_, default=float)

    def test_sweep_key_is_a_number_field(self) -> None:
        key = self.component.sweep_key
        if key is None:
            pytest.skip("no sweep key")
        assert key in self.component.Config.model_fields
        self.make(**{key: self.component.Config.model_fields[key].default})
