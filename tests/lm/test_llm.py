"""CausalLM: packed scoring equals naive scoring, LoRA fine-tuning, title matching, bias metrics."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from debiasrec.errors import ConfigError  # noqa: E402
from debiasrec.lm.llm import (  # noqa: E402
    CausalLM,
    LoraSettings,
    add_lora,
    finetune,
    load_lora,
    lora_state,
    remove_lora,
    sequence_loss,
)
from debiasrec.lm.matching import TitleMatcher, normalise_title, parse_list  # noqa: E402
from debiasrec.metrics.lm_bias import (  # noqa: E402
    jaccard_at_k,
    length_bias,
    mean_length_bias,
    mean_popularity_at_k,
    popularity_bias,
    rowwise_spearman,
    top1_concentration,
)
from debiasrec.testing.tiny_lm import save_tiny_causal_lm, tiny_causal_lm  # noqa: E402

PROMPTS = [
    "User: age 24, gender male. Recently watched: Heat; Fargo; The Godfather.",
    "hi",
    "User: no profile.",
]
CANDS = [
    ["Toy Story", "Heat", "X", "The Usual Suspects"],
    ["The Godfather: Part II", "A"],
    ["Fargo", "Star Wars", "Alien", "Aliens", "Twelve Monkeys", "Babe"],
]


@pytest.fixture(scope="module")
def tiny() -> CausalLM:
    model, tok = tiny_causal_lm(0)
    return CausalLM.from_objects(model, tok, device="cpu")


@pytest.mark.parametrize("method", ["packed", "shared"])
@pytest.mark.parametrize("max_packed", [2048, 7])
@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_packed_equals_naive(tiny: CausalLM, max_packed: int, batch_size: int, method) -> None:
    tiny.max_packed_tokens = max_packed  # 7: several packed passes per prompt reuse one cache
    try:
        packed = tiny.score_candidates(PROMPTS, CANDS, batch_size=batch_size, method=method)
    finally:
        tiny.max_packed_tokens = 2048
    naive = tiny.score_candidates(PROMPTS, CANDS, method="naive")
    assert packed.sum.shape == (3, 6)
    np.testing.assert_array_equal(np.isnan(packed.sum), np.isnan(naive.sum))
    np.testing.assert_allclose(packed.sum, naive.sum, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(packed.n_tokens, naive.n_tokens)
    # byte-level tokens + the end-of-answer token
    assert packed.n_tokens[0, 0] == len("Toy Story") + 1
    np.testing.assert_allclose(packed.mean, packed.sum / packed.n_tokens)


def test_packed_equals_manual_log_softmax(tiny: CausalLM) -> None:
    """The naive reference itself is the plain chain rule over one full forward."""
    import torch

    tok = tiny.tokenizer
    prompt = tok(tiny.format_prompt("hello"), add_special_tokens=False)["input_ids"]
    cand = tok("Heat", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with torch.no_grad():
        logits = tiny.module(input_ids=torch.tensor([prompt + cand])).logits[0]
    lp = torch.log_softmax(logits, -1)
    manual = sum(float(lp[len(prompt) - 1 + j, t]) for j, t in enumerate(cand))
    got = tiny.score_candidates(["hello"], [["Heat"]])
    assert got.sum[0, 0] == pytest.approx(manual, abs=1e-4)


def test_shared_prefix_path_matches_the_packed_path_in_every_layout() -> None:
    """No common prefix, a prefix that is a whole prompt but one token, one-token candidates,
    duplicate prompts, empty candidate lists: the shared path gives the packed path's numbers."""
    model, tok = tiny_causal_lm(3, chat_template=False)
    lm = CausalLM.from_objects(model, tok, device="cpu", append_eos=False)
    prompts = ["abc", "xyz: watched Heat", "abc", "abcd", "q"]
    cands = [["A", " Heat"], ["Fargo", "B", "Babe 2"], [], ["x"], ["Star Wars", "Alien"]]
    for bs in (1, 3, 8):
        a = lm.score_candidates(prompts, cands, method="packed", batch_size=bs)
        b = lm.score_candidates(prompts, cands, method="shared", batch_size=bs)
        np.testing.assert_array_equal(np.isnan(a.sum), np.isnan(b.sum))
        np.testing.assert_allclose(b.sum, a.sum, atol=1e-4, rtol=0)
    # a long common prefix (prompts sharing their start) is computed once and reused
    long = ["User: age 24. Recently watched: " + h for h in ("Heat", "Fargo; Babe", "Jaws")]
    cl = [["Alien", "Aliens"], ["Toy Story"], ["Star Wars", "A", "Casablanca"]]
    a = lm.score_candidates(long, cl, method="packed")
    b = lm.score_candidates(long, cl, method="shared", batch_size=2)
    np.testing.assert_allclose(b.sum, a.sum, atol=1e-4, rtol=0)


