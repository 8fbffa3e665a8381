"""A trained result folder made ready to serve: data, model, re-rankers, masks, explanations.

``ServingPipeline(DIR)`` reads ``DIR/config.toml`` (re-loads and re-splits the data exactly as
the run did; ``summary.json``'s dataset fingerprint must match), loads the model saved in
``DIR/models/METHOD/`` and builds everything a request needs. Sensitive attributes stay in
:attr:`context` (used by the group-fair re-ranker and the fairness monitor only); nothing here
returns them.
"""

from __future__ import annotations

import copy
import json
import threading
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from pydantic import ValidationError

from debiasrec.data.dataset import Dataset
from debiasrec.data.split import Split
from debiasrec.debias.post.base import RerankContext, Reranker, candidates
from debiasrec.debias.post.controller import RERANKERS
from debiasrec.errors import ConfigError, DataError
from debiasrec.metrics import DegenerateMetricWarning
from debiasrec.metrics.beyond import HEAD, popularity_tiers
from debiasrec.models import model_class
from debiasrec.models.base import Recommender, Recs
from debiasrec.serve.config import ServeConfig


def saved_models(folder: Path) -> list[str]:
    """Labels of the models saved in ``folder/models`` (sorted)."""
    root = folder / "models"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def load_saved_model(mdir: Path) -> Recommender:
    """Load ``mdir`` (``config.json`` + ``state.safetensors``), checking both files first.

    Raises:
        DataError: invalid JSON or fields in ``config.json``, a missing, truncated or
            mismatched ``state.safetensors``; the message names the file.
    """
    cfg_path, state_path = mdir / "config.json", mdir / "state.safetensors"
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {cfg_path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{cfg_path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "re-run the experiment to write the model again"
        ) from None
    if not isinstance(meta, dict):
        raise DataError(f"{cfg_path} must hold a JSON object, got {type(meta).__name__}")
    want: dict[str, type] = {"model": str, "config": dict, "n_users": int, "n_items": int}
    kinds = {str: "a string", dict: "a JSON object", int: "an integer"}
    for key, typ in want.items():
        if key not in meta:
            raise DataError(f"{cfg_path}: field {key!r} is missing (needs {sorted(want)})")
        v = meta[key]
        if not isinstance(v, typ) or isinstance(v, bool):
            raise DataError(f"{cfg_path}: field {key!r} must be {kinds[typ]}, got {v!r:.60}")
        if isinstance(v, int) and v < 1:
            raise DataError(f"{cfg_path}: field {key!r} must be positive, got {v}")
    try:
        cls = model_class(meta["model"])
    except ConfigError as exc:
        raise DataError(f"{cfg_path}: field 'model': {exc}") from None
    try:
        cls.Config.model_validate(meta["config"])
    except ValidationError as exc:
        parts = [f"config.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise DataError(
            f"{cfg_path}: invalid {meta['model']} settings: {'; '.join(parts)}"
        ) from None
    if not state_path.is_file():
        raise DataError(f"{state_path} is missing: the saved model has no weights")
    try:
        model = cls.load(mdir)
    except Exception as exc:  # noqa: BLE001 - any failure to read these files is bad input
        raise DataError(
            f"{state_path} cannot be loaded as the saved {meta['model']!r} model "
            f"({type(exc).__name__}: {exc}); the file is truncated or does not belong to "
            f"{cfg_path}: re-run the experiment"
        ) from None
    try:
        s = np.asarray(model.score(np.array([0], dtype=np.int64)))
    except Exception as exc:  # noqa: BLE001 - a shape mismatch between the two files
        raise DataError(
            f"{state_path} does not match {cfg_path} (scoring failed: "
            f"{type(exc).__name__}: {exc}); re-run the experiment"
        ) from None
    if s.shape != (1, meta["n_items"]):
        raise DataError(
            f"{state_path} does not match {cfg_path}: scores have shape {s.shape}, expected "
            f"(1, {meta['n_items']})"
        )
    return model


class ServingPipeline:
    """Everything needed to answer requests for one trained model of a result folder.

    Args:
        folder: a result folder written by ``debiasrec run`` (with ``models/``).
        config: service options.
        prepared: ``(dataset, split)`` already loaded (skips re-loading the data; tests and
            benchmarks that just ran the experiment pass it).

    Attributes:
        label: result label of the served model; model: the loaded :class:`Recommender`.
        dataset, split: the data (vocabularies map original ids to codes).
        context: :class:`RerankContext` (training history, popularity, groups, validation).
        long_tail: ``[n_items]`` bool, items outside the short head (``head_share`` of items).
        explainer: ``"itemknn_similarity"``, ``"embedding_cosine"`` or ``"cooccurrence_cosine"``.
    """

    def __init__(
        self,
        folder: str | Path,
        config: ServeConfig | None = None,
        *,
        prepared: tuple[Dataset, Split] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.config = config or ServeConfig()
        cfg = self.config
        if not (self.folder / "config.toml").is_file():
            raise DataError(
                f"{self.folder} is not a result folder (no config.toml); write one with "
                "'debiasrec run CONFIG.toml --out DIR'"
            )
        labels = saved_models(self.folder)
        if not labels:
            raise DataError(
                f"{self.folder} has no saved models (models/METHOD/config.json); re-run the "
                "experiment with this debiasrec version, which saves the first seed's models"
            )
        from debiasrec.experiment.runner import load_config, prepare_data

        exp = load_config(self.folder / "config.toml")
        if cfg.model is None:
            order = [m.label for m in exp.models if m.label in labels] or labels
            self.label = order[0]
        elif cfg.model in labels:
            self.label = cfg.model
        else:
            raise ConfigError(f"no saved model {cfg.model!r} in {self.folder}; saved: {labels}")
        self.model: Recommender = load_saved_model(self.folder / "models" / self.label)
        if prepared is not None:
            ds, split = prepared
            self._check_data(ds)
        elif (self.folder / "split" / "dataset.json").is_file():
            # The run's own split (Dataset.save format): no raw data is read or re-split.
            split = Split.load(self.folder / "split")
            ds = split.train
        else:  # a result folder written before splits were saved with their tables
            ds, _, split = prepare_data(exp)
            self._check_data(ds)
        self.dataset, self.split = ds, split
        train, valid = split.train, split.valid
        if (self.model.n_users_, self.model.n_items_) != (ds.n_users, ds.n_items):
            raise DataError(
                f"model {self.label!r} was trained on {self.model.n_users_} users x "
                f"{self.model.n_items_} items but the data has {ds.n_users} x {ds.n_items}"
            )
        self.n_users, self.n_items = ds.n_users, ds.n_items
        self.context = RerankContext.from_datasets(
            train, valid, sensitive=ds.schema.sensitive_names
        )
        self.sensitive = list(ds.schema.sensitive_names)
        self.seen = (train.csr() + valid.csr()).tocsr() if cfg.mask_valid else train.csr()
        self.seen.data[:] = 1.0
        self.history = self.model.train_csr_.tocsr()
        self.item_pop = train.item_counts().astype(np.float64)
        self.popular = np.argsort(-self.item_pop, kind="stable")
        tiers = popularity_tiers(self.item_pop, cfg.head_share, 1 - cfg.head_share, by="items")
        self.long_tail = tiers != HEAD
        self.user_index = {str(u): i for i, u in enumerate(ds.user_vocab)}
        self.item_index = {str(v): i for i, v in enumerate(ds.item_vocab)}
        self.item_ids = [str(v) for v in ds.item_vocab]
        self.user_ids = [str(u) for u in ds.user_vocab]
        self._online_seen: dict[int, set[int]] = {}
        self._seen_lock = threading.Lock()
        self._rerankers: dict[str, Reranker] = {}
        self._unavailable: dict[str, str] = {}
        self._fit_lock = threading.Lock()
        self._setup_explainer()

    # ------------------------------------------------------------------ loading helpers
    def _check_data(self, ds: Dataset) -> None:
        summary = self.folder / "summary.json"
        if not summary.is_file():
            return
        try:
            want = json.loads(summary.read_text()).get("dataset", {}).get("fingerprint")
        except json.JSONDecodeError as exc:
            raise DataError(f"{summary} is not valid JSON: {exc}") from None
        if want and want != ds.fingerprint():
            raise DataError(
                f"the data named in {self.folder / 'config.toml'} changed since the run "
                f"(fingerprint {ds.fingerprint()} != {want} in summary.json); re-run the experiment"
            )

    def _setup_explainer(self) -> None:
        model = self.model
        if hasattr(model, "item_similarity"):
            self.explainer = "itemknn_similarity"
            self._sim = model.item_similarity().tocsr()  # W[i, j]: i a neighbour of j
        elif hasattr(model, "item_embeddings"):
            self.explainer = "embedding_cosine"
            e = np.asarray(model.item_embeddings(), dtype=np.float32)
            self._emb = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        else:
            self.explainer = "cooccurrence_cosine"
            x = self.history.astype(np.float32)
            norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
            self._xn = (x @ sp.diags(1.0 / np.maximum(norms, 1e-12))).tocsc()

    # ------------------------------------------------------------------ ids
    def user_code(self, user_id: str) -> int | None:
        """Code of a user id (as text), or None if the user was not in the data."""
        return self.user_index.get(str(user_id))

    def item_code(self, item_id: str) -> int | None:
        """Code of an item id (as text), or None if unknown."""
        return self.item_index.get(str(item_id))

    # ------------------------------------------------------------------ re-rankers
    def available_posts(self) -> dict[str, str | None]:
        """Every re-ranker name -> None if usable, else why not."""
        out: dict[str, str | None] = {"none": None}
        for name in RERANKERS:
            out[name] = self._unavailable.get(name)
        return out

    def reranker(self, name: str) -> Reranker:
        """The fitted re-ranker ``name`` (fitted on first use, validation data only).

        Raises:
            ConfigError: unknown name, or the re-ranker cannot run on this data (the message
                says why, e.g. no item genres or no sensitive attribute).
        """
        if name not in RERANKERS:
            raise ConfigError(f"unknown post-processor {name!r}; available: {self.post_names()}")
        if name in self._unavailable:
            raise ConfigError(
                f"post-processor {name!r} is not available: {self._unavailable[name]}"
            )
        with self._fit_lock:
            if name not in self._rerankers:
                try:
                    self._rerankers[name] = self._fit_reranker(name)
                except (DataError, ConfigError) as exc:
                    self._unavailable[name] = str(exc)
                    raise ConfigError(f"post-processor {name!r} is not available: {exc}") from None
        return self._rerankers[name]

    def post_names(self) -> list[str]:
        return ["none", *RERANKERS]

    def _fit_reranker(self, name: str) -> Reranker:
        cfg = self.config
        params = dict(cfg.post_params.get(name, {}))
        if name == "group_fair":
            if not self.sensitive:
                raise DataError("the data declares no sensitive attribute to balance")
            params.setdefault("attr", self.sensitive[0])
        if name in ("calibrated", "diversity") and self.context.item_features is None:
            raise DataError("the items have no genres (item categories)")
        rr = RERANKERS[name](
            {**params, "k": cfg.k_default, "n_candidates": cfg.n_candidates, "strength": 0.0}
        )
        valid_cand = None
        if rr.needs_fit:
            vcsr = self.context.valid
            users = (
                np.flatnonzero(np.diff(vcsr.indptr) > 0)
                if vcsr is not None
                else np.zeros(0, dtype=np.int64)
            )
            if len(users) == 0:
                raise DataError("no validation interactions to fit on")
            valid_cand = candidates(
                self.model.score_tensor,
                users,
                n=cfg.n_candidates,
                exclude=[self.context.history],
            )
        with warnings.catch_warnings():
            # Per-request fitting on validation data: users without a validation hit are
            # expected (NaN, skipped); the service must not spam its log with them.
            warnings.filterwarnings("ignore", category=DegenerateMetricWarning)
            return rr.fit(self.context, valid_cand)

    # ------------------------------------------------------------------ recommending
    def mark_seen(self, user_code: int, item_codes: np.ndarray | list[int]) -> None:
        """Mask items a user clicked or rated online from their later lists."""
        if user_code < 0 or not self.config.mask_feedback:
            return
        with self._seen_lock:
            self._online_seen.setdefault(int(user_code), set()).update(int(i) for i in item_codes)

    def candidates(self, users: np.ndarray) -> Recs:
        """Top-``n_candidates`` of the model's scores, known and online-seen items masked."""
        users = np.asarray(users, dtype=np.int64)
        s = np.array(self.model.score(users), dtype=np.float32)
        seen = self.seen[users]
        rows = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
        s[rows, seen.indices] = -np.inf
        if self._online_seen:
            with self._seen_lock:
                for r, u in enumerate(users.tolist()):
                    extra = self._online_seen.get(u)
                    if extra:
                        s[r, list(extra)] = -np.inf
        n = min(self.config.n_candidates, self.n_items)
        top = np.argpartition(-s, n - 1, axis=1)[:, :n] if n < self.n_items else None
        if top is None:
            top = np.broadcast_to(np.arange(self.n_items), s.shape).copy()
        vals = np.take_along_axis(s, top, 1)
        order = np.argsort(-vals, axis=1, kind="stable")
        items = np.take_along_axis(top, order, 1)
        vals = np.take_along_axis(vals, order, 1)
        items = np.where(np.isfinite(vals), items, -1)
        return Recs(users=users, items=items, scores=vals)

    def recommend_codes(
        self, users: np.ndarray, k: int, post: str = "none", strength: float = 0.0
    ) -> Recs:
        """Top-``k`` for user codes (vectorised), re-ranked by ``post`` at ``strength``."""
        if not 1 <= k <= self.config.k_max:
            raise ConfigError(f"k must be in [1, {self.config.k_max}], got {k}")
        cand = self.candidates(users)
        if post == "none" or strength <= 0.0:
            items, scores = cand.items[:, :k], cand.scores[:, :k]
            return Recs(users=cand.users, items=items, scores=np.where(items >= 0, scores, -np.inf))
        rr = copy.copy(self.reranker(post))
        rr.config = rr.config.model_copy(update={"k": k, "strength": float(strength)})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DegenerateMetricWarning)
            return rr.rerank(cand, self.context)

    def popular_items(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cold-start list: the ``k`` most popular training items and their counts."""
        top = self.popular[:k]
        return top, self.item_pop[top]

    def explain(self, user_code: int, items: np.ndarray) -> list[list[tuple[int, float]]]:
        """For each item, the user's training-history items that contributed most.

        ItemKNN: the exact contributions ``W[i, j]`` of history item ``i`` to the score of
        ``j``. Embedding models: cosine of item embeddings. Others: cosine of the items'
        training interaction columns. Only positive weights, at most ``n_explain`` per item.
        """
        n = self.config.n_explain
        items = np.asarray(items, dtype=np.int64)
        hist = self.history.indices[
            self.history.indptr[user_code] : self.history.indptr[user_code + 1]
        ]
        if n == 0 or len(hist) == 0 or len(items) == 0:
            return [[] for _ in items]
        ok = items >= 0
        safe = np.where(ok, items, 0)
        if self.explainer == "itemknn_similarity":
            m = self._sim[hist][:, safe].toarray()
        elif self.explainer == "embedding_cosine":
            m = self._emb[hist] @ self._emb[safe].T
        else:
            m = (self._xn[:, hist].T @ self._xn[:, safe]).toarray()
        m = np.asarray(m, dtype=np.float64)
        take = min(n, len(hist))
        order = np.argsort(-m, axis=0, kind="stable")[:take]  # [take, len(items)]
        out: list[list[tuple[int, float]]] = []
        for c in range(len(items)):
            if not ok[c]:
                out.append([])
                continue
            rows = order[:, c]
            out.append([(int(hist[r]), float(m[r, c])) for r in rows if m[r, c] > 0])
        return out


__all__ = ["ServingPipeline", "load_saved_model", "saved_models"]
