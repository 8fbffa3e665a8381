"""Generative LLM ranker: a retriever proposes candidates, a causal LM ranks them by likelihood.

Pipeline for a user ``u`` (text ``x_u`` from :class:`~debiasrec.lm.templates.TextRenderer`:
profile fields and recent history titles):

1. **Candidates**: the top-``n_candidates`` items of a retriever (any registered
   :class:`~debiasrec.models.base.Recommender`, BPR by default) with the user's training items
   masked. Held-out items are *not* forced in: when the retriever misses them, so does the ranker.
2. **Scoring**: each candidate title ``c`` is scored by the LLM's log-likelihood of answering
   ``c`` to the instruction prompt with ``x_u`` (:class:`~debiasrec.lm.llm.CausalLM`, packed
   scoring): ``"sum"`` = log p(c | prompt_u) or ``"mean"`` = the same divided by the token count.
3. **Calibration** (``calibration="pmi"``): ``s(c) = log p(c | prompt_u) - log p(c | prompt_0)``
   where ``prompt_0`` is the same prompt with a content-free user text (``"N/A"``), i.e.
   contextual calibration (Zhao et al., "Calibrate Before Use", ICML 2021) in its PMI form
   (Holtzman et al., "Surface Form Competition", EMNLP 2021). The prior term depends on the item
   only, so it is computed once per item and cached. It removes what the LM prefers regardless
   of the user: long, predictable or frequent titles.
4. **Fusion** (optional): ``(1 - w) z(s_llm) + w z(s_retriever)`` with per-user z-scores over the
   candidates; ``w = 0`` (default) ranks by the LLM alone.

Items outside the candidate set get scores below every candidate (ordered by the retriever when
``outside_candidates="retriever"``, else ``-inf``), so rankings beyond the candidates fall back
to the retriever and evaluation never ranks them above a candidate.

Fine-tuning (``finetune_users > 0``): LoRA adapters (Hu et al., 2021) are trained on
next-item prediction in time order for a sample of users: the prompt lists the user's profile and
the items before position ``t``, the target is the title of item ``t``. Adapters are saved with
the model (safetensors); the base LLM is referenced by name, never copied.

Generation mode (:meth:`LLMRanker.recommend_generate`): the LLM writes a list of titles, which
are matched back to the catalog (exact, then fuzzy); unmatched answers are counted. This is the
setting of FaiRLLM (Zhang et al., "Is ChatGPT Fair for Recommendation?", RecSys 2023). With
``mode="generate"`` the ranker's scores (and so ``recommend`` and the counterfactual audit) are the
generated lists themselves: the matched items in the order written, every other item ``-inf``.

Served models (``endpoint=``): the LLM is any model behind an OpenAI-compatible API
(:class:`~debiasrec.lm.api.EndpointLM`: vLLM, SGLang, llama.cpp, Ollama, hosted APIs) instead of
an in-process one; scoring mode needs a server that echoes prompt log-probabilities, generation
mode any chat-completions server. Fine-tuning needs the weights, so it is in-process only.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator

from debiasrec.data.dataset import Dataset
from debiasrec.errors import ConfigError, DataError
from debiasrec.lm.api import EndpointSettings
from debiasrec.lm.templates import ItemTemplate, TextRenderer, UserTemplate, recent_history
from debiasrec.models.base import MODELS, ModelConfig, Recommender
from debiasrec.models.capabilities import (
    TextScorer,
)
from debiasrec.random import derive_seed, np_rng

_DEFAULT_INSTRUCTION = (
    "{user}\n\nRecommend one movie this user will watch next. Answer with the title only."
)
_DEFAULT_GENERATE = (
    "{user}\n\nList {k} movies this user will watch next, one title per line, titles only."
)


class LLMRankerConfig(ModelConfig):
    """Settings of :class:`LLMRanker`."""

    # language model
    llm: str | None = Field(
        None,
        description="hub id, folder or .gguf path; None = SmolLM2-135M. With an endpoint: the "
        "served model's tokenizer (scoring mode); None = endpoint.model",
    )
    endpoint: EndpointSettings | None = Field(
        None, description="use the model served behind this OpenAI-compatible API"
    )
    mode: Literal["score", "generate"] = Field(
        "score",
        description="score: rank the retriever's candidates by likelihood; generate: the LLM "
        "writes a top-generate_k list, matched to the catalog (other items -inf)",
    )
    generate_k: int = Field(10, ge=1, description="list length asked for in generate mode")
    llm_cache_dir: str | None = Field(None, description="dequantized-weights cache root")
    device: str | None = Field(
        None,
        description="where the LLM runs: 'auto' (None: CUDA when available, or the "
        "experiment's [run] device), 'cpu', 'cuda', 'cuda:N'",
    )
    dtype: str = "float32"
    system_prompt: str | None = None
    instruction: str = _DEFAULT_INSTRUCTION
    batch_size: int = Field(8, ge=1, description="prompts per packed forward pass")
    max_prompt_tokens: int = Field(1024, ge=16)
    max_packed_tokens: int = Field(2048, ge=1)
    # retrieval
    retriever: str = "bpr"
    retriever_params: dict[str, Any] = Field(default_factory=dict)
    n_candidates: int = Field(30, ge=1)
    # scoring
    length_norm: Literal["sum", "mean"] = "mean"
    calibration: Literal["none", "pmi"] = "none"
    content_free_user: str = Field("N/A", description="user text of the calibration prompt")
    fusion_weight: float | Literal["validation"] = Field(
        0.0,
        description="weight w of the retriever in (1 - w) z(llm) + w z(retriever); 0 = the LLM "
        "alone, 1 = the retriever's order; 'validation' = the grid value with the best "
        "validation NDCG@fusion_k (fit needs valid)",
    )
    fusion_grid: list[float] = Field(
        default_factory=lambda: [round(0.05 * i, 2) for i in range(21)],
        description="weights tried by fusion_weight='validation'",
    )
    fusion_k: int = Field(10, ge=1, description="cut-off of the validation NDCG")
    fusion_val_users: int = Field(
        200, ge=0, description="validation users sampled to choose the weight; 0 = all"
    )
    score_cache: int = Field(
        200_000,
        ge=0,
        description="(user, prompt) LLM score rows kept in memory, so that re-scoring the same "
        "prompt (an audit's neutral variant, another fusion weight) costs nothing; 0 = off",
    )
    outside_candidates: Literal["retriever", "-inf"] = "retriever"
    # templates
    user_template: UserTemplate = Field(
        default_factory=lambda: UserTemplate(profile=[]),
        description="user text of the prompt; default: history titles only (no sensitive "
        "fields); profile=None writes the dataset's sensitive attributes too",
    )
    item_template: ItemTemplate = Field(default_factory=ItemTemplate)
    # fine-tuning
    finetune_users: int | Literal["all"] = Field(
        0, description="sampled users (at least 0); 0 = zero-shot; 'all' = every eligible user"
    )
    finetune_targets_per_user: int = Field(
        1, ge=1, description="examples per user (next_title: targets; rank: lists)"
    )
    finetune_objective: Literal["next_title", "rank"] = Field(
        "next_title",
        description="next_title: cross-entropy of the next item's title; rank: listwise "
        "softmax over retriever candidates (see the module doc)",
    )
    finetune_method: Literal["lora", "full"] = Field(
        "lora", description="LoRA adapters, or every weight (full fine-tuning, small models)"
    )
    finetune_schedule: Literal["constant", "linear"] = "constant"
    finetune_weight_decay: float = Field(0.0, ge=0)
    rank_holdout: float = Field(
        0.1, gt=0, lt=1, description="share of each user's training items held out as positives"
    )
    rank_holdout_seed: int = Field(0, description="seed of the held-out items (fixed by config)")
    rank_candidates: int | None = Field(
        None, ge=2, description="inner retriever's candidates per user; None = n_candidates"
    )
    rank_positives: int = Field(3, ge=1, description="positives per list (at most)")
    rank_negatives: int = Field(
        12, ge=0, description="negatives per list, drawn from the candidates; 0 = all"
    )
    rank_lm_weight: float = Field(
        0.0, ge=0, description="weight of the positives' next-title cross-entropy"
    )
    rank_temperature: float = Field(1.0, gt=0)
    finetune_epochs: int = Field(1, ge=1)
    finetune_lr: float = Field(1e-3, gt=0)
    finetune_batch_size: int = Field(4, ge=1)
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    # generation
    generate_instruction: str = _DEFAULT_GENERATE
    generate_max_new_tokens: int = Field(160, ge=1)
    match_cutoff: float = Field(0.85, gt=0, le=1)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        from debiasrec.training.device import check_device_setting

        return None if v is None else check_device_setting(v)

    def model_post_init(self, __context: Any) -> None:
        if "{user}" not in self.instruction:
            raise ConfigError("llm_ranker: instruction must contain '{user}'")
        if "{user}" not in self.generate_instruction:
            raise ConfigError("llm_ranker: generate_instruction must contain '{user}'")
        if self.retriever.lower() == "llm_ranker":
            raise ConfigError("llm_ranker: the retriever cannot be another llm_ranker")
        if isinstance(self.finetune_users, int) and self.finetune_users < 0:
            raise ConfigError("llm_ranker: finetune_users must be >= 0 or 'all'")
        bad = [w for w in self.fusion_grid if not 0 <= w <= 1]
        if bad or not self.fusion_grid:
            raise ConfigError(f"llm_ranker: fusion_grid must be weights in [0, 1], got {bad}")
        if isinstance(self.fusion_weight, float) and not 0 <= self.fusion_weight <= 1:
            raise ConfigError(
                f"llm_ranker: fusion_weight must be in [0, 1] or 'validation', got "
                f"{self.fusion_weight}"
            )
        if self.endpoint is not None and self.finetune_users != 0:
            raise ConfigError(
                "llm_ranker: fine-tuning (finetune_users > 0) needs the model's weights; it "
                "cannot be done through an endpoint"
            )


@dataclass(frozen=True)
class CandidateScores:
    """Per-user candidate lists and every score behind the final ranking.

    Attributes:
        users: user codes ``[n]``.
        items: candidate item codes ``[n, N]`` in retriever order (``-1`` padding).
        retriever: retriever scores of the candidates.
        logp_sum: LLM log-likelihood of each title given the user prompt.
        n_tokens: scored tokens per title (title + end-of-answer token).
        prior_sum: log-likelihood given the content-free prompt (NaN without calibration).
        scores: the final candidate scores (NaN in padding).
        llm: the LLM's score before fusion (after calibration and length normalisation);
            equal to ``scores`` when the fusion weight is 0.
    """

    users: np.ndarray
    items: np.ndarray
    retriever: np.ndarray
    logp_sum: np.ndarray
    n_tokens: np.ndarray
    prior_sum: np.ndarray
    scores: np.ndarray
    llm: np.ndarray

    def ranked(self, k: int | None = None) -> np.ndarray:
        """Candidates sorted by final score (best first), ``[n, k]`` with ``-1`` padding."""
        s = np.where(np.isnan(self.scores), -np.inf, self.scores)
        order = np.argsort(-s, axis=1, kind="stable")
        out = np.take_along_axis(self.items, order, axis=1)
        out[np.take_along_axis(np.isinf(s), order, axis=1)] = -1
        return out if k is None else out[:, :k]


@dataclass(frozen=True)
class GenerationResult:
    """Output of :meth:`LLMRanker.recommend_generate`.

    Attributes:
        users: user codes.
        items: matched item codes ``[n, k]`` in generated order (``-1`` padding).
        answers: the raw generated texts.
        n_listed: titles parsed from each answer.
        n_unmatched: listed titles matching no catalog item.
        n_fuzzy: titles matched only approximately.
        n_seen: matched titles that are training items of the user (dropped).
        n_duplicate: titles matching an item already listed (dropped).
        unmatched: the unmatched titles of each user.
    """

    users: np.ndarray
    items: np.ndarray
    answers: list[str]
    n_listed: np.ndarray
    n_unmatched: np.ndarray
    n_fuzzy: np.ndarray
    n_seen: np.ndarray
    n_duplicate: np.ndarray
    unmatched: list[list[str]] = field(default_factory=list)


def _encode_strings(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    blobs = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8).copy()
    return (data if len(data) else np.zeros(0, np.uint8)), offsets


def _decode_strings(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = data.tobytes()
    return [raw[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1)]


def _zscore(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.nanmean(x, axis=1, keepdims=True)
        sd = np.nanstd(x, axis=1, keepdims=True)
        return np.where(sd > 0, (x - mu) / np.where(sd > 0, sd, 1.0), 0.0)


def fuse_scores(llm: np.ndarray, retriever: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) z(llm) + weight z(retriever)``, z-scored per row over the candidates.

    NaN cells (padding, masked candidates) stay NaN and do not enter the z-scores.
    """
    if not 0 <= weight <= 1:
        raise ConfigError(f"fusion weight must be in [0, 1], got {weight}")
    llm = np.asarray(llm, dtype=np.float64)
    retr = np.where(np.isnan(llm), np.nan, np.asarray(retriever, dtype=np.float64))
    out = (1 - weight) * _zscore(llm) + weight * _zscore(retr)
    out[np.isnan(llm)] = np.nan
    return out


