"""Reusable prediction heads and multi-task sharing blocks on top of a recommender's representation.

Building blocks of :mod:`debiasrec.debias.inproc.multitask` (and of any model that wants an
auxiliary output):

* :class:`MLP` -- a plain multi-layer perceptron (the towers of every task).
* :class:`TextAdapter` -- a trainable map from frozen sentence-encoder features (e.g. the 384-dim
  all-MiniLM-L6-v2 vectors of :class:`debiasrec.lm.encoder.SentenceEncoder`) into a model's
  representation space; a text item tower can share the same instance.
* :class:`TextSentimentHead` -- adapter + classifier: encoder features -> sentiment logit(s).
* :class:`SharedBottom` -- hard parameter sharing (Caruana, "Multitask Learning", Machine
  Learning 1997): one MLP ``f`` shared by every task, ``h_k = f(x_k)``.
* :class:`MMoE` -- multi-gate mixture of experts (Ma et al., "Modeling Task Relationships in
  Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018):
  ``h_k = sum_e g_k(x)_e * f_e(x)`` with ``g_k(x) = softmax(W_k x)`` (one gate per task, the
  experts ``f_e`` shared).

Every block is built on the ``meta`` device and initialised from an explicit ``torch.Generator``
(:func:`init_parameters`), so building a head never draws from torch's global random stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from debiasrec.errors import ConfigError


def init_parameters(module: torch.nn.Module, gen: torch.Generator) -> torch.nn.Module:
    """Materialise ``module`` on the CPU and initialise it from ``gen`` (in place; returns it).

    ``nn.Linear`` layers get PyTorch's default initialisation (``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))`` for weight and bias, i.e. Kaiming-uniform with ``a = sqrt(5)``), drawn from
    ``gen``; other parameters (e.g. MMoE gates) are drawn the same way with their last dimension
    as fan-in. Modules built on the ``meta`` device are moved to the CPU first.
    """
    if any(p.is_meta for p in module.parameters()):
        module.to_empty(device="cpu")
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, torch.nn.Linear):
                bound = 1.0 / math.sqrt(sub.in_features) if sub.in_features > 0 else 0.0
                sub.weight.uniform_(-bound, bound, generator=gen)
                if sub.bias is not None:
                    sub.bias.uniform_(-bound, bound, generator=gen)
            elif isinstance(sub, torch.nn.LayerNorm):
                if sub.weight is not None:
                    sub.weight.fill_(1.0)
                if sub.bias is not None:
                    sub.bias.zero_()
            else:
                for p in sub.parameters(recurse=False):
                    fan_in = p.shape[-1] if p.dim() > 0 else 1
                    bound = 1.0 / math.sqrt(max(fan_in, 1))
                    p.uniform_(-bound, bound, generator=gen)
    return module


def _check_dims(**dims: int) -> None:
    bad = {k: v for k, v in dims.items() if int(v) < 1}
    if bad:
        raise ConfigError(f"layer sizes must be >= 1, got {bad}")


class MLP(torch.nn.Module):
    """``Linear -> ReLU -> (Dropout)`` blocks followed by a linear output layer.

    Args:
        in_dim: input width.
        out_dim: output width.
        hidden: widths of the hidden layers (empty: a single linear layer).
        dropout: dropout probability after each hidden activation.
        out_activation: apply ReLU to the output too (for representation layers).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (),
        *,
        dropout: float = 0.0,
        out_activation: bool = False,
    ) -> None:
        super().__init__()
        _check_dims(
            in_dim=in_dim, out_dim=out_dim, **{f"hidden[{i}]": h for i, h in enumerate(hidden)}
        )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[torch.nn.Module] = []
        width = in_dim
        with torch.device("meta"):
            for h in hidden:
                layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
                if dropout > 0:
                    layers.append(torch.nn.Dropout(dropout))
                width = h
            layers.append(torch.nn.Linear(width, out_dim))
        if out_activation:
            layers.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*layers)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TextAdapter(torch.nn.Module):
    """Trainable adapter from frozen sentence-encoder features to a representation of width ``dim``.

    ``a(x) = LayerNorm(W2 relu(W1 x) + P x)``: a one-hidden-layer MLP with a linear skip
    projection ``P`` (a residual adapter, cf. Houlsby et al., "Parameter-Efficient Transfer
    Learning for NLP", ICML 2019, applied on top of the frozen encoder instead of inside it).

    Args:
        in_dim: encoder feature width (384 for all-MiniLM-L6-v2).
        dim: output width (e.g. the recommender's embedding size).
        hidden: adapter hidden width.
    """

    def __init__(self, in_dim: int, dim: int, hidden: int = 128) -> None:
        super().__init__()
        _check_dims(in_dim=in_dim, dim=dim, hidden=hidden)
        with torch.device("meta"):
            self.up = torch.nn.Linear(in_dim, hidden)
            self.down = torch.nn.Linear(hidden, dim)
            self.skip = torch.nn.Linear(in_dim, dim, bias=False)
            self.norm = torch.nn.LayerNorm(dim)
        self.in_dim, self.dim = int(in_dim), int(dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(self.down(torch.relu(self.up(features))) + self.skip(features))


class TextSentimentHead(torch.nn.Module):
    """Sentiment classifier on frozen sentence-encoder features: ``logits = C(adapter(x))``.

    A reusable module: pass an existing :class:`TextAdapter` to share it (with a text item tower or
    another text task); otherwise one is created.

    Args:
        in_dim: encoder feature width.
        dim: adapter output width.
        n_outputs: 1 for binary sentiment (a logit), more for classes or (logit, rating) pairs.
        hidden: hidden widths of the classifier on top of the adapter.
        adapter: a shared adapter (its ``in_dim``/``dim`` must match).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int = 64,
        n_outputs: int = 1,
        hidden: Sequence[int] = (),
        *,
        adapter: TextAdapter | None = None,
    ) -> None:
        super().__init__()
        if adapter is not None and (adapter.in_dim != in_dim or adapter.dim != dim):
            raise ConfigError(
                f"shared adapter maps {adapter.in_dim} -> {adapter.dim}, but the head expects "
                f"{in_dim} -> {dim}"
            )
        self.adapter = adapter if adapter is not None else TextAdapter(in_dim, dim)
        self.classifier = MLP(dim, n_outputs, hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.adapter(features))


class SharedBottom(torch.nn.Module):
    """Hard parameter sharing: every task's input goes through the same MLP ``f``.

    Args:
        in_dim: input width (the same for every task).
        out_dim: width of the shared representation.
        hidden: hidden widths of ``f``.
        tasks: task names (kept for the same call signature as :class:`MMoE`).
    """

    def __init__(
        self, in_dim: int, out_dim: int, tasks: Sequence[str], hidden: Sequence[int] = ()
    ) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.bottom = MLP(in_dim, out_dim, hidden, out_activation=True)

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """Shared representation of ``x`` (``task`` is only checked)."""
        if task not in self.tasks:
            raise ConfigError(f"unknown task {task!r}; tasks: {self.tasks}")
        return self.bottom(x)


class MMoE(torch.nn.Module):
    """Multi-gate mixture of experts (Ma et al., KDD 2018).

    ``h_k(x) = sum_{e=1..E} g_k(x)_e f_e(x)`` with experts ``f_e`` (MLPs, shared by all tasks) and
    one softmax gate per task ``g_k(x) = softmax(W_k x + b_k)`` (so ``sum_e g_k(x)_e = 1``).

    Args:
        in_dim: input width.
        out_dim: expert output width.
        tasks: task names (one gate each).
        n_experts: number of experts ``E``.
        hidden: hidden widths of each expert.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        tasks: Sequence[str],
        n_experts: int = 4,
        hidden: Sequence[int] = (),
    ) -> None:
        super().__init__()
        _check_dims(n_experts=n_experts)
        if not tasks:
            raise ConfigError("MMoE needs at least one task")
        self.tasks = list(tasks)
        self.experts = torch.nn.ModuleList(
            MLP(in_dim, out_dim, hidden, out_activation=True) for _ in range(n_experts)
        )
        with torch.device("meta"):
            self.gates = torch.nn.ModuleDict({t: torch.nn.Linear(in_dim, n_experts) for t in tasks})

    def gate(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """Gate weights ``g_task(x)`` ``[n, E]`` (rows sum to 1)."""
        if task not in self.gates:
            raise ConfigError(f"unknown task {task!r}; tasks: {self.tasks}")
        return torch.softmax(self.gates[task](x), dim=-1)

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """Task-specific mixture ``h_task(x)`` ``[n, out_dim]``."""
        g = self.gate(x, task)
        expert_out = torch.stack([f(x) for f in self.experts], dim=1)  # [n, E, out]
        return (g.unsqueeze(-1) * expert_out).sum(1)