def test_packed_without_chat_template() -> None:
    model, tok = tiny_causal_lm(1, chat_template=False)
    lm = CausalLM.from_objects(model, tok, device="cpu", append_eos=False)
    assert lm.format_prompt("Recommended movie:") == "Recommended movie:"
    cands = [[" Heat", " Fargo", " A"]]
    a = lm.score_candidates(["Recommended movie:"], cands)
    b = lm.score_candidates(["Recommended movie:"], cands, method="naive")
    np.testing.assert_allclose(a.sum, b.sum, atol=1e-4)
    assert a.n_tokens.tolist() == [[5, 6, 2]]


def test_bad_arguments(tiny: CausalLM) -> None:
    with pytest.raises(ConfigError):
        tiny.score_candidates(["a", "b"], [["x"]])
    with pytest.raises(ConfigError):
        tiny.score_candidates(["a"], [["x"]], method="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        CausalLM(max_packed_tokens=0)


def test_generate_returns_text(tiny: CausalLM) -> None:
    out = tiny.generate(["hello", "a longer prompt"], max_new_tokens=4, batch_size=2)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    # batching does not change greedy output
    assert tiny.generate(["a longer prompt"], max_new_tokens=4) == out[1:]


def test_lora_finetuning_lowers_the_sequence_loss(tmp_path) -> None:
    model, tok = tiny_causal_lm(2)
    lm = CausalLM.from_objects(model, tok, device="cpu")
    prompts = [f"User {i} watched Heat; Fargo." for i in range(6)]
    targets = ["Toy Story", "Star Wars", "Alien", "Babe", "Twelve Monkeys", "Fargo"]
    before = sequence_loss(lm, prompts, targets)
    add_lora(lm, LoraSettings(rank=4, alpha=8.0, dropout=0.0), seed=0)
    # B starts at zero: the adapted model equals the base model before training
    assert sequence_loss(lm, prompts, targets) == pytest.approx(before, abs=1e-5)
    frozen = {k: v.clone() for k, v in lm.base_model().named_parameters() if "lora_" not in k}
    losses = finetune(lm, prompts, targets, epochs=8, lr=1e-2, batch_size=3, seed=0)
    after = sequence_loss(lm, prompts, targets)
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert after < before - 0.5
    for k, v in lm.base_model().named_parameters():  # only adapters changed
        if "lora_" not in k:
            assert (v == frozen[k]).all(), k
    # adapters round-trip through plain arrays
    state = lora_state(lm)
    assert state and all(v.dtype == np.float32 for v in state.values())
    model2, tok2 = tiny_causal_lm(2)
    lm2 = CausalLM.from_objects(model2, tok2, device="cpu")
    load_lora(lm2, LoraSettings(rank=4, alpha=8.0, dropout=0.0), state)
    assert sequence_loss(lm2, prompts, targets) == pytest.approx(after, abs=1e-5)
    remove_lora(lm2)
    assert sequence_loss(lm2, prompts, targets) == pytest.approx(before, abs=1e-5)


def test_finetune_is_seeded_and_leaves_global_rng_alone() -> None:
    import torch

    def run() -> list[float]:
        model, tok = tiny_causal_lm(3)
        lm = CausalLM.from_objects(model, tok, device="cpu")
        add_lora(lm, LoraSettings(rank=2, dropout=0.1), seed=5)
        return finetune(lm, ["a", "b", "c"], ["x", "y", "z"], epochs=2, batch_size=2, seed=5)

    state = torch.random.get_rng_state()
    assert run() == run()
    assert torch.equal(torch.random.get_rng_state(), state)


def test_loading_a_saved_folder_by_path(tmp_path) -> None:
    folder = save_tiny_causal_lm(tmp_path / "tiny", seed=0)
    lm = CausalLM(str(folder), device="cpu")
    model, tok = tiny_causal_lm(0)
    ref = CausalLM.from_objects(model, tok, device="cpu")
    np.testing.assert_allclose(
        lm.score_candidates(PROMPTS, CANDS).sum, ref.score_candidates(PROMPTS, CANDS).sum,
        atol=1e-5,
    )  # fmt: skip
    assert lm.load_info is not None and not lm.load_info.dequantized_now
    with pytest.raises(ConfigError, match="cannot load causal LM"):
        CausalLM(str(tmp_path / "missing-folder-name")).load()


# ---------------------------------------------------------------------- title matching
def test_title_matching_exact_fuzzy_unmatched() -> None:
    catalog = ["Usual Suspects, The", "Star Wars", "Twelve Monkeys", "Amelie", "Babe", "Se7en"]
    m = TitleMatcher(catalog, cutoff=0.85)
    answer = (
        "1. The Usual Suspects (1995)\n"
        "2) star wars\n"
        "- Twelve Monkies\n"
        '* "Amélie"\n'
        "5. The Matrix\n"
        "\n"
        "6. Bob\n"
    )
    listed = parse_list(answer)
    assert listed == [
        "The Usual Suspects (1995)", "star wars", "Twelve Monkies", "Amélie", "The Matrix", "Bob",
    ]  # fmt: skip
    got = m.match_all(listed)
    assert [g.item for g in got] == [0, 1, 2, 3, -1, -1]
    assert [g.kind for g in got] == ["exact", "exact", "fuzzy", "exact", "unmatched", "unmatched"]
    assert 0.85 <= got[2].similarity < 1
    assert normalise_title("Usual Suspects, The") == normalise_title("the usual suspects (1995)")
    with pytest.raises(ConfigError):
        TitleMatcher(catalog, cutoff=0)


# ---------------------------------------------------------------------- bias metrics
def test_length_bias_on_hand_made_scores() -> None:
    tokens = np.array([[3, 5, 8, 13], [3, 5, 8, 13], [4, 4, 4, 4], [2, 9, 5, 0]], float)
    scores = np.array(
        [[-1.0, -0.5, -0.2, -0.1], [-1.0, -2.0, -3.0, -4.0], [1, 2, 3, 4], [1.0, 3.0, 2.0, np.nan]]
    )
    rho = length_bias(scores, tokens)
    assert rho[0] == pytest.approx(1.0)  # longer titles always scored higher
    assert rho[1] == pytest.approx(-1.0)  # shorter titles always scored higher
    assert np.isnan(rho[2])  # constant length: undefined
    assert rho[3] == pytest.approx(1.0)  # NaN (padding) ignored: ranks of (2,9,5) vs (1,3,2)
    assert mean_length_bias(scores, tokens) == pytest.approx(1 / 3)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert np.isnan(mean_length_bias(scores[2:3], tokens[2:3]))
    assert w
    # agrees with scipy on a random row
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1, 30)), rng.normal(size=(1, 30))
    assert rowwise_spearman(x, y)[0] == pytest.approx(spearmanr(x[0], y[0]).statistic)