def ndcg_of_candidates(
    scores: np.ndarray, items: np.ndarray, truth: Any, k: int = 10
) -> np.ndarray:
    """Per-user NDCG@k of the candidates ranked by ``scores`` (NaN = not rankable).

    ``truth`` is a users x items sparse matrix aligned with the rows; the ideal DCG counts every
    true item (those the candidates miss included), as full-ranking evaluation does. Users
    without true items get NaN.
    """
    from debiasrec.metrics import DegenerateMetricWarning
    from debiasrec.metrics.ranking import ranking_metrics

    s = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(items, order, axis=1)
    top[np.take_along_axis(np.isinf(s), order, axis=1)] = -1
    if top.shape[1] < k:
        top = np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=-1)
    with warnings.catch_warnings():
        # users without truth: NaN, reported by the caller
        warnings.simplefilter("ignore", DegenerateMetricWarning)
        return ranking_metrics(top, truth, ks=(k,), metrics=("ndcg",))[f"ndcg@{k}"]


def fusion_sweep(
    llm: np.ndarray,
    retriever: np.ndarray,
    items: np.ndarray,
    truth: Any,
    grid: Sequence[float],
    *,
    k: int = 10,
) -> dict[float, float]:
    """Mean NDCG@k (over users with true items) of the fused ranking for each weight of ``grid``.

    ``weight`` is the retriever's (0 = LLM alone, 1 = retriever order); see :func:`fuse_scores`.
    """
    out = {}
    for w in grid:
        nd = ndcg_of_candidates(fuse_scores(llm, retriever, float(w)), items, truth, k)
        out[float(w)] = float(np.nanmean(nd)) if np.isfinite(nd).any() else float("nan")
    return out


