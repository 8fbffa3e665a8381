"""Typed options of the HTTP service (``debiasrec serve DIR [--config serve.toml]``)."""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

POST_NAMES = ("calibrated", "popularity", "group_fair", "exposure", "diversity")
PROTECTABLE = ("feedback", "fairness", "recommend")


class OnlineServeConfig(BaseModel):
    """The online self-calibration loop (see :mod:`debiasrec.debias.post.online`).

    ``kind="exposure_share"`` controls the position-weighted share of impressions that go to
    long-tail items (the under-served item group), re-ranking with ``post="exposure"``;
    ``kind="utility_gap"`` controls the gap in click-through rate between the user groups of
    ``attr`` (labels read server-side), re-ranking with ``post="group_fair"``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = True
    post: Literal["calibrated", "popularity", "group_fair", "exposure", "diversity"] = "exposure"
    kind: Literal["utility_gap", "exposure_share"] = "exposure_share"
    target: float = Field(
        0.25, description="long-tail exposure share (>=) or CTR gap (<=); both lie in [0, 1]"
    )
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
        if not 0.0 <= self.target <= 1.0:
            what = "a long-tail exposure share" if self.kind == "exposure_share" else "a CTR gap"
            raise ValueError(f"online.target={self.target} is {what} and must lie in [0, 1]")
        return self


class PrivacyConfig(BaseModel):
    """How ``GET /fairness`` protects the sensitive attributes of individual users.

    ``mechanism="laplace"`` (default) publishes the per-group user statistics only as noisy
    releases: the accepted events are cut into windows of ``release_every`` events (and, if
    set, at most ``release_seconds`` long); when a window closes, its per-group sums get
    discrete Laplace noise and are added to the published totals. Each user's events count
    for at most ``max_events_per_user`` per budget period, which bounds what one user can
    change, and the noise is calibrated to that bound so that everything ``/fairness``
    publishes about user groups in one budget period is ``epsilon``-differentially private with
    respect to the sensitive attributes of any one user (all monitored attributes together).
    See ``docs/serving.md`` for the exact statement and its limits. ``mechanism="off"`` shows
    exact, live counts: an explicit opt-out for local debugging, which lets any caller learn
    a user's attributes by differencing.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mechanism: Literal["laplace", "off"] = "laplace"
    epsilon: float = Field(1.0, gt=0.0, le=100.0, description="budget per period, per user")
    max_events_per_user: int = Field(
        20, ge=1, le=1_000_000, description="a user's events counted per budget period"
    )
    release_every: int = Field(10_000, ge=1, description="accepted events per release")
    release_seconds: float | None = Field(
        None, gt=0.0, description="also release a non-empty window once it is this old"
    )
    period_releases: int | None = Field(
        None, ge=1, description="releases per budget period (None: one period, forever)"
    )
    seed: int | None = Field(
        None, description="noise seed for tests only (None: the OS's secure random source)"
    )


class RateLimitConfig(BaseModel):
    """Token bucket per client (API key if one is presented, else the client's IP address)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = True
    per_second: float = Field(100.0, gt=0.0, description="sustained requests per second")
    burst: int = Field(200, ge=1, description="bucket size: requests allowed at once")
    max_clients: int = Field(100_000, ge=1, description="buckets kept (least recent dropped)")
    trust_forwarded_for: bool = Field(
        False, description="key on the first X-Forwarded-For address (behind a trusted proxy)"
    )


_PROTECTED_BY_DEFAULT: tuple[Literal["feedback", "fairness", "recommend"], ...] = (
    "feedback",
    "fairness",
)


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

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str | None = None
    k_default: int = Field(10, ge=1)
    k_max: int = Field(100, ge=1)
    n_candidates: int = Field(100, ge=1)
    n_explain: int = Field(3, ge=0, le=20, description="history items per explanation")
    explain: Literal["off", "bounded", "full"] = Field(
        "bounded",
        description=(
            "'bounded': the 'because' lists of one response name at most explain_max_items "
            "distinct history items; 'full': up to n_explain per item; 'off': none"
        ),
    )
    explain_max_items: int = Field(3, ge=1, le=100)
    default_post: str = "exposure"
    strengths: dict[str, float] = Field(default_factory=dict)
    post_params: dict[str, dict] = Field(default_factory=dict)
    monitor_attrs: list[str] | None = Field(None, description="default: every sensitive attr")
    min_group_users: int = Field(
        5, ge=1, description="groups with fewer (noisy) users report counts but no estimates"
    )
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key(s), comma-separated"
    )
    protect: list[Literal["feedback", "fairness", "recommend"]] = Field(
        default_factory=lambda: list(_PROTECTED_BY_DEFAULT),
        description="endpoints that need the API key when api_key_env is set",
    )
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    head_share: float = Field(0.2, gt=0.0, lt=1.0, description="short head share of items")
    rating_range: tuple[float, float] | None = Field(
        None,
        description="valid rating values (default: the training data's range; 0 to 5 without)",
    )
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
        if self.rating_range is not None and not self.rating_range[0] < self.rating_range[1]:
            raise ValueError(
                f"rating_range {list(self.rating_range)} must be [low, high], low < high"
            )
        bad = {k: v for k, v in self.strengths.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"strengths must lie in [0, 1], got {bad}")
        if self.api_key_env is not None and not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env
        ):
            raise ValueError(
                f"api_key_env must name an environment variable (letters, digits, _), "
                f"got {self.api_key_env!r}"
            )
        return self


def load_api_keys(env_name: str | None) -> tuple[str, ...]:
    """The API keys in environment variable ``env_name`` (comma-separated; none if unset name).

    Raises:
        ConfigError: the variable is not set or holds no key (the value is never shown).
    """
    from debiasrec.errors import ConfigError

    if env_name is None:
        return ()
    raw = os.environ.get(env_name)
    if raw is None:
        raise ConfigError(
            f"api_key_env: environment variable {env_name} is not set; export it with the API "
            "key (several keys: comma-separated), or leave --api-key-env out to serve without keys"
        )
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    if not keys:
        raise ConfigError(f"api_key_env: environment variable {env_name} holds no API key")
    short = [n for n, k in enumerate(keys) if len(k) < 16]
    if short:
        raise ConfigError(
            f"api_key_env: key number(s) {[n + 1 for n in short]} in {env_name} are shorter than "
            "16 characters; use long random keys (e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )
    return keys


__all__ = [
    "POST_NAMES",
    "PROTECTABLE",
    "OnlineServeConfig",
    "PrivacyConfig",
    "RateLimitConfig",
    "ServeConfig",
    "load_api_keys",
]
