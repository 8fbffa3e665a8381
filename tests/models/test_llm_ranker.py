"""LLMRanker with a tiny random Llama: contract, candidates, PMI calibration, texts, generation."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from debiasrec.data.split import Split, random_split  # noqa: E402
from debiasrec.data.synthetic import SyntheticConfig, generate  # noqa: E402
from debiasrec.errors import ConfigError, DataError  # noqa: E402
from debiasrec.lm.llm import CausalLM  # noqa: E402
from debiasrec.lm.templates import TextRenderer, UserTemplate, Variant  # noqa: E402
from debiasrec.models import MODELS, LLMRanker, Recommender  # noqa: E402
from debiasrec.testing.contracts import RecommenderContract  # noqa: E402
from debiasrec.testing.tiny_lm import save_tiny_causal_lm  # noqa: E402

_TINY: list[Path] = []


def tiny_lm_dir() -> str:
    """One tiny model folder per test process (removed at exit)."""
    if not _TINY:
        root = Path(tempfile.mkdtemp(prefix="debiasrec-tiny-lm-"))
        atexit.register(shutil.rmtree, root, True)
        _TINY.append(save_tiny_causal_lm(root / "tiny", seed=0))
    return str(_TINY[0])


BASE: dict[str, Any] = {
    "device": "cpu",
    "n_candidates": 12,
    "retriever_params": {"dim": 8, "train": {"epochs": 3}},
    "user_template": {"profile": ["age", "gender"], "history": 5},
}


class TestLLMRankerContract(RecommenderContract):
    component = LLMRanker
    params: ClassVar[dict[str, Any]] = {**BASE, "calibration": "pmi", "finetune_users": 6}
    # A loaded ranker rescores its calibration priors in other packed batches than the fitted
    # one; on some machines' kernels that rounds differently (4.8e-7 seen on a 16-core host).
    reload_tolerance = (1e-5, 1e-6)

    @classmethod
    def make(cls, **override: Any) -> Recommender:
        return cls.component({**cls.params, "llm": tiny_lm_dir(), **override})


@pytest.fixture(scope="module")
def split() -> Split:
    ds, _ = generate(SyntheticConfig(n_users=60, n_items=50, mean_interactions=12), rng=0)
    return random_split(ds, rng=0)


def make(**kw: Any) -> LLMRanker:
    return LLMRanker({**BASE, "llm": tiny_lm_dir(), **kw})


@pytest.fixture(scope="module")
def fitted(split: Split) -> LLMRanker:
    return make(length_norm="sum").fit(split.train, rng=0)


def test_registered() -> None:
    assert MODELS["llm_ranker"] is LLMRanker
    with pytest.raises(ConfigError):
        LLMRanker(instruction="no placeholder")
    with pytest.raises(ConfigError):
        LLMRanker(calibration="zhao")
    with pytest.raises(ConfigError):
        LLMRanker(retriever="llm_ranker")


def test_candidates_never_include_training_items(fitted: LLMRanker, split: Split) -> None:
    users = np.arange(split.train.n_users)
    items, _ = fitted.candidates(users)
    csr = split.train.csr()
    assert items.shape == (len(users), 12)
    for u, row in zip(users, items, strict=True):
        seen = set(csr.indices[csr.indptr[u] : csr.indptr[u + 1]].tolist())
        assert not seen & set(row[row >= 0].tolist())
    # they are the retriever's top-N (held-out items are not forced in)
    np.testing.assert_array_equal(items, fitted.retriever_.recommend(users, k=12).items)
    cs = fitted.candidate_scores(users)
    full = fitted.score(users)
    rows = np.arange(len(users))[:, None]
    np.testing.assert_allclose(full[rows, items], cs.scores, rtol=1e-6)
    # every non-candidate item scores below every candidate of its user
    outside = np.ones_like(full, dtype=bool)
    outside[rows, items] = False
    assert (full.max(axis=1, where=outside, initial=-np.inf) < cs.scores.min(axis=1)).all()
    # so the top-N of the full ranking is the LLM's ordering of the candidates
    recs = fitted.recommend(users, k=12)
    np.testing.assert_array_equal(recs.items, cs.ranked())


def test_minus_inf_outside_candidates(split: Split) -> None:
    m = make(outside_candidates="-inf").fit(split.train, rng=0)
    s = m.score(np.arange(4))
    assert (np.isfinite(s).sum(axis=1) == 12).all()
    recs = m.recommend(np.arange(4), k=20)
    assert ((recs.items >= 0).sum(axis=1) == 12).all()


def test_scores_are_llm_log_likelihoods(fitted: LLMRanker, split: Split) -> None:
    users = np.array([3, 7])
    cs = fitted.candidate_scores(users)
    lm: CausalLM = fitted.lm
    texts = TextRenderer(
        split.train, user_template=UserTemplate(profile=["age", "gender"], history=5)
    ).user_texts(users)
    prompts = [fitted.config.instruction.format(user=t) for t in texts]
    titles = [[fitted.titles_[i] for i in row] for row in cs.items]
    ref = lm.score_candidates(prompts, titles, method="naive")
    np.testing.assert_allclose(cs.logp_sum, ref.sum, atol=1e-4)
    np.testing.assert_allclose(cs.scores, ref.sum, atol=1e-4)  # sum, no calibration


def test_pmi_calibration_equals_hand_computed_difference(split: Split) -> None:
    users = np.array([0, 5, 9])
    for norm in ("sum", "mean"):
        m = make(calibration="pmi", length_norm=norm, content_free_user="N/A").fit(
            split.train, rng=0
        )
        cs = m.candidate_scores(users)
        lm: CausalLM = m.lm
        titles = [[m.titles_[i] for i in row] for row in cs.items]
        user_prompts = [m.config.instruction.format(user=m.user_texts_[u]) for u in users]
        free = m.config.instruction.format(user="User: N/A.")
        cond = lm.score_candidates(user_prompts, titles, method="naive")
        prior = lm.score_candidates([free] * len(users), titles, method="naive")
        expected = cond.sum - prior.sum
        if norm == "mean":
            expected = expected / cond.n_tokens
        np.testing.assert_allclose(cs.scores, expected, atol=1e-4)
        np.testing.assert_allclose(cs.prior_sum, prior.sum, atol=1e-4)


def test_score_with_texts_uses_the_given_texts(fitted: LLMRanker, split: Split) -> None:
    users = np.array([1, 2, 3])
    renderer = TextRenderer(
        split.train, user_template=UserTemplate(profile=["age", "gender"], history=5)
    )
    same = fitted.score_with_texts(users, renderer.user_texts(users))
    np.testing.assert_allclose(same, fitted.score(users), rtol=1e-5)
    swapped = renderer.user_texts(users, Variant(name="F", set={"gender": "F"}))
    other = fitted.score_with_texts(users, swapped)
    assert other.shape == same.shape and other.dtype == np.float32
    # same candidates, different scores
    items, _ = fitted.candidates(users)
    rows = np.arange(3)[:, None]
    assert np.isfinite(other[rows, items]).all()
    assert not np.allclose(other[rows, items], same[rows, items])
    with pytest.raises(DataError):
        fitted.score_with_texts(users, ["only one text"])


def test_finetune_examples_follow_time_order(split: Split) -> None:
    from debiasrec.lm.templates import recent_history

    template = {"profile": ["age", "gender"], "history": 3}
    m = make(finetune_users=5, finetune_targets_per_user=2, user_template=template)
    prompts, targets = m.finetune_examples(split.train, rng=0)
    assert len(prompts) == len(targets) == 10
    train = split.train
    renderer = TextRenderer(train, user_template=m.config.user_template)
    titles = renderer.titles()
    users = np.arange(train.n_users)
    seqs = [[titles[i] for i in h] for h in recent_history(train, users, 10_000)]
    for p, t in zip(prompts, targets, strict=True):
        listed = (
            p.split("Recently watched: ")[1].split(".")[0].split("; ") if "Recently" in p else []
        )
        window = [*listed, t]
        # some user's time-ordered history holds the prompt's titles immediately before the target
        assert any(seq[j : j + len(window)] == window for seq in seqs for j in range(len(seq))), (
            p,
            t,
        )
        assert len(listed) <= 3
    # composing a user's full recent history reproduces the renderer's user text
    hist = recent_history(train, users[:10], 3)
    prof = renderer.profile_text(users[:10])
    composed = [
        m.compose_user_text(p, [titles[i] for i in h]) for p, h in zip(prof, hist, strict=True)
    ]
    assert composed == renderer.user_texts(users[:10])


def test_finetuned_save_load_round_trip(split: Split, tmp_path: Path) -> None:
    m = make(finetune_users=8, finetune_epochs=2, calibration="pmi").fit(split.train, rng=1)
    assert len(m.finetune_losses_) == 2
    from debiasrec.lm.llm import lora_state

    assert lora_state(m.lm)  # adapters present
    users = np.arange(split.train.n_users)
    before = m.score(users)
    m.save(tmp_path / "m")
    loaded = LLMRanker.load(tmp_path / "m")
    # to float rounding: packed scoring rounds with the batch layout (see the contract class)
    np.testing.assert_allclose(loaded.score(users), before, rtol=1e-5, atol=1e-6)
    assert loaded.finetune_losses_ == m.finetune_losses_
    # fine-tuning changed the scores relative to zero-shot
    zero = make(calibration="pmi").fit(split.train, rng=1)
    assert not np.allclose(zero.score(users), before)


def test_generation_mode_matching(fitted: LLMRanker, split: Split) -> None:
    titles = fitted.titles_
    csr = split.train.csr()
    u0, u1 = 0, 1
    seen0 = int(csr.indices[csr.indptr[u0]])
    unseen0 = [i for i in range(len(titles)) if i not in set(csr[u0].indices)][:3]
    a = unseen0
    answer0 = "\n".join([
        f"1. {titles[a[0]]}",  # exact
        f"2. {titles[a[1]].lower()} (1999)",  # exact after normalisation
        f"3. {titles[a[2]][:2]}{titles[a[2]][1:]}",  # fuzzy (one letter doubled)
        "4. Completely Invented Film Title",  # unmatched
        f"5. {titles[seen0]}",  # a training item: dropped
        f"6. {titles[a[0]]}",  # duplicate: dropped
    ])  # fmt: skip
    res = fitted.recommend_generate(np.array([u0, u1]), k=3, answers=[answer0, "nothing useful"])
    assert res.items[0].tolist() == a
    assert res.n_listed.tolist() == [6, 1]
    assert res.n_unmatched.tolist() == [1, 1]
    assert res.n_fuzzy.tolist()[0] == 1
    assert res.n_seen.tolist() == [1, 0]
    assert res.n_duplicate.tolist() == [1, 0]
    assert res.unmatched == [["Completely Invented Film Title"], ["nothing useful"]]
    assert res.items[1].tolist() == [-1, -1, -1]


def test_generation_mode_runs_the_llm(split: Split) -> None:
    m = make(generate_max_new_tokens=8).fit(split.train, rng=0)
    res = m.recommend_generate(np.array([0, 1]), k=5)
    assert len(res.answers) == 2 and res.items.shape == (2, 5)
    accounted = res.n_unmatched + res.n_seen + res.n_duplicate + (res.items >= 0).sum(1)
    assert (accounted <= res.n_listed).all()
    with pytest.raises(ConfigError):
        m.recommend_generate(np.array([0]), k=0)


def test_a_fitted_retriever_can_be_shared(fitted: LLMRanker, split: Split) -> None:
    shared = fitted.retriever_
    m = make(length_norm="sum").fit(split.train, rng=0, retriever=shared)
    assert m.retriever_ is shared
    users = np.arange(10)
    np.testing.assert_array_equal(m.candidates(users)[0], fitted.candidates(users)[0])
    from debiasrec.models import Pop

    with pytest.raises(ConfigError, match="pop"):
        make().fit(split.train, rng=0, retriever=Pop().fit(split.train))


class ScriptedLM:
    """Stands in for the language model: answers each prompt from a function of its text."""

    def __init__(self, answer) -> None:
        self.answer = answer

    def generate(self, prompts, *, max_new_tokens=128, batch_size=8):
        return [self.answer(p) for p in prompts]


def test_generate_mode_ranks_the_written_list_and_logs_match_counts(split: Split) -> None:
    from debiasrec.experiment.llm_audit import run_audit

    m = make(mode="generate", generate_k=3).fit(split.train, rng=0)
    titles = m.titles_
    csr = split.train.csr() + split.valid.csr()
    unseen = {u: [i for i in range(len(titles)) if i not in set(csr[u].indices)] for u in range(60)}

    def answer(prompt: str) -> str:
        u = int(prompt.split("#")[1].split()[0].rstrip(".,"))  # the user code, in the text
        a, b, c = unseen[u][:3] if "female" not in prompt else unseen[u][3:6]
        return f"1. {titles[a]}\n2. Not A Real Film\n3. {titles[b]}\n4. {titles[c]}"

    m.lm_ = ScriptedLM(answer)
    users = np.array([0, 1, 2])
    scores = m.score_with_texts(users, [f"user #{u}" for u in users])
    top = np.argsort(-scores, axis=1)[:, :3]
    for r, u in enumerate(users):
        assert top[r].tolist() == unseen[u][:3]  # the written order
        assert np.isinf(scores[r]).sum() == m.n_items_ - 3  # nothing filled in
    assert m.last_generation_stats() == {"prompts": 3, "listed": 12, "matched": 9, "unmatched": 3,
                                         "fuzzy": 0, "seen": 0, "duplicate": 0, "in_list": 9}  # fmt: skip
    # In an audit, gender=F prompts get other lists; match rates are reported per variant.
    renderer = TextRenderer(split.train, user_template=UserTemplate(profile=[], history=0,
                                                                    prefix="user #{} "))  # fmt: skip

    class Texts(TextRenderer):
        def user_texts(self, users, variant=None, **kw):
            base = super().user_texts(users, variant, **kw)
            return [t.replace("{}", str(u), 1) for t, u in zip(base, users, strict=True)]

    texts = Texts(split.train, item_template=renderer.item_template,
                  user_template=renderer.user_template)  # fmt: skip
    res, _ = run_audit(m, split, renderer=texts, config={"n_users": 6, "attrs": ["gender"],
                       "k": 3, "n_perm": 50, "n_boot": 20, "typo_seeds": 2,
                       "other_history": False, "typo_rate": 0.001})  # fmt: skip
    rate = res[res.metric == "gen_match_rate"].set_index("group").value
    assert rate["all"] == pytest.approx(0.75) and rate["gender=F"] == pytest.approx(0.75)
    jac = res[res.metric == "jaccard@3"].set_index("group").value
    assert jac["gender=F"] == pytest.approx(0.0) and jac["gender=M"] == pytest.approx(1.0)


def test_endpoint_settings_in_the_ranker_config() -> None:
    from debiasrec.lm.api import EndpointLM

    m = LLMRanker({"endpoint": {"url": "http://127.0.0.1:9/v1", "model": "served"},
                   "mode": "generate"})  # fmt: skip
    assert isinstance(m._make_lm(), EndpointLM)
    assert m.config.endpoint.api_key_env == "OPENAI_API_KEY"
    with pytest.raises(ConfigError, match="through an endpoint"):
        LLMRanker({"endpoint": {"url": "http://h/v1", "model": "m"}, "finetune_users": 3})
    with pytest.raises(ConfigError):
        LLMRanker({"endpoint": {"url": "ftp://h", "model": "m"}})


# ---------------------------------------------------------------------- ranking objective
RANK: dict[str, Any] = {
    "finetune_objective": "rank",
    "finetune_users": "all",
    "retriever": "pop",
    "retriever_params": {},
    "n_candidates": 20,
    "rank_holdout": 0.3,
    "rank_positives": 2,
    "rank_negatives": 3,
    "user_template": {"profile": [], "history": 4},
}


def test_ranking_holdout_is_seeded_disjoint_and_sized(split: Split) -> None:
    train = split.train
    m = make(**RANK)
    inner, held = m.ranking_holdout(train)
    counts = np.bincount(train.users, minlength=train.n_users)
    want = np.where(counts >= 3, np.clip(np.round(0.3 * counts), 1, counts - 2), 0)
    np.testing.assert_array_equal(np.diff(held.indptr), want)
    # inner + held = train, nothing shared
    assert inner.n_interactions + held.nnz == train.n_interactions
    assert (inner.csr().multiply(held)).nnz == 0
    assert (inner.csr() + held != train.csr()).nnz == 0
    # fixed by config, not by the fit seed
    inner2, held2 = make(**RANK).ranking_holdout(train)
    assert (held2 != held).nnz == 0
    _, held3 = make(**{**RANK, "rank_holdout_seed": 1}).ranking_holdout(train)
    assert (held3 != held).nnz > 0


def test_ranking_examples_list_the_inner_history_in_time_order(split: Split) -> None:
    from debiasrec.lm.templates import recent_history
    from debiasrec.models import Pop

    train = split.train
    m = make(**{**RANK, "finetune_targets_per_user": 2})
    inner, held = m.ranking_holdout(train)
    retr = Pop().fit(inner, rng=0)
    examples = m.ranking_examples(train, rng=0, rank_retriever=retr)
    titles = TextRenderer(train).titles()
    cands = retr.recommend(np.arange(train.n_users), k=20).items
    assert m.rank_stats_["examples"] == len(examples) > 0
    per_user: dict[int, set[int]] = {}
    for e in examples:
        u = e.user
        hist = recent_history(inner, np.array([u]), 4)[0]
        # the prompt lists the last 4 inner-history items, oldest first (by timestamp)
        listed = e.prompt.split("Recently watched: ")[1].split(".\n")[0].split("; ")
        assert listed == [titles[i] for i in hist]
        ts = inner.timestamps[inner.users == u]
        assert len(hist) == min(4, len(ts))
        held_u = set(held.indices[held.indptr[u] : held.indptr[u + 1]].tolist())
        code = {titles[i]: i for i in cands[u]}
        items = [code[c] for c in e.candidates]  # every candidate is the inner retriever's
        pos = {items[j] for j in e.positives}
        assert pos <= held_u and 1 <= len(pos) <= 2
        assert not (set(items) - pos) & held_u  # negatives are never held-out items
        assert len(items) - len(pos) == 3
        assert not per_user.setdefault(u, set()) & pos  # positives disjoint across lists
        per_user[u] |= pos
    # the prompt history is time-ordered, not row-ordered
    ordered = recent_history(inner, np.arange(train.n_users), 4)
    rows = [inner.items[inner.users == u][-4:] for u in range(train.n_users)]
    assert any(list(a) != list(b) for a, b in zip(ordered, rows, strict=True))
    # a retriever fitted on other data is refused
    with pytest.raises(DataError, match="rank_retriever"):
        m.ranking_examples(train, rng=0, rank_retriever=Pop().fit(train, rng=0))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_rank_finetuning_end_to_end(split: Split, method: str, tmp_path: Path) -> None:
    params = {**RANK, "finetune_method": method, "finetune_epochs": 2, "finetune_lr": 1e-2}
    steps: list[tuple[int, int, float]] = []
    m = make(**params).fit(split.train, rng=0, progress=lambda *a: steps.append(a))
    assert len(m.finetune_losses_) == 2 and m.finetune_losses_[1] < m.finetune_losses_[0]
    n_steps = 2 * -(-m.rank_stats_["examples"] // m.config.finetune_batch_size)
    assert [s for s, _, _ in steps] == list(range(1, n_steps + 1))
    users = np.arange(10)
    before = m.score(users)
    m.save(tmp_path / "m")
    loaded = LLMRanker.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.score(users), before)
    zero = make(**{**params, "finetune_users": 0}).fit(split.train, rng=0)
    assert not np.allclose(zero.score(users), before)
    # a refit starts from the base weights again (full fine-tuning changed them in place)
    again = m.fit(split.train, rng=0)
    np.testing.assert_allclose(again.score(users), before, atol=1e-4)


def test_fusion_by_hand() -> None:
    from debiasrec.models.llm_ranker import fuse_scores

    llm = np.array([[1.0, 2.0, 3.0, np.nan]])
    retr = np.array([[30.0, 10.0, 20.0, 99.0]])  # the NaN cell's retriever score is ignored
    z_l = (llm[0, :3] - 2.0) / np.std([1.0, 2.0, 3.0])
    z_r = (retr[0, :3] - 20.0) / np.std([30.0, 10.0, 20.0])
    out = fuse_scores(llm, retr, 0.25)
    np.testing.assert_allclose(out[0, :3], 0.75 * z_l + 0.25 * z_r)
    assert np.isnan(out[0, 3])
    with pytest.raises(ConfigError):
        fuse_scores(llm, retr, 1.5)


def _planted(n: int, n_cand: int, seed: int, llm_noise: float) -> tuple[Any, ...]:
    """Candidates with a latent relevance; retriever and LLM see it through independent noise."""
    import scipy.sparse as sp

    gen = np.random.default_rng(seed)
    items = np.stack([gen.permutation(200)[:n_cand] for _ in range(n)])
    rel = gen.random((n, n_cand)) < 0.15
    latent = rel * 1.0
    retr = latent + gen.normal(0, 0.8, latent.shape)
    llm = latent + gen.normal(0, llm_noise, latent.shape)
    rows = np.broadcast_to(np.arange(n)[:, None], items.shape)[rel]
    truth = sp.csr_matrix((np.ones(rel.sum()), (rows, items[rel])), shape=(n, 200))
    return llm, retr, items, truth


def test_fusion_weight_on_validation_uses_an_informative_llm() -> None:
    from debiasrec.models.llm_ranker import best_weight, fusion_sweep, ndcg_of_candidates

    grid = [round(0.1 * i, 1) for i in range(11)]
    llm, retr, items, truth = _planted(400, 20, 0, llm_noise=0.8)
    w = best_weight(fusion_sweep(llm, retr, items, truth, grid))
    assert 0.2 <= w <= 0.8  # both signals used
    # applied to fresh (test) users, the chosen weight beats the retriever alone
    llm_t, retr_t, items_t, truth_t = _planted(400, 20, 1, llm_noise=0.8)
    from debiasrec.models.llm_ranker import fuse_scores

    fused = np.nanmean(ndcg_of_candidates(fuse_scores(llm_t, retr_t, w), items_t, truth_t))
    alone = np.nanmean(ndcg_of_candidates(retr_t, items_t, truth_t))
    assert fused > alone + 0.03
    # an uninformative LLM gets (almost) no weight
    noise, retr2, items2, truth2 = _planted(400, 20, 2, llm_noise=1e6)
    assert best_weight(fusion_sweep(noise, retr2, items2, truth2, grid)) >= 0.9


class _OracleLM:
    """Stands in for the LLM: log-likelihoods that know each user's held-out items (noisily)."""

    def __init__(self, liked: dict[str, set[str]], seed: int = 0) -> None:
        self.liked, self.gen, self.calls = liked, np.random.default_rng(seed), 0

    def score_candidates(self, prompts: Any, cands: Any, batch_size: int = 8) -> Any:
        from debiasrec.lm.llm import CandidateLogProbs

        self.calls += len(prompts)
        width = max(len(c) for c in cands)
        out = np.full((len(prompts), width), np.nan)
        n = np.zeros((len(prompts), width), dtype=np.int64)
        for r, (p, cs) in enumerate(zip(prompts, cands, strict=True)):
            for j, c in enumerate(cs):
                out[r, j] = 2.0 * (c in self.liked.get(p, set())) + self.gen.normal(0, 1)
                n[r, j] = 3
        return CandidateLogProbs(sum=out, n_tokens=n)