def best_weight(table: dict[float, float]) -> float:
    """The weight with the highest value (the first one in grid order on ties)."""
    finite = {w: v for w, v in table.items() if np.isfinite(v)}
    if not finite:
        raise DataError("best_weight: no finite value (no user with true items?)")
    top = max(finite.values())
    return next(w for w, v in finite.items() if v == top)


@MODELS.register
class LLMRanker(Recommender[LLMRankerConfig], TextScorer):
    """Retriever candidates re-ranked by a causal LM's likelihood of each title (see module doc).

    Example:
        >>> model = LLMRanker(n_candidates=30, calibration="pmi").fit(train, rng=0)  # doctest: +SKIP
        >>> model.recommend(users, k=10)  # doctest: +SKIP
    """

    name = "llm_ranker"
    Config = LLMRankerConfig

    # ------------------------------------------------------------------ parts
    def _make_lm(self, device: Any = None) -> Any:
        from debiasrec.lm.llm import CausalLM

        cfg = self.config
        if cfg.endpoint is not None:
            from debiasrec.lm.api import EndpointLM

            return EndpointLM(
                cfg.endpoint,
                tokenizer=cfg.llm,
                cache_dir=cfg.llm_cache_dir,
                system_prompt=cfg.system_prompt,
            )
        return CausalLM(
            cfg.llm,
            cache_dir=cfg.llm_cache_dir,
            device=cfg.device if device is None else str(device),
            dtype=cfg.dtype,
            system_prompt=cfg.system_prompt,
            max_prompt_tokens=cfg.max_prompt_tokens,
            max_packed_tokens=cfg.max_packed_tokens,
        )

    def _lora_settings(self) -> Any:
        from debiasrec.lm.llm import LoraSettings

        cfg = self.config
        return LoraSettings(
            rank=cfg.lora_rank,
            alpha=cfg.lora_alpha,
            dropout=cfg.lora_dropout,
            target_modules=tuple(cfg.lora_targets),
        )

    def _retriever_class(self) -> type[Recommender]:
        from debiasrec.models import model_class

        return model_class(self.config.retriever)

    @property
    def lm(self) -> Any:
        """The :class:`~debiasrec.lm.llm.CausalLM` (loaded on first use, adapters applied)."""
        self._check_fitted()
        return self.lm_

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        train: Dataset,
        *,
        valid: Dataset | None = None,
        rng: int | np.random.Generator | None = None,
        retriever: Recommender | None = None,
        rank_retriever: Recommender | None = None,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> LLMRanker:
        """Fit the retriever (unless a fitted ``retriever`` is given), then the LLM part.

        Args:
            train: training data.
            valid: validation data (passed to the retriever for early stopping).
            rng: seed or generator (retriever seed, fine-tuning sample, adapter init).
            retriever: an already fitted recommender on the same ``train`` to use as the
                retriever (e.g. shared by several rankers in a comparison). It must be of the
                class ``config.retriever`` names; for :meth:`load` to rebuild it,
                ``config.retriever_params`` should describe it too.
            rank_retriever: for ``finetune_objective="rank"``, an already fitted retriever on
                :meth:`ranking_holdout` ``(train)[0]`` (else one is fitted).
            progress: called as ``progress(step, n_steps, loss)`` after each fine-tuning step.
        """
        if retriever is not None:
            if retriever.name != self._retriever_class().name:
                raise ConfigError(
                    f"the given retriever is a {retriever.name!r} model but config.retriever is "
                    f"{self.config.retriever!r}"
                )
            if (
                not hasattr(retriever, "n_users_")
                or retriever.n_users_ != train.n_users
                or (retriever.n_items_ != train.n_items)
            ):
                raise DataError(
                    "the given retriever must be fitted on the same training data "
                    f"({train.n_users} users x {train.n_items} items)"
                )
        self._given_retriever = retriever
        self._given_rank_retriever = rank_retriever
        self._progress = progress
        try:
            super().fit(train, valid=valid, rng=rng)
        finally:
            self._given_retriever = None
            self._given_rank_retriever = None
            self._progress = None
        return self

    def _fit(
        self, train: Dataset, *, valid: Dataset | None, rng: int | np.random.Generator | None
    ) -> None:
        cfg = self.config
        if cfg.fusion_weight == "validation" and valid is None:  # before hours of fine-tuning
            raise ConfigError("fusion_weight='validation' needs fit(train, valid=...)")
        gen = np_rng(rng)
        renderer = TextRenderer(
            train, item_template=cfg.item_template, user_template=cfg.user_template
        )
        self.titles_: list[str] = list(renderer.titles())
        self.user_texts_: list[str] = renderer.user_texts(np.arange(train.n_users))
        retr_seed = derive_seed(gen)
        given = getattr(self, "_given_retriever", None)
        if given is not None:
            self.retriever_: Recommender = given
        else:
            self.retriever_ = self._retriever_class()(dict(cfg.retriever_params))
            self.retriever_.fit(train, valid=valid, rng=retr_seed)
        lm = getattr(self, "lm_", None)
        if lm is None or cfg.endpoint is not None or getattr(self, "_weights_changed", False):
            lm = self._make_lm()  # full fine-tuning changed the old one's weights
        else:
            from debiasrec.lm.llm import remove_lora

            remove_lora(lm)
        self.lm_ = lm
        self._weights_changed = False
        self._prior: dict[int, float] = {}
        self._memo: dict[tuple[int, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.generation_stats_: list[dict[str, int]] = []
        self.finetune_losses_: list[float] = []
        self.finetune_seconds_ = 0.0
        self.rank_stats_: dict[str, int] = {}
        self.fusion_weight_ = 0.0 if cfg.fusion_weight == "validation" else cfg.fusion_weight
        self.fusion_table_: dict[float, float] = {}
        if cfg.finetune_users != 0 and cfg.finetune_objective == "next_title":
            prompts, targets = self.finetune_examples(train, renderer, rng=gen)
            self._finetune(prompts, targets, seed=derive_seed(gen) % (2**31))
        elif cfg.finetune_users != 0:
            examples = self.ranking_examples(
                train, rng=gen, valid=valid,
                rank_retriever=getattr(self, "_given_rank_retriever", None),
            )  # fmt: skip
            self._finetune_rank(examples, seed=derive_seed(gen) % (2**31))
        if cfg.fusion_weight == "validation":
            self.choose_fusion_weight(valid, rng=gen)

    def finetune_examples(
        self,
        train: Dataset,
        renderer: TextRenderer | None = None,
        *,
        rng: int | np.random.Generator | None = None,
    ) -> tuple[list[str], list[str]]:
        """Next-item prompts and target titles for ``finetune_users`` sampled users.

        For each sampled user (with at least two training items) ``finetune_targets_per_user``
        positions ``t >= 1`` of the time-ordered history are drawn; the prompt is the user text
        with the ``user_template.history`` items before ``t``, the target the title of item ``t``.
        """
        cfg = self.config
        gen = np_rng(rng)
        renderer = renderer or TextRenderer(
            train, item_template=cfg.item_template, user_template=cfg.user_template
        )
        counts = np.bincount(train.users, minlength=train.n_users)
        eligible = np.flatnonzero(counts >= 2)
        if len(eligible) == 0:
            raise DataError("llm_ranker fine-tuning needs users with at least two training items")
        n_users = len(eligible) if cfg.finetune_users == "all" else int(cfg.finetune_users)
        users = np.sort(gen.choice(eligible, min(n_users, len(eligible)), replace=False))
        full = recent_history(train, users, int(counts.max()))
        titles = renderer.titles()
        profiles = renderer.profile_text(users)
        prompts, targets = [], []
        for prof, seq in zip(profiles, full, strict=True):
            n_t = min(cfg.finetune_targets_per_user, len(seq) - 1)
            for t in np.sort(gen.choice(np.arange(1, len(seq)), n_t, replace=False)):
                hist = seq[max(0, t - cfg.user_template.history) : t]
                text = self.compose_user_text(prof, [titles[i] for i in hist])
                prompts.append(cfg.instruction.format(user=text))
                targets.append(titles[seq[t]])
        return prompts, targets

    def compose_user_text(self, profile: str, history_titles: Sequence[str]) -> str:
        """A user text from a profile phrase and history titles, as ``TextRenderer`` writes it."""
        t: UserTemplate = self.config.user_template
        text = t.prefix + profile
        if len(history_titles) and t.history > 0:
            text += t.history_intro + t.history_sep.join(history_titles[-t.history :])
        return text + t.suffix

    def _make_trainable(self, seed: int) -> None:
        from debiasrec.lm.llm import add_lora, enable_full_finetune

        if self.config.finetune_method == "lora":
            add_lora(self.lm_, self._lora_settings(), seed=seed)
        else:
            self._weights_changed = True
            enable_full_finetune(self.lm_)

    def _finetune(self, prompts: list[str], targets: list[str], *, seed: int) -> None:
        from debiasrec.lm.llm import finetune

        cfg = self.config
        start = time.perf_counter()
        self._make_trainable(seed)
        self.finetune_losses_ = finetune(
            self.lm_,
            prompts,
            targets,
            epochs=cfg.finetune_epochs,
            lr=cfg.finetune_lr,
            batch_size=cfg.finetune_batch_size,
            weight_decay=cfg.finetune_weight_decay,
            seed=seed,
        )
        self.finetune_seconds_ = time.perf_counter() - start

    # ------------------------------------------------------------------ ranking objective
    def ranking_holdout(self, train: Dataset) -> tuple[Dataset, sp.csr_matrix]:
        """``(inner training data, held-out users x items matrix)`` of the ranking objective.

        Each user with at least three training items holds out ``round(rank_holdout * n)``
        (at least 1, at most ``n - 2``) random items, drawn with ``rank_holdout_seed``: the same
        config gives the same split. The held-out items play the part of the test items: an
        inner retriever fitted on the rest proposes candidates among which they are positives.
        """
        cfg = self.config
        gen = np.random.default_rng(cfg.rank_holdout_seed)
        n_u = train.n_users
        counts = np.bincount(train.users, minlength=n_u)
        m = np.where(
            counts >= 3,
            np.clip(np.round(cfg.rank_holdout * counts), 1, np.maximum(counts - 2, 1)),
            0,
        ).astype(np.int64)
        key = gen.random(train.n_interactions)
        order = np.lexsort((key, train.users))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        within = np.arange(train.n_interactions) - starts[train.users[order]]
        hold = np.zeros(train.n_interactions, dtype=bool)
        hold[order[within < m[train.users[order]]]] = True
        inner = train.subset(~hold, name=f"{train.name}-rank-inner")
        held = train.subset(hold).csr()
        return inner, held

    def ranking_examples(
        self,
        train: Dataset,
        *,
        rng: int | np.random.Generator | None = None,
        valid: Dataset | None = None,
        rank_retriever: Recommender | None = None,
    ) -> list[Any]:
        """Listwise examples of the ranking objective (``finetune_objective="rank"``).

        1. :meth:`ranking_holdout` splits each user's training items into an inner history and
           held-out items;
        2. an inner retriever (the ``retriever`` class and parameters) is fitted on the inner
           history, and its top ``rank_candidates`` items (inner history masked) are the
           user's candidates, so that the ranker is trained on the kind of candidate lists it
           will rank: what a retriever proposes without having seen the positives;
        3. the prompt lists the user's inner history, oldest first (the last
           ``user_template.history`` items by timestamp);
        4. up to ``finetune_targets_per_user`` lists per user, each with up to
           ``rank_positives`` held-out items found among the candidates (disjoint across the
           user's lists) and ``rank_negatives`` other candidates drawn at random. Users whose
           held-out items the inner retriever misses give no example (counted in
           ``rank_stats_["users_without_positive"]``).
        """
        from debiasrec.lm.llm import RankingExample

        cfg = self.config
        gen = np_rng(rng)
        inner, held = self.ranking_holdout(train)
        seed = derive_seed(gen)
        if rank_retriever is None:
            rank_retriever = self._retriever_class()(dict(cfg.retriever_params))
            rank_retriever.fit(inner, valid=valid, rng=seed)
        else:
            got = getattr(rank_retriever, "train_csr_", None)
            want = inner.csr()
            if got is None or got.shape != want.shape or (got != want).nnz:
                raise DataError(
                    "rank_retriever must be fitted on ranking_holdout(train)[0] (the training "
                    "data without the held-out items)"
                )
        users = np.flatnonzero(np.diff(held.indptr) > 0)
        if cfg.finetune_users != "all" and int(cfg.finetune_users) < len(users):
            users = np.sort(gen.choice(users, int(cfg.finetune_users), replace=False))
        if len(users) == 0:
            raise DataError("llm_ranker rank fine-tuning needs users with at least 3 items")
        n_c = cfg.rank_candidates or cfg.n_candidates
        cands = rank_retriever.recommend(users, k=n_c).items
        renderer = TextRenderer(
            inner, item_template=cfg.item_template, user_template=cfg.user_template
        )
        texts = renderer.user_texts(users)
        titles = renderer.titles()
        examples = []
        missed = n_pos = 0
        for r, u in enumerate(users):
            row = cands[r][cands[r] >= 0]
            is_pos = np.isin(row, held.indices[held.indptr[u] : held.indptr[u + 1]])
            pos, neg = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
            if len(pos) == 0 or len(neg) == 0:
                missed += 1
                continue
            prompt = cfg.instruction.format(user=texts[r])
            pos = gen.permutation(pos)
            for e in range(cfg.finetune_targets_per_user):
                p_sel = pos[e * cfg.rank_positives : (e + 1) * cfg.rank_positives]
                if len(p_sel) == 0:
                    break
                n_neg = len(neg) if cfg.rank_negatives == 0 else min(cfg.rank_negatives, len(neg))
                sel = np.sort(np.concatenate([p_sel, gen.choice(neg, n_neg, replace=False)]))
                examples.append(
                    RankingExample(
                        prompt,
                        tuple(titles[int(i)] for i in row[sel]),
                        tuple(int(j) for j in np.flatnonzero(np.isin(sel, p_sel))),
                        user=int(u),
                    )
                )
                n_pos += len(p_sel)
        if not examples:
            raise DataError(
                "no ranking example: the inner retriever found no held-out item among its "
                f"{n_c} candidates for any of {len(users)} users; raise rank_candidates"
            )
        self.rank_stats_ = {
            "users": int(len(users)), "users_without_positive": int(missed),
            "examples": len(examples), "positives": int(n_pos), "candidates": int(n_c),
            "inner_interactions": int(inner.n_interactions),
        }  # fmt: skip
        return examples

    def _finetune_rank(self, examples: list[Any], *, seed: int) -> None:
        from debiasrec.lm.llm import finetune_ranking

        cfg = self.config
        start = time.perf_counter()
        self._make_trainable(seed)
        self.finetune_losses_ = finetune_ranking(
            self.lm_,
            examples,
            epochs=cfg.finetune_epochs,
            lr=cfg.finetune_lr,
            batch_size=cfg.finetune_batch_size,
            weight_decay=cfg.finetune_weight_decay,
            length_norm=cfg.length_norm,
            lm_weight=cfg.rank_lm_weight,
            temperature=cfg.rank_temperature,
            schedule=cfg.finetune_schedule,
            seed=seed,
            progress=getattr(self, "_progress", None),
        )
        self.finetune_seconds_ = time.perf_counter() - start

    def choose_fusion_weight(
        self,
        valid: Dataset | None,
        *,
        users: np.ndarray | None = None,
        rng: int | np.random.Generator | None = None,
    ) -> float:
        """Set ``fusion_weight_`` to the ``fusion_grid`` weight with the best validation NDCG.

        Each grid weight ranks the candidates of validation users by :func:`fuse_scores` of
        the LLM and retriever scores; the one with the highest mean NDCG@``fusion_k`` on the
        validation items wins (``fusion_table_`` holds every weight's value). Called by ``fit``
        when ``fusion_weight="validation"``; callable again on a fitted model (LLM scores are
        memoised, so only new prompts cost model calls).

        Args:
            valid: validation interactions (same users and items as the training data).
            users: validation users to use; default ``fusion_val_users`` users with
                validation items drawn with ``rng`` (all of them when 0).
        """
        cfg = self.config
        self._check_fitted()
        if valid is None:
            raise ConfigError("fusion_weight='validation' needs fit(train, valid=...)")
        vcsr = valid.csr()
        if vcsr.shape[1] != self.n_items_ or vcsr.shape[0] > self.n_users_:
            raise DataError("valid must share the training data's users and items")
        if users is None:
            users = np.flatnonzero(np.diff(vcsr.indptr) > 0)
            if cfg.fusion_val_users and len(users) > cfg.fusion_val_users:
                users = np.sort(np_rng(rng).choice(users, cfg.fusion_val_users, replace=False))
        users = self._check_users(users)
        if len(users) == 0 or vcsr[users].nnz == 0:
            raise DataError("fusion_weight='validation': no chosen user has validation items")
        self.fusion_weight_ = 0.0
        cs = self.candidate_scores(users)
        self.fusion_table_ = fusion_sweep(
            cs.llm, cs.retriever, cs.items, vcsr[users], cfg.fusion_grid, k=cfg.fusion_k
        )
        self.fusion_weight_ = best_weight(self.fusion_table_)
        return self.fusion_weight_

    # ------------------------------------------------------------------ candidates and scores
    def candidates(self, user_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Retriever top-``n_candidates`` ``(items, scores)`` per user, training items masked."""
        self._check_fitted()
        users = self._check_users(user_codes)
        recs = self.retriever_.recommend(users, k=self.config.n_candidates)
        return recs.items, recs.scores

    def _prompts(self, texts: Sequence[str]) -> list[str]:
        instr = self.config.instruction
        return [instr.format(user=t) for t in texts]

    def _prior_sums(self, items: np.ndarray) -> np.ndarray:
        """log p(title | content-free prompt) for ``items`` (``-1`` -> NaN), cached per item."""
        cfg = self.config
        need = sorted({int(i) for i in np.unique(items) if i >= 0} - set(self._prior))
        if need:
            prompt = self._prompts([self.compose_user_text(cfg.content_free_user, [])])
            lp = self.lm_.score_candidates(prompt, [[self.titles_[i] for i in need]], batch_size=1)
            self._prior.update(zip(need, lp.sum[0].tolist(), strict=True))
        flat = np.array([self._prior.get(int(i), np.nan) for i in items.ravel()])
        return flat.reshape(items.shape)

    def candidate_scores(
        self, user_codes: np.ndarray, texts: Sequence[str] | None = None
    ) -> CandidateScores:
        """Candidates of ``user_codes`` and their LLM scores, given the user texts ``texts``.

        Args:
            user_codes: users whose retriever candidates (and training masks) are used.
            texts: one user text per user (e.g. a counterfactual variant); ``None`` = the texts
                rendered from the training data at fit time.
        """
        cfg = self.config
        self._check_fitted()
        users = self._check_users(user_codes)
        if texts is None:
            texts = [self.user_texts_[u] for u in users]
        elif len(texts) != len(users):
            raise DataError(f"{len(texts)} texts given for {len(users)} users")
        items, retr = self.candidates(users)
        logp, ntok = self._llm_logp(users, self._prompts(list(texts)), items)
        prior = np.full(items.shape, np.nan)
        score = logp.copy()
        if cfg.calibration == "pmi":
            prior = self._prior_sums(items)
            score = logp - prior
        if cfg.length_norm == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                score = score / ntok
        score[items < 0] = np.nan
        retr = np.where(items >= 0, retr, np.nan).astype(np.float64)
        llm = score
        w = float(getattr(self, "fusion_weight_", 0.0))
        if w > 0:
            score = fuse_scores(llm, retr, w)
        return CandidateScores(
            users=users, items=items, retriever=retr, logp_sum=logp, n_tokens=ntok,
            prior_sum=prior, scores=score, llm=llm,
        )  # fmt: skip

    def _llm_logp(
        self, users: np.ndarray, prompts: list[str], items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """LLM log-likelihood sums and token counts of the candidates, memoised per prompt."""
        cap = self.config.score_cache
        memo = getattr(self, "_memo", None)
        if memo is None:
            memo = self._memo = {}
        logp = np.full(items.shape, np.nan)
        ntok = np.zeros(items.shape, dtype=np.int64)
        need = []
        for r, (u, p) in enumerate(zip(users, prompts, strict=True)):
            hit = memo.get((int(u), p)) if cap else None
            if hit is not None and np.array_equal(hit[0], items[r]):
                logp[r], ntok[r] = hit[1], hit[2]
            else:
                need.append(r)
        if need:
            cands = [[self.titles_[i] for i in items[r] if i >= 0] for r in need]
            lp = self.lm_.score_candidates(
                [prompts[r] for r in need], cands, batch_size=self.config.batch_size
            )
            width = min(items.shape[1], lp.sum.shape[1])
            for j, r in enumerate(need):
                logp[r, :width] = lp.sum[j, :width]
                ntok[r, :width] = lp.n_tokens[j, :width]
                if cap:
                    if len(memo) >= cap:
                        memo.clear()
                    memo[(int(users[r]), prompts[r])] = (items[r].copy(), logp[r], ntok[r])
        return logp, ntok

    def _to_full(self, cs: CandidateScores) -> np.ndarray:
        """Full ``[n, n_items]`` float32 score rows with the candidates' scores on top."""
        cfg = self.config
        n = len(cs.users)
        valid = cs.items >= 0
        if cfg.outside_candidates == "-inf":
            out = np.full((n, self.n_items_), -np.inf, dtype=np.float32)
        else:
            base = np.asarray(self.retriever_.score(cs.users), dtype=np.float64)
            # Shift each row's retriever scores below its lowest candidate score.
            with np.errstate(invalid="ignore"):
                low = np.nanmin(np.where(valid, cs.scores, np.nan), axis=1)
            low = np.where(np.isfinite(low), low, 0.0)
            top = base.max(axis=1) if base.shape[1] else np.zeros(n)
            out = (base - top[:, None] + low[:, None] - 1.0).astype(np.float32)
        rows = np.broadcast_to(np.arange(n)[:, None], cs.items.shape)
        out[rows[valid], cs.items[valid]] = cs.scores[valid].astype(np.float32)
        return out

    def score_with_texts(self, user_codes: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Scores ``[len(user_codes), n_items]`` (float32) with caller-supplied user texts.

        The candidates are the retriever's for ``user_codes``; only the prompt text changes, so a
        counterfactual audit can compare rankings across variants of the same users.
        """
        users = self._check_users(user_codes)
        if len(users) == 0:
            return np.zeros((0, self.n_items_), dtype=np.float32)
        if self.config.mode == "generate":
            return self._generated_to_full(self._generate_logged(users, list(texts)))
        return self._to_full(self.candidate_scores(users, texts))

    def _score(self, users: np.ndarray) -> np.ndarray:
        if len(users) == 0:
            return np.zeros((0, self.n_items_), dtype=np.float32)
        if self.config.mode == "generate":
            return self._generated_to_full(self._generate_logged(users, None))
        return self._to_full(self.candidate_scores(users))

    def _generate_logged(self, users: np.ndarray, texts: Sequence[str] | None) -> GenerationResult:
        """:meth:`recommend_generate` with ``generate_k``; its match counts are logged."""
        res = self.recommend_generate(users, k=self.config.generate_k, texts=texts)
        listed = int(res.n_listed.sum())
        unmatched = int(res.n_unmatched.sum())
        stats = {
            "prompts": len(users), "listed": listed, "matched": listed - unmatched,
            "unmatched": unmatched, "fuzzy": int(res.n_fuzzy.sum()),
            "seen": int(res.n_seen.sum()), "duplicate": int(res.n_duplicate.sum()),
            "in_list": int((res.items >= 0).sum()),
        }  # fmt: skip
        if not hasattr(self, "generation_stats_"):
            self.generation_stats_ = []
        self.generation_stats_.append(stats)
        return res

    def last_generation_stats(self) -> dict[str, int] | None:
        """Match counts of the last generate-mode scoring call (``None`` in score mode)."""
        log = getattr(self, "generation_stats_", None)
        if self.config.mode != "generate" or not log:
            return None
        return dict(log[-1])

    def _generated_to_full(self, res: GenerationResult) -> np.ndarray:
        """Score rows: the generated items in written order (k, k-1, ...), all others -inf."""
        n, k = res.items.shape
        out = np.full((n, self.n_items_), -np.inf, dtype=np.float32)
        rows, cols = np.nonzero(res.items >= 0)
        out[rows, res.items[rows, cols]] = (k - cols).astype(np.float32)
        return out

    # ------------------------------------------------------------------ generation
    def recommend_generate(
        self,
        user_codes: np.ndarray,
        k: int = 10,
        texts: Sequence[str] | None = None,
        *,
        answers: Sequence[str] | None = None,
    ) -> GenerationResult:
        """Top-``k`` lists written by the LLM, matched back to catalog items.

        Args:
            user_codes: users to recommend for (their training items are dropped from lists).
            k: titles asked for and list length.
            texts: user texts (``None``: rendered from the training data).
            answers: already generated answers to match instead of generating (for audits of
                outputs made elsewhere, and for tests).
        """
        from debiasrec.lm.matching import TitleMatcher, parse_list

        cfg = self.config
        self._check_fitted()
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        users = self._check_users(user_codes)
        if texts is None:
            texts = [self.user_texts_[u] for u in users]
        if len(texts) != len(users):
            raise DataError(f"{len(texts)} texts given for {len(users)} users")
        if answers is None:
            prompts = [cfg.generate_instruction.format(user=t, k=k) for t in texts]
            answers = self.lm_.generate(
                prompts, max_new_tokens=cfg.generate_max_new_tokens, batch_size=cfg.batch_size
            )
        elif len(answers) != len(users):
            raise DataError(f"{len(answers)} answers given for {len(users)} users")
        matcher = getattr(self, "_matcher", None)
        if matcher is None or matcher.cutoff != cfg.match_cutoff:
            matcher = self._matcher = TitleMatcher(self.titles_, cutoff=cfg.match_cutoff)
        n = len(users)
        items = np.full((n, k), -1, dtype=np.int64)
        counts = {key: np.zeros(n, dtype=np.int64) for key in ("listed", "un", "fz", "seen", "dup")}
        unmatched: list[list[str]] = []
        csr = self.train_csr_
        for r, (u, text) in enumerate(zip(users, answers, strict=True)):
            seen = set(csr.indices[csr.indptr[u] : csr.indptr[u + 1]].tolist())
            listed = parse_list(text)
            counts["listed"][r] = len(listed)
            got: list[int] = []
            miss: list[str] = []
            for m in matcher.match_all(listed):
                if m.item < 0:
                    miss.append(m.answer)
                    counts["un"][r] += 1
                    continue
                counts["fz"][r] += m.kind == "fuzzy"
                if m.item in seen:
                    counts["seen"][r] += 1
                elif m.item in got:
                    counts["dup"][r] += 1
                else:
                    got.append(m.item)
            got = got[:k]
            items[r, : len(got)] = got
            unmatched.append(miss)
        return GenerationResult(
            users=users,
            items=items,
            answers=list(answers),
            n_listed=counts["listed"],
            n_unmatched=counts["un"],
            n_fuzzy=counts["fz"],
            n_seen=counts["seen"],
            n_duplicate=counts["dup"],
            unmatched=unmatched,
        )

    # ------------------------------------------------------------------ device
    _load_device: Any = None  # the device given to load() (None: each part's own setting)

    @property
    def device(self) -> Any:
        """Where the language model runs (``device`` resolved; a ``torch.device``)."""
        from debiasrec.training.device import resolve_device

        return resolve_device(
            self.config.device if self._load_device is None else self._load_device
        )

    def _set_load_device(self, device: Any) -> None:
        self._load_device = device

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        from debiasrec.lm.llm import full_state, lora_state

        state = {f"retriever.{k}": v for k, v in self.retriever_._state().items()}
        if self.config.endpoint is None:
            state.update({f"lora.{k}": v for k, v in lora_state(self.lm_).items()})
            if getattr(self, "_weights_changed", False):
                state.update({f"llm.{k}": v for k, v in full_state(self.lm_).items()})
        state["fusion.weight"] = np.array([self.fusion_weight_], dtype=np.float64)
        grid = sorted(getattr(self, "fusion_table_", {}).items())
        state["fusion.table"] = np.array(grid, dtype=np.float64).reshape(-1, 2)
        state["texts.titles"], state["texts.title_offsets"] = _encode_strings(self.titles_)
        state["texts.users"], state["texts.user_offsets"] = _encode_strings(self.user_texts_)
        state["finetune.losses"] = np.asarray(self.finetune_losses_, dtype=np.float64)
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        from debiasrec.lm.llm import load_full_state, load_lora

        retr = self._retriever_class()(dict(self.config.retriever_params))
        retr.n_users_, retr.n_items_, retr.train_csr_ = (
            self.n_users_,
            self.n_items_,
            self.train_csr_,
        )
        retr._set_load_device(self._load_device)
        retr._load_state(
            {k[len("retriever.") :]: v for k, v in state.items() if k.startswith("retriever.")}
        )
        self.retriever_ = retr
        self.titles_ = _decode_strings(state["texts.titles"], state["texts.title_offsets"])
        self.user_texts_ = _decode_strings(state["texts.users"], state["texts.user_offsets"])
        self.finetune_losses_ = state["finetune.losses"].tolist()
        self.finetune_seconds_ = 0.0
        self.lm_ = self._make_lm(self._load_device)
        self._prior = {}
        self._memo = {}
        self.rank_stats_ = {}
        cfg_w = self.config.fusion_weight
        default_w = np.array([0.0 if cfg_w == "validation" else cfg_w])
        self.fusion_weight_ = float(state.get("fusion.weight", default_w)[0])
        self.fusion_table_ = {
            float(w): float(v) for w, v in state.get("fusion.table", np.zeros((0, 2)))
        }
        full = {k[len("llm.") :]: v for k, v in state.items() if k.startswith("llm.")}
        self._weights_changed = bool(full)
        if full:
            load_full_state(self.lm_, full)
        lora = {k[len("lora.") :]: v for k, v in state.items() if k.startswith("lora.")}
        if lora:
            load_lora(self.lm_, self._lora_settings(), lora)
