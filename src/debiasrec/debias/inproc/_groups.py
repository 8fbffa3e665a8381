"""User groups for the group-robust strategies: a sensitive attribute, or activity levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from debiasrec.data.dataset import Dataset
from debiasrec.data.groups import activity_groups
from debiasrec.debias.inproc.base import StrategyConfig
from debiasrec.errors import ConfigError


class UserGroupsConfig(StrategyConfig):
    """Which user groups a strategy works on: ``attr`` (a sensitive attribute, used in training
    only) or ``activity = true`` (cold / mid / active users by training interactions, from
    :func:`debiasrec.data.groups.activity_groups`: no sensitive attribute at all)."""

    attr: str | None = Field(None, description="sensitive attribute whose groups are used")
    activity: bool = Field(False, description="use activity groups (cold/mid/active) instead")

    @model_validator(mode="after")
    def _one_grouping(self) -> UserGroupsConfig:
        if (self.attr is None) == (not self.activity):
            raise ValueError("give exactly one of attr = NAME or activity = true")
        return self

    @property
    def grouping(self) -> str:
        """Name of the grouping (the attribute, or ``"activity"``)."""
        return self.attr if self.attr is not None else "activity"


def user_groups(train: Dataset, cfg: UserGroupsConfig) -> pd.Categorical:
    """Group label of every user code of ``train`` (codes ``-1``: missing).

    Raises:
        DataError: an unknown attribute (listing the declared ones).
        ConfigError: fewer than two groups with users.
    """
    cat = activity_groups(train) if cfg.activity else train.user_groups(str(cfg.attr))
    codes = np.asarray(cat.codes)
    if len(np.unique(codes[codes >= 0])) < 2:
        raise ConfigError(
            f"{cfg.grouping!r} has fewer than two groups with labelled users; nothing to balance"
        )
    return cat


__all__ = ["UserGroupsConfig", "user_groups"]