def test_popularity_concentration_and_jaccard() -> None:
    pop = np.array([100, 50, 10, 1, 0])
    items = np.array([[0, 1, 2, 3], [3, 2, 1, -1]])
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, np.nan]])
    rho = popularity_bias(scores, items, pop)
    np.testing.assert_allclose(rho, [1.0, -1.0])
    np.testing.assert_allclose(mean_popularity_at_k(items, pop, k=2), [75.0, 5.5])
    assert top1_concentration(np.array([[1, 2], [1, 3], [2, 1], [-1, -1]])) == (1, 2, 2 / 3)
    a = np.array([[1, 2, 3], [1, 2, 3], [1, -1, -1]])
    b = np.array([[3, 2, 1], [4, 5, 6], [1, 7, -1]])
    np.testing.assert_allclose(jaccard_at_k(a, b, k=3), [1.0, 0.0, 0.5])


# ---------------------------------------------------------------------- the real offline model
@pytest.mark.slow
@pytest.mark.offline_model("smollm2")
def test_real_smollm2_gguf_offline(tmp_path) -> None:
    pytest.importorskip("gguf")
    lm = CausalLM(cache_dir=tmp_path, device="cpu")
    lm.load()
    assert lm.load_info is not None and lm.load_info.dequantized_now
    assert any((tmp_path / "llm").glob("*/model.safetensors"))
    prompt = "I loved Star Wars and The Empire Strikes Back. Recommend one movie, title only."
    cands = [["Return of the Jedi", "Sense and Sensibility", "Babe", "Qzx Vbwk Jrrp"]]
    packed = lm.score_candidates([prompt], cands)
    naive = lm.score_candidates([prompt], cands, method="naive")
    np.testing.assert_allclose(packed.sum, naive.sum, atol=1e-3)
    # the shared-prefix path (default) equals the previous packed path on a batch of prompts
    prompts = [
        prompt,
        "User: age 35. Recently watched: Heat; Fargo. Recommend one movie.",
        "User: no profile. Recommend one movie, title only.",
    ]
    many = [cands[0], ["Heat", "Casablanca", "Twelve Monkeys"], ["Toy Story", "Jaws"]]
    shared = lm.score_candidates(prompts, many, method="shared", batch_size=2)
    old = lm.score_candidates(prompts, many, method="packed", batch_size=2)
    # float32 sums of 30-layer activations in another order: 1.5e-4 at most over the 960
    # candidates of benchmarks/llm_throughput.py
    np.testing.assert_allclose(shared.sum, old.sum, atol=1e-3, rtol=0)
    assert np.isfinite(packed.sum).all()
    # real titles are far more likely answers than a string of random letters
    assert packed.mean[0, 3] < packed.mean[0, :2].min() - 1.0
    # second load comes from the dequantized cache
    t = time.perf_counter()
    again = CausalLM(cache_dir=tmp_path, device="cpu").load()
    assert again.load_info is not None and not again.load_info.dequantized_now
    assert time.perf_counter() - t < 60
    np.testing.assert_allclose(again.score_candidates([prompt], cands).sum, packed.sum, atol=1e-4)


