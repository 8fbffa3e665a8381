"""Data stage: load and purify the configured source, split it (cached), check attribute names."""

from __future__ import annotations

from pathlib import Path

from debiasrec.data.dataset import Dataset
from debiasrec.data.purify import PurifyReport, load_dataset
from debiasrec.data.split import Split, make_split
from debiasrec.experiment.cache import StageCache, stage_key
from debiasrec.experiment.config import ExperimentConfig
from debiasrec.experiment.methods import TrainedVariant, referenced_attrs
from debiasrec.limits import check_list_length


def load_data(cfg: ExperimentConfig) -> tuple[Dataset, PurifyReport]:
    """Load and purify ``cfg.data``."""
    return load_dataset(
        cfg.data.source,
        purify_config=cfg.data.purify,
        sensitive=cfg.data.sensitive,
        **cfg.data.load_kwargs(),
    )


def split_data(ds: Dataset, cfg: ExperimentConfig) -> Split:
    """The configured split of ``ds``."""
    s = cfg.split
    return make_split(ds, s.method, s.ratios, rng=s.seed, normalise=s.normalise)


def prepare_data(cfg: ExperimentConfig) -> tuple[Dataset, PurifyReport, Split]:
    """Load, purify and split as configured."""
    ds, report = load_data(cfg)
    return ds, report, split_data(ds, cfg)


def split_key_of(ds: Dataset, split: Split) -> str:
    """Stage key of an already-made split (content-addressed by its parts)."""
    return stage_key("split", {"data": ds.fingerprint(), "parts": [p.fingerprint() for p in split]})


def cached_split(sc: StageCache, ds: Dataset, cfg: ExperimentConfig) -> tuple[Split, str]:
    """The configured split of ``ds``, from the cache when there; and its stage key."""
    key = stage_key("split", {"data": ds.fingerprint(), "split": cfg.split.model_dump(mode="json")})

    def save(split: Split, folder: Path) -> bool:
        split.save(folder)
        return True

    split = sc.get_or_compute("split", "split", key, lambda: split_data(ds, cfg), save, Split.load)
    return split, key


def check_attrs(cfg: ExperimentConfig, ds: Dataset, variants: list[TrainedVariant]) -> None:
    """Checks against the data before any training: attribute names (eval, strategies,
    re-rankers; DataError listing the declared ones) and list lengths (``eval.ks`` longer than
    the catalogue, or needing more memory than there is: ConfigError)."""
    check_list_length(
        cfg.eval.ks, ds.n_items, setting="eval.ks", catalogue=f"the catalogue of {ds.name}"
    )
    for name in [
        *(cfg.eval.attrs or []),
        *cfg.eval.intersections,
        *sorted(referenced_attrs(variants)),
    ]:
        ds.user_groups(name)


__all__ = ["cached_split", "check_attrs", "load_data", "prepare_data", "split_data", "split_key_of"]
