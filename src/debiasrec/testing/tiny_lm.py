"""A tiny, randomly initialised causal LM with a byte-level tokenizer, for tests.

It has the parts the LLM code relies on (a chat template, an end-of-turn token used as EOS, a pad
token, a Llama architecture with grouped-query attention and rotary positions) and loads from a
folder like any Hugging Face model, so tests exercise the real loading path without network.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from debiasrec.errors import require

#: A ChatML template (as SmolLM2 uses), without a default system message.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(*, chat_template: bool = True) -> Any:
    """A byte-level tokenizer (256 byte tokens + ``<|im_start|>``, ``<|im_end|>``, ``<pad>``)."""
    tokenizers = require("tokenizers", "lm")
    transformers = require("transformers", "lm")
    from tokenizers import decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>", "<pad>"])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<pad>"
    )
    if chat_template:
        fast.chat_template = CHATML
    return fast


def tiny_causal_lm(
    seed: int = 0,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    chat_template: bool = True,
) -> tuple[Any, Any]:
    """``(model, tokenizer)``: a randomly initialised ``LlamaForCausalLM`` (float32, eval mode).

    The weights are drawn from a local ``torch.Generator`` seeded with ``seed`` (no global state).
    """
    transformers = require("transformers", "lm")
    import torch

    tok = tiny_tokenizer(chat_template=chat_template)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):  # the default init draws from the global RNG
        model = transformers.LlamaForCausalLM(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    model.eval()
    return model, tok


def save_tiny_causal_lm(folder: str | Path, seed: int = 0, **kwargs: Any) -> Path:
    """Write :func:`tiny_causal_lm` into ``folder`` (loadable by name with ``from_pretrained``)."""
    folder = Path(folder)
    model, tok = tiny_causal_lm(seed, **kwargs)
    with contextlib.redirect_stderr(io.StringIO()):  # save_pretrained's progress bar
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    return folder
