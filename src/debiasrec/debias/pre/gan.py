"""Conditional WGAN-GP augmentation: synthetic users for a group, and counterfactual twins.

Model (one :class:`ProfileGAN` serves both transforms). Real user ``u`` of group ``g`` is its
multi-hot row ``x_u`` (``|x_u| = L_u`` items).

* Generator ``G(z, c[, h])``: an MLP from noise ``z ~ N(0, I)``, the one-hot group ``c`` and
  (twins only) a taste code ``h = E(x_u / L_u)`` of a seed user to item logits ``l``. For a
  target length ``L`` its continuous profile is ``min(1, L * softmax(l))``, which equals a
  multi-hot row exactly when the generator spreads its mass evenly over ``L`` items; this is what
  the critic compares with real rows. A discrete profile of length ``L`` is drawn
  by sampling ``L`` distinct items with probability ``∝ softmax(l)`` (Gumbel-top-``L``, i.e.
  successive sampling without replacement; ``sampling="top"`` takes the ``L`` largest logits).
  ``L`` is drawn from the real length distribution of the target group (balancing), or is the
  seed user's length (twins).
* Critic ``D(x, c) = w^T phi(x) + e_c^T phi(x)``: an MLP feature map ``phi`` with a linear
  output and a projection onto a learned group embedding ``e_c`` (the projection discriminator
  of Miyato & Koyama, "cGANs with Projection Discriminator", ICLR 2018).
* Training: Wasserstein GAN with gradient penalty, WGAN-GP (Gulrajani et al., "Improved Training
  of Wasserstein GANs", NeurIPS 2017; conditional as in Mirza & Osindero 2014)::

      L_D = E[D(G(z, c'), c')] - E[D(x, c)] + lambda_gp * E[(||grad D(x_hat, c)|| - 1)^2]
      L_G = -E[D(G(z, c'), c')]  (+ recon_weight * L_rec for twins)

  with ``x_hat`` on segments between real and generated profiles, ``critic_steps`` critic
  updates per generator update and Adam(beta = (0.5, 0.9)) as in the paper. Conditions ``c'``
  and lengths ``L`` of generated profiles are those of randomly drawn real users (balancing), or
  a group drawn uniformly among those other than the seed's and the seed's length (twins).

Two transforms (both return the training set with new users appended, ids ``gen:k`` /
``twin:k``, after the original user codes, in training only; the validation and test splits are
untouched; see :meth:`debiasrec.data.Dataset.append_users`):

* :class:`GANBalance` -- (a) synthesise users of under-represented groups until each eligible
  group has ``ratio`` x the users of the largest one (the same plan as
  :class:`~debiasrec.debias.pre.oversample.Oversample`, the baseline it must beat). Non-sensitive
  user-table columns of a new user are copied from a random real user of its group.
* :class:`GANTwins` -- (b) counterfactual twins in the spirit of FDA (Chen et al., "Improving
  Recommendation Fairness via Data Augmentation", WWW 2023): for a seed user of group ``g``, a
  profile as it would look in group ``g'`` with the same non-sensitive taste. The taste encoder
  ``E`` and the generator are trained with a reconstruction term, the multinomial likelihood of
  the seed's own items under ``G(z, g, E(v_u))`` divided by its length (Mult-VAE's likelihood,
  Liang et al., WWW 2018), so ``h`` keeps the user's taste; the critic makes ``G(z, g', h)`` look
  like a real user of ``g'``. The twin is added with attribute ``g'`` and the seed's other
  user-table columns.

Generated interactions get no rating (NaN) and the last training timestamp when the dataset has
those columns, and weight 1 when it is weighted. ``report_`` holds counts, training time and,
with ``fidelity=True``, the fidelity of the generated profiles against the real users of the
same groups (:mod:`debiasrec.metrics.fidelity`: two-sample AUC, popularity and per-group genre
distances, memorisation rate).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.debias.pre._groups import (
    active_users_per_group,
    group_codes,
    new_user_ids,
    new_users_table,
    resolve_groups,
    top_up_plan,
)
from debiasrec.debias.pre.base import PreConfig, PreTransform, register
from debiasrec.errors import ConfigError, DataError
from debiasrec.metrics.fidelity import (
    genre_distance,
    memorisation_rate,
    popularity_distance,
    two_sample_auc,
)
from debiasrec.random import derive_seed, np_rng, torch_generator


class GANConfig(PreConfig):
    """Settings shared by :class:`GANBalance` and :class:`GANTwins` (WGAN-GP)."""

    attr: str = Field("gender", description="sensitive attribute the generator is conditioned on")
    noise_dim: int = Field(32, ge=1)
    hidden: int = Field(128, ge=4, description="hidden units of generator, critic and encoder")
    taste_dim: int = Field(64, ge=1, description="taste-code size (twins)")
    steps: int = Field(300, ge=1, description="generator updates")
    critic_steps: int = Field(3, ge=1, description="critic updates per generator update")
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0)
    gp_weight: float = Field(10.0, ge=0, description="gradient-penalty weight lambda_gp")
    sampling: Literal["sample", "top"] = Field(
        "sample", description="draw items ∝ generator probabilities, or take the top ones"
    )
    fidelity: bool = Field(True, description="compute fidelity metrics into report_")
    memorisation_threshold: float = Field(0.8, gt=0, le=1)
    max_seconds: float | None = Field(None, gt=0, description="wall-clock training budget")


class _Generator(torch.nn.Module):
    def __init__(self, in_dim: int, hidden: int, n_items: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(in_dim, hidden),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(hidden, hidden),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(hidden, n_items),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ProfileGAN(torch.nn.Module):
    """Generator, critic and (seeded mode) taste encoder of the profile WGAN-GP.

    Args:
        n_items: catalogue size.
        n_groups: number of condition groups.
        cfg: hyper-parameters.
        seeded: whether the generator also reads a seed user's taste code (twins).
    """

    def __init__(self, n_items: int, n_groups: int, cfg: GANConfig, *, seeded: bool) -> None:
        super().__init__()
        self.n_items, self.n_groups, self.seeded = n_items, n_groups, seeded
        self.noise_dim = cfg.noise_dim
        taste = cfg.taste_dim if seeded else 0
        self.generator = _Generator(cfg.noise_dim + n_groups + taste, cfg.hidden, n_items)
        feat = max(cfg.hidden // 2, 1)
        self.critic = torch.nn.Sequential(
            torch.nn.Linear(n_items, cfg.hidden),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(cfg.hidden, feat),
            torch.nn.LeakyReLU(0.2),
        )
        self.critic_out = torch.nn.Linear(feat, 1)
        self.critic_embed = torch.nn.Embedding(n_groups, feat)
        self.encoder = (
            torch.nn.Sequential(
                torch.nn.Linear(n_items, cfg.hidden),
                torch.nn.Tanh(),
                torch.nn.Linear(cfg.hidden, cfg.taste_dim),
            )
            if seeded
            else None
        )
        self.scale: torch.Tensor
        self.register_buffer("scale", torch.ones(()))

    def logits(
        self, cond: torch.Tensor, gen: torch.Generator, seed_rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Item logits for group codes ``cond`` (and seed profiles in seeded mode)."""
        z = torch.randn(len(cond), self.noise_dim, generator=gen)
        parts = [z, torch.nn.functional.one_hot(cond, self.n_groups).to(z.dtype)]
        if self.seeded:
            if seed_rows is None or self.encoder is None:
                raise DataError("a seeded generator needs seed profiles")
            parts.append(self.encoder(seed_rows))
        return self.generator(torch.cat(parts, dim=1))

    def profile(self, logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Continuous generated profile ``min(1, L * softmax(l))`` for target ``lengths``."""
        p = torch.softmax(logits, dim=1) * lengths.to(logits.dtype).unsqueeze(1)
        return p.clamp(max=1.0)

    def score(self, v: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Critic value of profiles ``v`` under group codes ``cond`` (projection critic)."""
        phi = self.critic(v)
        return self.critic_out(phi).squeeze(1) + (self.critic_embed(cond) * phi).sum(1)

    def critic_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters of the critic (body, output layer and group embedding)."""
        return [
            *self.critic.parameters(),
            *self.critic_out.parameters(),
            *self.critic_embed.parameters(),
        ]


def other_group(own: np.ndarray, allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each ``own[r]``, a group drawn uniformly from the sorted ``allowed`` minus ``own[r]``.

    Rows whose only allowed group is their own keep it.
    """
    allowed = np.asarray(allowed, dtype=np.int64)
    own = np.asarray(own, dtype=np.int64)
    pos = np.searchsorted(allowed, own)
    inside = (pos < len(allowed)) & (allowed[np.minimum(pos, len(allowed) - 1)] == own)
    n_choices = len(allowed) - inside.astype(np.int64)
    r = np.floor(rng.random(len(own)) * np.maximum(n_choices, 1)).astype(np.int64)
    r = np.where(inside & (r >= pos), r + 1, r)
    out = allowed[np.minimum(r, len(allowed) - 1)]
    return np.where(n_choices > 0, out, own)


def _dense(rows: sp.csr_matrix, idx: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rows[idx].toarray().astype(np.float32))


def train_gan(
    train: Dataset,
    codes: np.ndarray,
    n_groups: int,
    cfg: GANConfig,
    *,
    seeded: bool,
    recon_weight: float = 0.0,
    rng: np.random.Generator,
) -> tuple[ProfileGAN, dict[str, Any]]:
    """Fit a :class:`ProfileGAN` on the active users of ``train`` with known group ``codes``.

    Returns the model (in eval mode) and a training summary (seconds, steps, last losses).
    """
    csr = train.csr()
    lens = np.diff(csr.indptr)
    users = np.flatnonzero((lens > 0) & (codes >= 0))
    if len(users) < 2:
        raise DataError(f"GAN augmentation needs >= 2 users with a known {cfg.attr!r} group")
    norm = sp.diags(1.0 / np.maximum(lens, 1)).dot(csr).tocsr().astype(np.float32)
    scale = float(lens[users].mean())
    gen = torch_generator(rng)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(rng))
        model = ProfileGAN(train.n_items, n_groups, cfg, seeded=seeded)
    model.scale.fill_(scale)
    g_params = list(model.generator.parameters())
    if model.encoder is not None:
        g_params += list(model.encoder.parameters())
    opt_g = torch.optim.Adam(g_params, lr=cfg.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(model.critic_parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    present = np.unique(codes[users])
    bs = min(cfg.batch_size, len(users))

    def draw(n: int) -> np.ndarray:
        return users[rng.integers(0, len(users), size=n)]

    lens_t = torch.from_numpy(lens.astype(np.float32))

    def fake_conditions(real_idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Groups and lengths of generated rows (seeded: for the seeds ``real_idx``)."""
        if not seeded:  # groups and lengths of another batch of real users
            other = draw(len(real_idx))
            return torch.from_numpy(codes[other]), lens_t[other]
        return torch.from_numpy(other_group(codes[real_idx], present, rng)), lens_t[real_idx]

    t0 = time.perf_counter()
    last: dict[str, float] = {}
    step = 0
    for step in range(cfg.steps):
        model.train()
        for _ in range(cfg.critic_steps):
            idx = draw(bs)
            real = _dense(csr, idx)
            seed_in = _dense(norm, idx) * scale if seeded else None
            c_real = torch.from_numpy(codes[idx])
            c_fake, l_fake = fake_conditions(idx)
            with torch.no_grad():
                fake = model.profile(model.logits(c_fake, gen, seed_in), l_fake)
            d_real = model.score(real, c_real).mean()
            d_fake = model.score(fake, c_fake).mean()
            eps = torch.rand(bs, 1, generator=gen)
            mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
            out = model.score(mix, c_real)
            grad = torch.autograd.grad(out.sum(), mix, create_graph=True)[0]
            gp = (grad.norm(dim=1) - 1).pow(2).mean()
            loss_d = d_fake - d_real + cfg.gp_weight * gp
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        idx = draw(bs)
        seed_in = _dense(norm, idx) * scale if seeded else None
        c_fake, l_fake = fake_conditions(idx)
        logits = model.logits(c_fake, gen, seed_in)
        loss_g = -model.score(model.profile(logits, l_fake), c_fake).mean()
        rec = torch.zeros(())
        if seeded and recon_weight > 0:
            x = _dense(csr, idx)
            c_own = torch.from_numpy(codes[idx])
            own_logits = model.logits(c_own, gen, seed_in)
            rec = (-(torch.log_softmax(own_logits, 1) * x).sum(1) / x.sum(1).clamp(min=1)).mean()
            loss_g = loss_g + recon_weight * rec
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        last = {
            "critic_wasserstein": float((d_real - d_fake).detach()),
            "gradient_penalty": float(gp.detach()),
            "generator": float(loss_g.detach()),
            "reconstruction": float(rec.detach()),
        }
        if not all(np.isfinite(v) for v in last.values()):
            raise DataError(f"GAN training diverged at step {step} (non-finite loss): {last}")
        if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
            break
    model.eval()
    summary = {
        "train_seconds": time.perf_counter() - t0,
        "generator_steps": step + 1,
        "critic_steps": (step + 1) * cfg.critic_steps,
        "final": last,
        "training_users": int(len(users)),
    }
    return model, summary


def sample_profiles(
    model: ProfileGAN,
    cond: np.ndarray,
    lengths: np.ndarray,
    *,
    sampling: Literal["sample", "top"],
    gen: torch.Generator,
    seed_rows: torch.Tensor | None = None,
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw discrete profiles: ``lengths[r]`` distinct items for condition ``cond[r]``.

    Returns flat ``(row, item)`` arrays grouped by row.
    """
    rows_out, items_out = [], []
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), model.n_items)
    with torch.no_grad():
        for start in range(0, len(cond), chunk):
            stop = min(start + chunk, len(cond))
            c = torch.from_numpy(np.asarray(cond[start:stop], dtype=np.int64))
            seeds = None if seed_rows is None else seed_rows[start:stop]
            keys = model.logits(c, gen, seeds)
            if sampling == "sample":
                u = torch.rand(keys.shape, generator=gen).clamp_(1e-12, 1 - 1e-12)
                keys = keys - torch.log(-torch.log(u))  # Gumbel-top-k
            kmax = int(lengths[start:stop].max(initial=0))
            if kmax == 0:
                continue
            top = torch.topk(keys, kmax, dim=1).indices.numpy()
            take = np.arange(kmax)[None, :] < lengths[start:stop, None]
            rows_out.append(np.repeat(np.arange(start, stop), take.sum(1)))
            items_out.append(top[take])
    if not rows_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows_out).astype(np.int64), np.concatenate(items_out).astype(np.int64)


