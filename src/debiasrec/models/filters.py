"""Compositional user-representation filters (Bose & Hamilton, "Compositional Fairness
Constraints for Graph Embeddings", ICML 2019).

One filter ``f_k : R^d -> R^d`` per named (sensitive) attribute ``k``; for a set ``S`` of active
filters the user representation ``z`` becomes the mean ``C_S(z) = (1/|S|) sum_{k in S} f_k(z)``
(``C_{}(z) = z``). Each filter is ``f_k(z) = A_k z + W2_k leaky_relu(W1_k z + b1_k) + b2_k`` with
``A_k`` initialised to the identity and ``W2_k`` to zero, so a new filter starts as the identity
and training (against an adversary) learns what to remove.

Filters are a generic model hook: a :class:`~debiasrec.models.torch_base.TorchRecommender` with a
filter installed (``model.set_user_filter(...)``) applies it inside ``user_repr`` and scoring, and
saves it in its ``state_dict``. The filter knows attribute *names* only, never attribute values,
so no sensitive attribute is needed at inference; which filters apply is chosen with
:meth:`CompositionalFilter.use` (all by default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from debiasrec.errors import ConfigError


class AttributeFilter(torch.nn.Module):
    """``f(z) = A z + W2 leaky_relu(W1 z + b1) + b2``; starts as the identity."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(dim, dim, bias=False)
        self.hidden = torch.nn.Linear(dim, hidden)
        self.out = torch.nn.Linear(hidden, dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))
            self.out.weight.zero_()
            self.out.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z) + self.out(torch.nn.functional.leaky_relu(self.hidden(z)))


class CompositionalFilter(torch.nn.Module):
    """Per-attribute filters combined by averaging the active ones (Bose & Hamilton 2019)."""

    def __init__(self, names: Sequence[str], dim: int, hidden: int = 64) -> None:
        super().__init__()
        if not names:
            raise ConfigError("CompositionalFilter needs at least one attribute name")
        self.filters = torch.nn.ModuleDict({n: AttributeFilter(dim, hidden) for n in names})
        self.active: tuple[str, ...] | None = None  # None: every filter

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.filters.keys())

    def set_active(self, names: Sequence[str] | None) -> None:
        """Apply only ``names`` from now on (``None``: all; ``[]``: none, i.e. the identity)."""
        if names is not None:
            unknown = sorted(set(names) - set(self.filters.keys()))
            if unknown:
                raise ConfigError(
                    f"no filter for {unknown}; this model has filters for {list(self.names)}"
                )
            names = tuple(names)
        self.active = names

    @contextlib.contextmanager
    def use(self, names: Sequence[str] | None) -> Iterator[CompositionalFilter]:
        """Context manager: apply only ``names`` inside the block, then restore."""
        before = self.active
        self.set_active(names)
        try:
            yield self
        finally:
            self.active = before

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        names = self.names if self.active is None else self.active
        if not names:
            return z
        out = self.filters[names[0]](z)
        for n in names[1:]:
            out = out + self.filters[n](z)
        return out / len(names)

    @classmethod
    def from_state_dict(
        cls, state: dict[str, torch.Tensor], prefix: str = ""
    ) -> CompositionalFilter:
        """Rebuild the architecture (names, dim, hidden) from saved tensors (for ``load``)."""
        names: list[str] = []
        dim = hidden = 0
        for key, t in state.items():
            if not key.startswith(prefix + "filters."):
                continue
            name, _, rest = key[len(prefix) + len("filters.") :].partition(".")
            if name not in names:
                names.append(name)
            if rest == "hidden.weight":
                hidden, dim = t.shape
        if not names:
            raise ConfigError(f"no filter tensors under {prefix!r} in the saved state")
        return cls(names, int(dim), int(hidden))
