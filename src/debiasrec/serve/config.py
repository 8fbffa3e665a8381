"""Typed options of the HTTP service (``debiasrec serve DIR [--config serve.toml]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

POST_NAMES = ("calibrated", "popularity", "group_fair", "exposure", "diversity")


class OnlineServeConfig(BaseModel):
    """The online self-calibration loop (see :mod:`debiasrec.debias.post.online`).

    ``kind="exposure_share"`` controls the position-weighted share of impressions that go to
    long-tail items (the under-served item group), re-ranking with ``post="exposure"``;
    ``kind="utility_gap"`` controls the gap in click-through rate between the user groups of
    ``attr`` (labels read server-side), re-ranking with ``post="group_fair"``.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    post: Literal["calibrated", "popularity", "group_fair", "exposure", "diversity"] = "exposure"
    kind: Literal["utility_gap", "exposure_share"] = "exposure_share"
    target: float = Field(0.25, description="long-tail exposure share (>=) or CTR gap (<=)")
    attr: str | None = Field(None, description="user attribute for utility_gap (default: first)")
    init: float = 0.0
    lo: float = Field(0.0, ge=0.0, le=1.0)
    hi: float = Field(1.0, ge=0.0, le=1.0)
    gain: float = Field(0.5, gt=0.0)
    max_delta: float = Field(0.05, gt=0.0)
    decay: float = Field(0.9, gt=0.0, le=1.0)
    min_events: float = Field(50.0, ge=0.0)
    update_every: int = Field(200, ge=1, description="events folded in per controller update")

    @model_validator(mode="after")
    def _check(self) -> OnlineServeConfig:
        if not self.lo <= self.init <= self.hi:
            raise ValueError(f"init={self.init} must lie in [lo, hi] = [{self.lo}, {self.hi}]")
        return self


class ServeConfig(BaseModel):
    """Options of the service; unknown keys fail at construction.

    Attributes:
        model: result label of the model to serve (default: the first one saved in the folder).
        default_post: re-ranker applied when a request names none (``"none"`` = raw model).
        strengths: fixed strength per re-ranker that the online loop does not control.
        post_params: extra options per re-ranker (e.g. ``{"group_fair": {"attr": "age"}}``).
        mask_valid: also mask the user's validation items (all known history), not only training.
        store: feedback store: None (SQLite file ``DIR/feedback.sqlite``), a file path, or an
            SQLAlchemy URL.
        synchronous: SQLite ``synchronous`` pragma (``FULL`` or ``NORMAL``, see the store docs).
    """

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    k_default: int = Field(10, ge=1)
    k_max: int = Field(100, ge=1)
    n_candidates: int = Field(100, ge=1)
    n_explain: int = Field(3, ge=0, le=20, description="history items per explanation")
    default_post: str = "exposure"
    strengths: dict[str, float] = Field(default_factory=dict)
    post_params: dict[str, dict] = Field(default_factory=dict)
    monitor_attrs: list[str] | None = Field(None, description="default: every sensitive attr")
    min_group_users: int = Field(
        5, ge=1, description="groups with fewer users report counts but no estimates"
    )
    head_share: float = Field(0.2, gt=0.0, lt=1.0, description="short head share of items")
    mask_valid: bool = True
    mask_feedback: bool = True
    online: OnlineServeConfig = Field(default_factory=OnlineServeConfig)
    store: str | None = None
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_events: int = Field(1000, ge=1)
    max_id_length: int = Field(128, ge=8)

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if self.k_default > self.k_max:
            raise ValueError(f"k_default={self.k_default} exceeds k_max={self.k_max}")
        if self.k_max > self.n_candidates:
            raise ValueError(
                f"k_max={self.k_max} exceeds n_candidates={self.n_candidates}; raise n_candidates"
            )
        names = {*POST_NAMES, "none"}
        if self.default_post not in names:
            raise ValueError(f"default_post {self.default_post!r} is not one of {sorted(names)}")
        for key in (*self.strengths, *self.post_params):
            if key not in POST_NAMES:
                raise ValueError(f"unknown re-ranker {key!r}; available: {list(POST_NAMES)}")
        bad = {k: v for k, v in self.strengths.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"strengths must lie in [0, 1], got {bad}")
        return self


__all__ = ["POST_NAMES", "OnlineServeConfig", "ServeConfig"]