def _append(
    train: Dataset,
    table: pd.DataFrame,
    rows: np.ndarray,
    items: np.ndarray,
    name: str,
) -> Dataset:
    """``train`` with the generated users (``table``) and their interactions appended."""
    n = len(rows)
    ratings = None if train.ratings is None else np.full(n, np.nan, np.float32)
    stamp = int(train.timestamps.max()) if train.timestamps is not None and len(train) else 0
    stamps = None if train.timestamps is None else np.full(n, stamp, np.int64)
    return train.append_users(
        table, rows, items, ratings=ratings, timestamps=stamps, name=f"{train.name}+{name}"
    )


def _fidelity(
    train: Dataset,
    codes: np.ndarray,
    labels: list[str],
    gen_rows: np.ndarray,
    gen_items: np.ndarray,
    gen_codes: np.ndarray,
    cfg: GANConfig,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Fidelity of the generated profiles against the real users of the same groups."""
    csr = train.csr()
    gen_m = sp.csr_matrix(
        (np.ones(len(gen_rows)), (gen_rows, gen_items)), shape=(len(gen_codes), train.n_items)
    )
    gen_m.sum_duplicates()
    groups = np.unique(gen_codes)
    active = np.diff(csr.indptr) > 0
    real_users = np.flatnonzero(active & np.isin(codes, groups))
    real_m = csr[real_users]
    out: dict[str, Any] = {
        "two_sample": two_sample_auc(real_m, gen_m, rng=derive_seed(rng)),
        "popularity": popularity_distance(real_m, gen_m),
        "memorisation": memorisation_rate(
            gen_m, csr[np.flatnonzero(active)], threshold=cfg.memorisation_threshold
        ),
        "compared_with": "real training users of the generated users' groups",
    }
    if train.schema.item_categories:
        col = train.schema.item_categories[0]
        if col in train.item_table.columns:
            mat, _ = train.item_category_matrix(col)
            lab = np.array(labels, dtype=object)
            out["genre_js"] = genre_distance(
                real_m, lab[codes[real_users]], gen_m, lab[gen_codes], mat
            )
    return out


class GANBalanceConfig(GANConfig):
    """Settings of :class:`GANBalance`."""

    groups: list[str] | None = Field(
        None, description="groups to top up (default: every group below the target)"
    )
    ratio: float = Field(
        1.0, gt=0.0, le=10.0, description="target users per group, as a multiple of the largest"
    )
    prefix: str = Field("gen", min_length=1, description="prefix of the new user ids")


@register
class GANBalance(PreTransform[GANBalanceConfig]):
    """Synthesise users of under-represented groups with a conditional WGAN-GP (module doc)."""

    name = "gan_balance"
    Config = GANBalanceConfig

    def apply(self, train: Dataset, *, rng: np.random.Generator | int | None = None) -> Dataset:
        """Return ``train`` with generated users appended; ``report_`` has counts and fidelity."""
        cfg = self.config
        gen_np = np_rng(rng)
        codes, labels, sizes, add = top_up_plan(train, cfg.attr, cfg.groups, cfg.ratio)
        self.report_ = {
            "method": self.name,
            "attr": cfg.attr,
            "objective": "WGAN-GP",
            "users_before": {g: int(sizes[k]) for k, g in enumerate(labels)},
            "users_added": {g: int(add[k]) for k, g in enumerate(labels)},
            "interactions_added": 0,
        }
        if add.sum() == 0:
            return train
        model, summary = train_gan(train, codes, len(labels), cfg, seeded=False, rng=gen_np)
        self.report_["training"] = summary
        cond = np.repeat(np.arange(len(labels)), add)
        lens = train.user_counts()
        active = lens > 0
        sources = np.concatenate(
            [
                gen_np.choice(np.flatnonzero(active & (codes == g)), size=int(add[g]))
                for g in range(len(labels))
                if add[g] > 0
            ]
        )
        # Profile length from the group's real length distribution (an independent draw).
        length_src = np.concatenate(
            [
                gen_np.choice(np.flatnonzero(active & (codes == g)), size=int(add[g]))
                for g in range(len(labels))
                if add[g] > 0
            ]
        )
        lengths = np.diff(train.csr().indptr)[length_src]
        tgen = torch_generator(gen_np)
        rows, items = sample_profiles(model, cond, lengths, sampling=cfg.sampling, gen=tgen)
        ids = new_user_ids(train, cfg.prefix, len(cond))
        table = new_users_table(train, ids, sources, cfg.attr, [labels[g] for g in cond])
        self.report_["interactions_added"] = int(len(rows))
        if cfg.fidelity:
            self.report_["fidelity"] = _fidelity(
                train, codes, labels, rows, items, cond, cfg, gen_np
            )
        return _append(train, table, rows, items, self.name)


class GANTwinsConfig(GANConfig):
    """Settings of :class:`GANTwins`."""

    share: float = Field(1.0, gt=0.0, le=1.0, description="share of eligible users given a twin")
    source_groups: list[str] | None = Field(
        None, description="groups whose users get twins (default: all)"
    )
    target_groups: list[str] | None = Field(
        None, description="groups the twins may be placed in (default: all but the seed's)"
    )
    recon_weight: float = Field(1.0, ge=0.0, description="weight of the reconstruction term")
    prefix: str = Field("twin", min_length=1, description="prefix of the new user ids")


@register
class GANTwins(PreTransform[GANTwinsConfig]):
    """Counterfactual twins of real users in another group (FDA-style, WGAN-GP; module doc)."""

    name = "gan_twins"
    Config = GANTwinsConfig

    def apply(self, train: Dataset, *, rng: np.random.Generator | int | None = None) -> Dataset:
        """Return ``train`` with one twin per selected user appended; see ``report_``."""
        cfg = self.config
        gen_np = np_rng(rng)
        codes, labels = group_codes(train, cfg.attr)
        sources_ok = resolve_groups(cfg.source_groups, labels, "source_groups")
        targets_ok = resolve_groups(cfg.target_groups, labels, "target_groups")
        sizes = active_users_per_group(train, codes, len(labels))
        targets_ok = [g for g in targets_ok if sizes[g] > 0]
        if not targets_ok:
            raise ConfigError(f"target_groups: no group of {cfg.attr!r} with training users")
        lens = train.user_counts()
        cand = np.flatnonzero((lens > 0) & np.isin(codes, sources_ok))
        # a seed needs a target group other than its own
        if len(targets_ok) == 1:
            cand = cand[codes[cand] != targets_ok[0]]
        n = int(round(cfg.share * len(cand)))
        seeds = np.sort(gen_np.choice(cand, size=n, replace=False)) if n else cand[:0]
        self.report_ = {
            "method": self.name,
            "attr": cfg.attr,
            "objective": "WGAN-GP + reconstruction",
            "users_before": {g: int(sizes[k]) for k, g in enumerate(labels)},
            "twins": 0,
            "interactions_added": 0,
        }
        if n == 0:
            self.report_["users_added"] = {g: 0 for g in labels}
            return train
        model, summary = train_gan(
            train,
            codes,
            len(labels),
            cfg,
            seeded=True,
            recon_weight=cfg.recon_weight,
            rng=gen_np,
        )
        self.report_["training"] = summary
        choice = other_group(codes[seeds], np.array(sorted(targets_ok)), gen_np)
        csr = train.csr()
        lens_csr = np.diff(csr.indptr)
        seed_rows = _dense(
            sp.diags(1.0 / np.maximum(lens_csr, 1)).dot(csr).tocsr().astype(np.float32), seeds
        ) * float(model.scale)
        tgen = torch_generator(gen_np)
        rows, items = sample_profiles(
            model,
            choice,
            lens_csr[seeds],
            sampling=cfg.sampling,
            gen=tgen,
            seed_rows=seed_rows,
        )
        ids = new_user_ids(train, cfg.prefix, n)
        table = new_users_table(train, ids, seeds, cfg.attr, [labels[g] for g in choice])
        self.report_["twins"] = n
        self.report_["users_added"] = {g: int((choice == k).sum()) for k, g in enumerate(labels)}
        self.report_["interactions_added"] = int(len(rows))
        seed_m = csr[seeds]
        twin_m = sp.csr_matrix((np.ones(len(rows)), (rows, items)), shape=(n, train.n_items))
        inter = np.asarray(seed_m.multiply(twin_m).sum(axis=1)).ravel()
        union = lens_csr[seeds] + np.asarray(twin_m.sum(axis=1)).ravel() - inter
        self.report_["seed_twin_jaccard"] = float(np.mean(inter / np.maximum(union, 1)))
        if cfg.fidelity:
            self.report_["fidelity"] = _fidelity(
                train, codes, labels, rows, items, choice, cfg, gen_np
            )
        return _append(train, table, rows, items, self.name)


__all__ = [
    "GANBalance",
    "GANBalanceConfig",
    "GANConfig",
    "GANTwins",
    "GANTwinsConfig",
    "ProfileGAN",
    "sample_profiles",
    "train_gan",
]
