"""TextTwoTower: a two-tower recommender over language-model embeddings of item and user text.

Item tower: ``q_i = A e_i (+ v_i)`` where ``e_i`` is the frozen sentence-encoder embedding of the
item text (title with its article restored, year, genres; :class:`~debiasrec.lm.templates.ItemTemplate`),
``A`` a trainable adapter and ``v_i`` an optional trainable item-id embedding (``item_ids=True``:
a hybrid model; ``False``: text only, so unseen items are scored from their text alone).

User tower: ``p_u = MLP([B t_u ; mean_{j in H_u} (C e_j + w_j)])``: ``t_u`` is the embedding of the
user text (profile fields such as age, gender and occupation, then the most recent history titles;
:class:`~debiasrec.lm.templates.UserTemplate`), and the second half pools the user's training
history through a history adapter ``C`` (plus optional history-id embeddings ``w_j``). During
training a random share ``history_dropout`` of the pooled history is dropped (a denoising user tower,
as the input dropout of Mult-VAE), so the model cannot simply copy its input.

Score ``s(u, i) = <p_u, q_i>``. Loss (``loss="softmax"``): the multinomial log-likelihood of the
user's training items under a softmax over the whole catalog (Liang et al., WWW 2018; Covington et
al., RecSys 2016), or sampled softmax with ``n_negatives`` uniform negatives and the log-Q correction
for catalogs above ``full_softmax_max_items``; ``loss="bpr"`` uses BPR on (user, positive, negative)
triples (Rendle et al., UAI 2009).

Whether demographics in the input create bias is measured by training the same model with
``profile=False`` (the user text lists history titles only) and ``profile=True``. Sensitive
attributes are never model inputs unless they are written in the user text by the template.

The encoder is frozen by default (embeddings are computed once and cached on disk, see
:class:`~debiasrec.lm.encoder.SentenceEncoder`); ``tune="last_layer"`` trains the encoder's last
transformer layer on the item texts (the hidden states entering it are computed once), which is
practical on a CPU for catalogs of a few thousand items.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.errors import ConfigError, DataError
from debiasrec.models.base import MODELS, ModelConfig
from debiasrec.models.capabilities import (
    ItemEmbeddings,
    ItemRepresentation,
    PairScorer,
    PairwiseTraining,
    TextScorer,
    UserEmbeddings,
    UserFilterHost,
    UserRepresentation,
)
from debiasrec.models.torch_base import PairSampler, TorchModelConfig, TorchRecommender
from debiasrec.training.trainer import TrainerConfig


def _t2t_train_defaults() -> TrainerConfig:
    # lr chosen by validation NDCG@10 on ML-100K (benchmarks/RESULTS.md).
    return TrainerConfig(epochs=200, lr=5e-3, batch_size=256, patience=4, eval_every=2)


class TextTwoTowerConfig(TorchModelConfig):
    """TextTwoTower hyper-parameters (the templates are config too)."""

    encoder: str | None = Field(None, description="encoder name/path; None = all-MiniLM-L6-v2")
    cache_dir: str | None = Field(None, description="embedding cache (None: ~/.cache/debiasrec)")
    profile: bool = Field(
        False,
        description="write the profile fields (the dataset's sensitive attributes, e.g. age, "
        "gender, occupation) into the user text; off by default: no model needs them",
    )
    user_text: bool = Field(True, description="use the encoded user text in the user tower")
    history: bool = Field(True, description="pool the training history in the user tower")
    item_ids: bool = Field(True, description="add trainable item-id embeddings (hybrid model)")
    item_template: dict[str, Any] = Field(default_factory=dict)
    user_template: dict[str, Any] = Field(default_factory=dict)
    dim: int = Field(128, ge=1)
    hidden: int = Field(256, ge=1)
    history_dropout: float = Field(0.5, ge=0.0, lt=1.0)
    loss: Literal["softmax", "bpr"] = "softmax"
    full_softmax_max_items: int = Field(20000, ge=1)
    n_negatives: int = Field(1024, ge=1)
    counterfactual_text: list[Literal["swap", "remove"]] = Field(
        default_factory=list,
        description="counterfactual text augmentation (with profile=True): every user text "
        "also appears with its sensitive fields swapped to another value ('swap') or removed "
        "('remove'), with the same targets; each training step reads one of the versions at "
        "random",
    )
    tune: Literal["frozen", "last_layer"] = "frozen"
    init_std: float = Field(0.01, gt=0)
    train: TrainerConfig = Field(default_factory=_t2t_train_defaults)


class _Towers(torch.nn.Module):
    item_text: torch.Tensor  # buffers
    user_text: torch.Tensor

    def __init__(self, n_users: int, n_items: int, d_enc: int, cfg: TextTwoTowerConfig) -> None:
        super().__init__()
        # Frozen text features travel with the model (buffers are saved, not trained).
        self.register_buffer("item_text", torch.zeros(n_items, d_enc))
        self.register_buffer("user_text", torch.zeros(n_users, d_enc))
        self.item_adapter = torch.nn.Linear(d_enc, cfg.dim)
        self.item_id = torch.nn.Embedding(n_items, cfg.dim) if cfg.item_ids else None
        # Per-item bias (popularity); from the text when the model must score unseen items.
        self.item_bias = torch.nn.Parameter(torch.zeros(n_items)) if cfg.item_ids else None
        self.text_bias = torch.nn.Linear(d_enc, 1)
        parts = 0
        if cfg.user_text:
            self.user_adapter = torch.nn.Linear(d_enc, cfg.hidden)
            parts += cfg.hidden
        if cfg.history:
            self.hist_adapter = torch.nn.Linear(d_enc, cfg.hidden)
            self.hist_id = torch.nn.Embedding(n_items, cfg.hidden) if cfg.item_ids else None
            parts += cfg.hidden
        self.user_mlp = torch.nn.Sequential(
            torch.nn.Tanh(), torch.nn.Linear(parts, cfg.hidden), torch.nn.Tanh(),
            torch.nn.Linear(cfg.hidden, cfg.dim),
        )  # fmt: skip
        self.last_layer: torch.nn.Module | None = None


@MODELS.register
class TextTwoTower(
    TorchRecommender[TextTwoTowerConfig], UserRepresentation, ItemRepresentation, PairScorer, PairwiseTraining, UserEmbeddings, ItemEmbeddings, UserFilterHost, TextScorer
):
    """Two towers over frozen (or last-layer-tuned) sentence-encoder embeddings."""

    name = "text2tower"
    Config = TextTwoTowerConfig
    module: _Towers
    _gen: torch.Generator | None = None  # drives history dropout during training
    _cf_text: torch.Tensor | None = None  # counterfactual user-text embeddings (training only)
    _enc: Any = None

    # ------------------------------------------------------------------ text features
    def _encoder(self) -> Any:
        from debiasrec.lm.encoder import SentenceEncoder

        cfg = self.config
        if self._enc is None:
            self._enc = SentenceEncoder(cfg.encoder, cache_dir=cfg.cache_dir)
        return self._enc

    def renderer(self, train: Dataset) -> Any:
        """The :class:`~debiasrec.lm.templates.TextRenderer` this model writes texts with."""
        from debiasrec.lm.templates import ItemTemplate, TextRenderer, UserTemplate

        cfg = self.config
        ut = UserTemplate.model_validate(cfg.user_template)
        if not cfg.profile:
            ut = ut.model_copy(update={"profile": []})
        return TextRenderer(
            train, item_template=ItemTemplate.model_validate(cfg.item_template), user_template=ut
        )

    def _build(self, train: Dataset, gen: torch.Generator) -> None:
        cfg = self.config
        if not (cfg.user_text or cfg.history):
            raise ConfigError("text2tower: user_text and history are both off; enable one")
        enc = self._encoder()
        self._renderer = self.renderer(train)
        item_emb = enc.encode(self._renderer.item_texts())
        user_emb = (
            enc.encode(self._renderer.user_texts(np.arange(train.n_users)))
            if cfg.user_text
            else np.zeros((train.n_users, item_emb.shape[1]), np.float32)
        )
        self._cf_text = self._counterfactual_embeddings(train, enc, gen) if cfg.user_text else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            self.module = _Towers(train.n_users, train.n_items, item_emb.shape[1], cfg)
        with torch.no_grad():
            self.module.item_text.copy_(torch.from_numpy(item_emb))
            self.module.user_text.copy_(torch.from_numpy(user_emb))
            for emb in (self.module.item_id, getattr(self.module, "hist_id", None)):
                if emb is not None:
                    emb.weight.normal_(0.0, cfg.init_std, generator=gen)
        if cfg.tune == "last_layer":
            self._setup_last_layer(self._renderer.item_texts())
        self._gen = gen
        self._set_rows(train.csr())
        self._pairs = PairSampler(self._rows, train.n_items)  # the BPR loss is unweighted

    def _counterfactual_embeddings(
        self, train: Dataset, enc: Any, gen: torch.Generator
    ) -> torch.Tensor | None:
        """Encoded counterfactual user texts ``[n_versions, n_users, d]`` (training only)."""
        from debiasrec.lm.templates import Variant

        cfg = self.config
        if not cfg.counterfactual_text:
            return None
        fields = self._renderer.sensitive_fields
        if not fields:
            raise ConfigError(
                "text2tower: counterfactual_text needs sensitive fields in the user text; set "
                "profile=True"
            )
        users = np.arange(train.n_users)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        rng = np.random.default_rng(seed)
        table = train.user_table
        out = []
        for kind in cfg.counterfactual_text:
            if kind == "remove":
                texts = self._renderer.user_texts(
                    users, Variant("remove", {f: None for f in fields})
                )
            else:  # each user's fields set to another observed value, drawn per user and field
                values = {f: table[f].dropna().unique() for f in fields}
                swaps = []
                for u in users:
                    new = {}
                    for f in fields:
                        own = table.at[int(u), f]
                        other = [v for v in values[f] if v != own]
                        if other:
                            new[f] = other[int(rng.integers(len(other)))]
                    swaps.append(new)
                texts = self._renderer.user_texts(users, Variant("swap"), overrides=swaps)
            out.append(enc.encode(texts))
        return torch.from_numpy(np.stack(out))

    def _setup_last_layer(self, texts: Sequence[str]) -> None:
        """Cache the hidden states entering the encoder's last layer; train a copy of that layer."""
        import copy

        enc = self._encoder()
        mod, tok = enc.module(), enc.tokenizer()
        layers = _encoder_layers(mod)
        batch = tok(list(texts), padding=True, truncation=True, max_length=enc.max_length,
                    return_tensors="pt")  # fmt: skip
        with torch.inference_mode():
            out = mod(**batch, output_hidden_states=True)
        self._ll_hidden = out.hidden_states[-2].clone()
        self._ll_mask = batch["attention_mask"].clone()
        layer = copy.deepcopy(layers[-1])
        layer.requires_grad_(True)
        self.module.last_layer = layer

    def _item_text(self) -> torch.Tensor:
        if self.module.last_layer is None or not self.module.training:
            return self.module.item_text
        enc = self._encoder()
        mask = self._ll_mask
        ext = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        h = self.module.last_layer(self._ll_hidden, attention_mask=ext)
        h = h[0] if isinstance(h, tuple) else h
        return enc.pool(h, mask)

    def _after_fit(self, train: Dataset) -> None:
        self._cf_text = None  # training-only augmentation
        if self.module.last_layer is not None:  # freeze the tuned item texts for inference
            with torch.no_grad():
                self.module.train()
                self.module.item_text.copy_(self._item_text())
                self.module.eval()
            self.module.last_layer = None

    def _build_empty(self) -> None:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            self.module = _Towers(self.n_users_, self.n_items_, self._d_enc_saved, cfg)

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._d_enc_saved = int(state["item_text"].shape[1])
        super()._load_state(state)

    def _after_load(self) -> None:
        self._set_rows(self.train_csr_)

    def _set_rows(self, csr: sp.csr_matrix) -> None:
        self._rows = csr.tocsr().astype(np.float32)
        counts = np.diff(self._rows.indptr)
        self._active = np.flatnonzero(counts > 0)

    # ------------------------------------------------------------------ towers
    @classmethod
    def capabilities(cls, config: ModelConfig | None = None) -> set[type]:
        """Pairwise batches (``users``/``pos``/``neg``) only with ``loss = "bpr"``."""
        caps = super().capabilities(config)
        if not isinstance(config, TextTwoTowerConfig) or config.loss != "bpr":
            caps.discard(PairwiseTraining)
        return caps

    def item_repr(self, items: torch.Tensor) -> torch.Tensor:
        """Item-tower output of item codes ``items`` ``[len(items), dim]``."""
        return self.all_item_repr()[items]

    def all_item_repr(self) -> torch.Tensor:
        """Item-tower output for every item ``[n_items, dim]``."""
        q = self.module.item_adapter(self._item_text())
        if self.module.item_id is not None:
            q = q + self.module.item_id.weight
        return q

    def _pooled_history(self, users: np.ndarray, drop: bool) -> torch.Tensor:
        rows = self._rows[users]
        if drop and self.config.history_dropout > 0:
            keep = torch.rand(rows.nnz, generator=self._gen) >= self.config.history_dropout
            data = keep.numpy().astype(np.float32)
            rows = sp.csr_matrix((data, rows.indices, rows.indptr), shape=rows.shape)
        n = np.asarray(rows.sum(1)).ravel()
        rows = sp.diags(1.0 / np.maximum(n, 1.0)).astype(np.float32) @ rows
        coo = rows.tocoo()
        idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        w = torch.sparse_coo_tensor(
            idx, torch.from_numpy(coo.data), rows.shape, check_invariants=False
        )
        h = self.module.hist_adapter(self._item_text())
        if self.module.hist_id is not None:
            h = h + self.module.hist_id.weight
        return torch.sparse.mm(w, h)

    def _user_from(
        self, users: np.ndarray, text_emb: torch.Tensor | None, hist_users: np.ndarray | None = None
    ) -> torch.Tensor:
        cfg = self.config
        parts = []
        if cfg.user_text:
            idx = torch.from_numpy(users)
            t = self.module.user_text[idx] if text_emb is None else text_emb
            cf = getattr(self, "_cf_text", None)
            if text_emb is None and cf is not None and self.module.training:
                # Counterfactual augmentation: each user reads its own text or one version.
                pick = torch.randint(0, cf.shape[0] + 1, (len(users),), generator=self._gen)
                alt = cf[(pick - 1).clamp(min=0), idx]
                t = torch.where((pick > 0)[:, None], alt, t)
            parts.append(self.module.user_adapter(t))
        if cfg.history:
            hu = users if hist_users is None else hist_users
            parts.append(self._pooled_history(hu, drop=self.module.training))
        return self.filter_user(self.module.user_mlp(torch.cat(parts, 1)))

    def user_repr(self, users: torch.Tensor) -> torch.Tensor:
        """User-tower output (what adversaries and probes see)."""
        return self._user_from(users.numpy().astype(np.int64), None)

    # ------------------------------------------------------------------ training
    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        cfg = self.config
        if cfg.loss == "bpr":
            # pairs per step x16: keep the steps per epoch near the softmax loss's
            yield from self._pairs.batches(batch_size * 16, rng)
            return
        perm = rng.permutation(self._active)
        for s in range(0, len(perm), batch_size):
            batch = {"users": torch.from_numpy(perm[s : s + batch_size])}
            if train.n_items > cfg.full_softmax_max_items:
                batch["neg"] = torch.from_numpy(rng.integers(0, train.n_items, cfg.n_negatives))
            yield batch

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        if cfg.loss == "bpr":
            uniq, inv = torch.unique(batch["users"], return_inverse=True)
            p = self.user_repr(uniq)[inv]
            q, b = self.all_item_repr(), self.item_bias()
            pi, ni = batch["pos"], batch["neg"]
            x = (p * (q[pi] - q[ni])).sum(1) + b[pi] - b[ni]
            return {"bpr": F.softplus(-x).mean()}
        users = batch["users"]
        p = self.user_repr(users)
        q, b = self.all_item_repr(), self.item_bias()
        x = torch.from_numpy(self._rows[users.numpy()].toarray())
        if "neg" in batch:  # sampled softmax over the positives and shared uniform negatives
            rows = self._rows[users.numpy()].tocoo()
            pos_items = torch.from_numpy(rows.col.astype(np.int64))
            pos_rows = torch.from_numpy(rows.row.astype(np.int64))
            pos_logit = (p[pos_rows] * q[pos_items]).sum(1) + b[pos_items]
            neg = batch["neg"]
            neg_logit = p @ q[neg].T + b[neg] + float(np.log(self.n_items_ / len(neg)))
            lse = torch.logsumexp(torch.cat([pos_logit[:, None], neg_logit[pos_rows]], 1), 1)
            return {"softmax": (lse - pos_logit).mean()}
        logits = p @ q.T + b
        # Multinomial log-likelihood summed over each user's items (as Mult-VAE), per user.
        nll = -(F.log_softmax(logits, dim=1) * x).sum(1)
        return {"softmax": nll.mean()}

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Differentiable scores of ``(users[r], items[r])`` pairs."""
        uniq, inv = torch.unique(users, return_inverse=True)
        p = self.user_repr(uniq)[inv]
        return (p * self.all_item_repr()[items]).sum(1) + self.item_bias()[items]

    # ------------------------------------------------------------------ inference
    def item_bias(self) -> torch.Tensor:
        """Per-item score offset ``[n_items]`` (text-based, plus an id-based part if enabled)."""
        b = self.module.text_bias(self._item_text()).squeeze(1)
        if self.module.item_bias is not None:
            b = b + self.module.item_bias
        return b

    def _logits(self, p: torch.Tensor) -> torch.Tensor:
        return p @ self.all_item_repr().T + self.item_bias()

    def score_block(self, users: np.ndarray) -> torch.Tensor:
        return self._logits(self.user_repr(torch.as_tensor(users, dtype=torch.long)))

    def score_with_texts(
        self,
        user_codes: Sequence[int] | np.ndarray,
        texts: Sequence[str],
        *,
        history_users: Sequence[int] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores ``[n, n_items]`` when the user tower reads ``texts`` instead of the stored texts.

        For counterfactual audits: the same users with their profile swapped or removed.
        ``history_users`` pools another user's history instead (the "other history" control).
        """
        self._check_fitted()
        users = self._check_users(np.asarray(user_codes))
        if len(texts) != len(users):
            raise DataError(f"score_with_texts: {len(users)} users but {len(texts)} texts")
        if not self.config.user_text:
            emb = None
        else:
            emb = torch.from_numpy(self._encoder().encode(list(texts)))
        hist = None if history_users is None else self._check_users(np.asarray(history_users))
        with torch.no_grad():
            return self._logits(self._user_from(users, emb, hist)).numpy().astype(np.float32)

    def user_texts(self, train: Dataset, users: Sequence[int] | np.ndarray) -> list[str]:
        """The user texts this model reads (as rendered from ``train``)."""
        return self.renderer(train).user_texts(np.asarray(users))

    def user_embeddings(self) -> np.ndarray:
        self._check_fitted()
        with torch.no_grad():
            return self.user_repr(torch.arange(self.n_users_)).numpy().copy()

    def item_embeddings(self) -> np.ndarray:
        self._check_fitted()
        with torch.no_grad():
            return self.all_item_repr().numpy().copy()

    def item_text_embeddings(self) -> np.ndarray:
        """The (frozen or tuned) encoder embeddings of the item texts ``[n_items, d_enc]``."""
        self._check_fitted()
        return self.module.item_text.numpy().copy()


def _encoder_layers(mod: Any) -> Any:
    """The list of transformer layers of a BERT-like encoder (``encoder.layer``)."""
    enc = getattr(mod, "encoder", None)
    layers = getattr(enc, "layer", None) or getattr(enc, "layers", None)
    if layers is None:
        raise ConfigError(
            "tune='last_layer' supports BERT-like encoders (module.encoder.layer); this encoder "
            f"is a {type(mod).__name__}: use tune='frozen'"
        )
    sig = inspect.signature(layers[-1].forward)
    if "attention_mask" not in sig.parameters:
        raise ConfigError("tune='last_layer': the encoder layer takes no attention_mask")
    return layers