def test_fusion_weight_validation_end_to_end(split: Split, monkeypatch: Any) -> None:
    m = make(fusion_weight="validation", length_norm="sum", fusion_grid=[0.0, 0.5, 1.0])
    with pytest.raises(ConfigError, match="valid"):
        m.fit(split.train, rng=0)
    m = make(length_norm="sum").fit(split.train, rng=0)
    titles = m.titles_
    liked = {}
    for part in (split.valid, split.test):
        csr = part.csr()
        for u in range(split.train.n_users):
            key = m._prompts([m.user_texts_[u]])[0]
            seen = csr.indices[csr.indptr[u] : csr.indptr[u + 1]]
            liked.setdefault(key, set()).update(titles[i] for i in seen)
    oracle = _OracleLM(liked)
    m2 = make(fusion_weight="validation", length_norm="sum", fusion_grid=[0.0, 0.5, 1.0])
    monkeypatch.setattr(LLMRanker, "_make_lm", lambda self: oracle)
    m2.fit(split.train, valid=split.valid, rng=0)
    assert set(m2.fusion_table_) == {0.0, 0.5, 1.0}
    assert m2.fusion_weight_ < 1.0  # the informative LLM gets weight
    assert m2.fusion_table_[m2.fusion_weight_] == max(m2.fusion_table_.values())
    assert m2.fusion_table_[m2.fusion_weight_] > m2.fusion_table_[1.0]
    users = np.arange(20)
    cs = m2.candidate_scores(users)
    from debiasrec.models.llm_ranker import fuse_scores

    want = fuse_scores(cs.llm, cs.retriever, m2.fusion_weight_)
    if m2.fusion_weight_ == 0:  # the LLM alone: its own scores (same order as their z-scores)
        want = cs.llm
    np.testing.assert_allclose(cs.scores, want, equal_nan=True)


