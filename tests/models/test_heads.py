"""Prediction heads and sharing blocks: shapes, generator-only initialisation, shared adapters."""

from __future__ import annotations

import pytest
import torch

from debiasrec.errors import ConfigError
from debiasrec.models.heads import (
    MLP,
    SharedBottom,
    TextAdapter,
    TextSentimentHead,
    init_parameters,
)
from debiasrec.random import torch_generator


def test_init_is_reproducible_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = init_parameters(TextSentimentHead(12, 8, hidden=[4]), torch_generator(3))
    b = init_parameters(TextSentimentHead(12, 8, hidden=[4]), torch_generator(3))
    assert torch.equal(torch.random.get_rng_state(), state)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    lin = a.adapter.up
    bound = 1.0 / 12**0.5
    assert float(lin.weight.detach().abs().max()) <= bound
    assert torch.equal(a.adapter.norm.weight, torch.ones(8))


def test_text_head_shapes_and_shared_adapter() -> None:
    adapter = TextAdapter(10, 6, hidden=16)
    h1 = TextSentimentHead(10, 6, adapter=adapter)
    h2 = TextSentimentHead(10, 6, n_outputs=2, adapter=adapter)
    init_parameters(h1, torch_generator(0))
    init_parameters(h2.classifier, torch_generator(1))
    assert h1.adapter is h2.adapter
    x = torch.randn(5, 10)
    assert h1(x).shape == (5, 1) and h2(x).shape == (5, 2)
    # one parameter set: a step through h1 changes what h2 sees
    before = h2(x).detach().clone()
    h1(x).sum().backward()
    with torch.no_grad():
        for p in adapter.parameters():
            p -= 0.1 * p.grad
    assert not torch.allclose(before, h2(x))
    with pytest.raises(ConfigError, match="shared adapter"):
        TextSentimentHead(11, 6, adapter=adapter)


def test_mlp_and_shared_bottom() -> None:
    mlp = init_parameters(MLP(4, 3, [5, 6], dropout=0.1), torch_generator(0))
    assert mlp(torch.randn(2, 4)).shape == (2, 3)
    sb = init_parameters(SharedBottom(4, 7, ["a", "b"], [5]), torch_generator(0))
    x = torch.randn(3, 4)
    assert torch.equal(sb(x, "a"), sb(x, "b")) and (sb(x, "a") >= 0).all()
    with pytest.raises(ConfigError, match="unknown task"):
        sb(x, "c")
    with pytest.raises(ConfigError, match="hidden"):
        MLP(4, 3, [0])
    with pytest.raises(ConfigError, match="dropout"):
        MLP(4, 3, dropout=1.0)