# ---------------------------------------------------------------------- ranking fine-tuning
def test_differentiable_scores_equal_the_scoring_path(tiny: CausalLM) -> None:
    import torch

    lp = tiny.score_candidates(PROMPTS, CANDS, method="naive")
    p_ids = tiny.prompt_ids(PROMPTS)
    c_ids = [tiny.candidate_ids(c) for c in CANDS]
    total, count = tiny.candidate_logprob_tensor(p_ids, c_ids)
    have = ~np.isnan(lp.sum)
    np.testing.assert_allclose(total.detach().numpy()[have], lp.sum[have], atol=1e-4)
    np.testing.assert_array_equal(count.numpy(), lp.n_tokens)
    assert (total.detach().numpy()[~have] == 0).all()
    # gradients reach the weights through every candidate cell
    total.sum().backward()
    grads = [p.grad for p in tiny.module.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    tiny.module.zero_grad(set_to_none=True)
    with torch.no_grad():
        assert torch.isfinite(total).all()


def _examples() -> list:
    from debiasrec.lm.llm import RankingExample

    titles = ["Toy Story", "Heat", "Alien", "Babe", "Fargo", "Star Wars", "Twelve Monkeys"]
    out = []
    for i in range(6):
        cands = tuple(titles[(i + j) % len(titles)] for j in range(5))
        out.append(RankingExample(f"User {i} watched {titles[i]}.", cands, (i % 5, (i + 2) % 5)))
    return out


def test_ranking_loss_by_hand(tiny: CausalLM) -> None:
    from debiasrec.lm.llm import RankingExample, ranking_loss_terms

    ex = [RankingExample(PROMPTS[0], tuple(CANDS[0]), (1, 3))]
    s = tiny.score_candidates(PROMPTS[:1], CANDS[:1], method="naive")
    sums, n_tok = s.sum[0], s.n_tokens[0]
    neg = np.logaddexp(sums[0], sums[2])  # candidates 0 and 2 are the negatives
    want = np.mean([np.logaddexp(sums[p], neg) - sums[p] for p in (1, 3)])
    want_lm = np.mean([-sums[p] / n_tok[p] for p in (1, 3)])
    terms = {k: v.detach() for k, v in ranking_loss_terms(tiny, ex).items()}
    assert float(terms["rank"]) == pytest.approx(want, abs=1e-4)
    assert float(terms["lm"]) == pytest.approx(want_lm, abs=1e-4)
    mean = {
        k: v.detach()
        for k, v in ranking_loss_terms(tiny, ex, length_norm="mean", temperature=2.0).items()
    }
    m = sums / n_tok / 2.0
    want_mean = np.mean([np.logaddexp(m[p], np.logaddexp(m[0], m[2])) - m[p] for p in (1, 3)])
    assert float(mean["rank"]) == pytest.approx(want_mean, abs=1e-4)


def test_ranking_example_checks() -> None:
    from debiasrec.lm.llm import RankingExample

    with pytest.raises(ConfigError, match="positives"):
        RankingExample("p", ("a", "b"), ())
    with pytest.raises(ConfigError, match="positives"):
        RankingExample("p", ("a", "b"), (2,))
    with pytest.raises(ConfigError, match="negative"):
        RankingExample("p", ("a", "b"), (0, 1))


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_ranking_finetuning_lowers_the_ranking_loss(kind: str) -> None:
    import torch

    from debiasrec.lm.llm import enable_full_finetune, finetune_ranking, ranking_loss

    model, tok = tiny_causal_lm(4)
    lm = CausalLM.from_objects(model, tok, device="cpu")
    ex = _examples()
    before = ranking_loss(lm, ex)
    base = {k: v.clone() for k, v in lm.base_model().named_parameters()}
    if kind == "lora":
        add_lora(lm, LoraSettings(rank=4, alpha=8.0, dropout=0.0), seed=0)
        lr = 3e-2
    else:
        n = enable_full_finetune(lm)
        assert n == sum(p.numel() for p in lm.module.parameters())
        lr = 3e-3
    state = torch.random.get_rng_state()
    losses = finetune_ranking(lm, ex, epochs=10, lr=lr, batch_size=3, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    after = ranking_loss(lm, ex)
    assert len(losses) == 10 and losses[-1] < losses[0]
    assert after < 0.5 * before, (before, after)
    changed = [
        k
        for k, v in lm.base_model().named_parameters()
        if k in base and not torch.equal(v, base[k])
    ]
    if kind == "lora":
        assert not changed  # only adapters train
    else:
        assert len(changed) == len(base)


def test_ranking_finetuning_checks(tiny: CausalLM) -> None:
    from debiasrec.lm.llm import finetune_ranking

    model, tok = tiny_causal_lm(0)
    lm = CausalLM.from_objects(model, tok, device="cpu")
    for p in lm.module.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="trainable"):
        finetune_ranking(lm, _examples())
    with pytest.raises(ConfigError, match="no examples"):
        finetune_ranking(lm, [])
    with pytest.raises(ConfigError, match="lr"):
        finetune_ranking(lm, _examples(), lr=0)


def test_full_weights_round_trip() -> None:
    from debiasrec.lm.llm import enable_full_finetune, full_state, load_full_state

    model, tok = tiny_causal_lm(5)
    lm = CausalLM.from_objects(model, tok, device="cpu")
    enable_full_finetune(lm)
    from debiasrec.lm.llm import finetune_ranking

    finetune_ranking(lm, _examples(), epochs=1, lr=1e-2, batch_size=6)
    state = full_state(lm)
    want = lm.score_candidates(PROMPTS, CANDS).sum
    model2, tok2 = tiny_causal_lm(5)
    lm2 = CausalLM.from_objects(model2, tok2, device="cpu")
    assert not np.allclose(lm2.score_candidates(PROMPTS, CANDS).sum, want, equal_nan=True)
    load_full_state(lm2, state)
    np.testing.assert_allclose(lm2.score_candidates(PROMPTS, CANDS).sum, want, atol=1e-5)
    with pytest.raises(ConfigError, match="do not fit"):
        load_full_state(lm2, {**state, "extra.weight": np.zeros(1, np.float32)})
    add_lora(lm2, LoraSettings(rank=2), seed=0)
    with pytest.raises(ConfigError, match="LoRA"):
        enable_full_finetune(lm2)