def test_scores_are_memoised_per_prompt(split: Split) -> None:
    m = make(length_norm="sum").fit(split.train, rng=0)
    oracle = _OracleLM({})
    m.lm_ = oracle
    users = np.arange(6)
    a = m.candidate_scores(users)
    assert oracle.calls == 6
    b = m.candidate_scores(users)
    assert oracle.calls == 6  # nothing re-scored
    np.testing.assert_array_equal(a.scores, b.scores)
    texts = [m.user_texts_[u] + " x" for u in users]
    m.candidate_scores(users, texts)
    assert oracle.calls == 12  # other prompts are scored
    off = make(length_norm="sum", score_cache=0).fit(split.train, rng=0)
    off.lm_ = oracle
    off.candidate_scores(users)
    off.candidate_scores(users)
    assert oracle.calls == 24


def test_new_config_checks() -> None:
    with pytest.raises(ConfigError):
        LLMRanker(fusion_weight=1.5)
    with pytest.raises(ConfigError):
        LLMRanker(finetune_users=-1)
    with pytest.raises(ConfigError):
        LLMRanker(fusion_grid=[0.0, 2.0])
    assert LLMRanker(fusion_weight="validation").config.fusion_weight == "validation"
    assert LLMRanker(finetune_users="all").config.finetune_users == "all"


def test_choose_fusion_weight_on_a_fitted_model(split: Split) -> None:
    from debiasrec.errors import NotFittedError
    from debiasrec.models.llm_ranker import best_weight, fusion_sweep

    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(NotFittedError):
        make(fusion_grid=grid).choose_fusion_weight(split.valid)
    m = make(length_norm="sum", fusion_grid=grid, fusion_val_users=7).fit(split.train, rng=0)
    titles = m.titles_
    vcsr = split.valid.csr()
    liked = {
        m._prompts([m.user_texts_[u]])[0]: {
            titles[i] for i in vcsr.indices[vcsr.indptr[u] : vcsr.indptr[u + 1]]
        }
        for u in range(split.train.n_users)
    }
    oracle = _OracleLM(liked)
    m.lm_ = oracle
    assert m.fusion_weight_ == 0.0
    # given users: the weight is the best of the sweep over exactly these users' candidates
    users = np.flatnonzero(np.diff(vcsr.indptr) > 0)[:25]
    w = m.choose_fusion_weight(split.valid, users=users)
    assert oracle.calls == 25
    cs = m.candidate_scores(users)  # memoised: no new LLM call, same LLM scores
    assert oracle.calls == 25
    table = fusion_sweep(cs.llm, cs.retriever, cs.items, vcsr[users], grid, k=10)
    assert m.fusion_table_ == table
    assert w == m.fusion_weight_ == best_weight(table)
    assert w < 1.0 and table[w] > table[1.0]  # the informative LLM gets weight
    # the chosen weight is applied to later scores
    from debiasrec.models.llm_ranker import fuse_scores

    if w > 0:
        np.testing.assert_allclose(cs.scores, fuse_scores(cs.llm, cs.retriever, w), equal_nan=True)
    # default users: fusion_val_users sampled among users with validation items, seeded
    before = oracle.calls
    m.choose_fusion_weight(split.valid, rng=3)
    assert oracle.calls - before <= 7  # at most 7 new prompts (some may be memoised)
    t3 = m.fusion_table_
    m.choose_fusion_weight(split.valid, rng=3)
    assert m.fusion_table_ == t3
    # bad calls: one clear error each
    with pytest.raises(ConfigError, match="valid"):
        m.choose_fusion_weight(None)
    emptied = split.valid.subset(~np.isin(split.valid.users, users[:3]))
    with pytest.raises(DataError, match="validation items"):
        m.choose_fusion_weight(emptied, users=users[:3])
    with pytest.raises(DataError):
        m.choose_fusion_weight(split.valid, users=np.array([10_000]))


def test_validation_fusion_without_valid_fails_before_finetuning(split: Split) -> None:
    steps: list[Any] = []
    m = make(**RANK, fusion_weight="validation")
    with pytest.raises(ConfigError, match="valid"):
        m.fit(split.train, rng=0, progress=lambda *a: steps.append(a))
    assert steps == []  # no fine-tuning step ran
