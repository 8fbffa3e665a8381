"""FastAPI app over a :class:`~debiasrec.serve.service.Service` (needs the ``serve`` extra).

Endpoints: ``GET /recommend``, ``POST /feedback``, ``GET /fairness``, ``GET /health``; OpenAPI
docs at ``/docs`` and ``/openapi.json``. Errors are JSON ``{"detail": "<message>"}`` with a 4xx
status: 400 malformed JSON, 401 missing or wrong API key (when ``api_key_env`` is set), 404
unknown user with ``cold_start=error``, 409 an ``event_id`` reused for another event, 413
oversized request, 422 invalid parameters, unknown items or post-processors, 429 over the
client's rate limit (with ``Retry-After``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from debiasrec import __version__
from debiasrec.errors import require
from debiasrec.serve.config import RateLimitConfig
from debiasrec.serve.service import RequestError, Service

_ID = Field(..., description="original id (as in the data files)")


class FeedbackEventIn(BaseModel):
    """One feedback event."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | int = _ID
    item_id: str | int = _ID
    type: Literal["impression", "click", "rating"]
    value: float | None = Field(None, description="the rating (required for type=rating)")
    position: int | None = Field(None, ge=1, le=10_000, description="1-based rank shown")
    request_id: str | None = Field(None, max_length=128)
    event_id: str | None = Field(
        None, min_length=1, max_length=128, description="idempotency key (stored once)"
    )


class FeedbackIn(BaseModel):
    """A batch of feedback events."""

    model_config = ConfigDict(extra="forbid")

    events: list[FeedbackEventIn] = Field(..., min_length=1)


class FeedbackOut(BaseModel):
    accepted: int = Field(description="events acknowledged (stored now or before)")
    duplicates: int = Field(description="of these, events whose event_id was already stored")
    seq: list[int] = Field(description="store sequence number of each event")
    adjusted: bool = Field(description="the online controller updated the strength")
    strength: float | None


class Because(BaseModel):
    item_id: str
    weight: float


class RecItem(BaseModel):
    item_id: str
    rank: int
    score: float | None
    because: list[Because] = Field(
        description="history items that contributed most (bounded per response by default)"
    )


class ColdStart(BaseModel):
    policy: str
    reason: str


class RecommendOut(BaseModel):
    user_id: str
    k: int
    model: str
    request_id: str
    post: str | None
    strength: float
    cold_start: ColdStart | None
    explanation_method: str | None = None
    items: list[RecItem]


def create_app(service: Service) -> Any:
    """The FastAPI application serving ``service``."""
    fastapi = require("fastapi", "serve")
    from fastapi import FastAPI, Query
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    cfg = service.config
    app = FastAPI(
        title="debiasrec",
        version=__version__,
        description=(
            f"Recommendations from model {service.pipeline.label!r} with online "
            "self-calibration and a live fairness monitor. Sensitive attributes are never "
            "needed in requests and never returned."
        ),
    )
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    # added last = runs first: refuse over-limit and unauthenticated requests before the body
    app.add_middleware(
        Guard,
        key_digests=service.api_key_digests,
        protect=set(cfg.protect),
        rate_limit=cfg.rate_limit,
    )

    @app.exception_handler(RequestError)
    async def _request_error(request: Any, exc: RequestError) -> Any:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Any, exc: RequestValidationError) -> Any:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            msg = "; ".join(str(e.get("ctx", {}).get("error", e.get("msg"))) for e in errors)
            return JSONResponse({"detail": f"malformed JSON body: {msg}"}, status_code=400)
        parts = []
        for e in errors:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {e.get('msg')}")
        return JSONResponse(
            {
                "detail": "invalid request: " + "; ".join(parts),
                "errors": [
                    {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                    for e in errors
                ],
            },
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Any, exc: HTTPException) -> Any:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/health", summary="Liveness and what is served")
    def health() -> dict[str, Any]:
        return service.health()

    @app.get("/recommend", response_model=RecommendOut, summary="Top-k for a user")
    def recommend(
        user_id: str = Query(..., min_length=1, max_length=cfg.max_id_length),
        k: int = Query(cfg.k_default, ge=1, le=cfg.k_max, description="list length"),
        post: str | None = Query(
            None, description=f"post-processor (default {cfg.default_post!r}; 'none' = raw)"
        ),
        user_text: str | None = Query(
            None, max_length=2000, description="cold start by text: not available yet"
        ),
        cold_start: Literal["popularity", "error"] = Query(
            "popularity", description="unknown users: popularity list, or 404"
        ),
    ) -> dict[str, Any]:
        return service.recommend(user_id, k, post=post, user_text=user_text, cold_start=cold_start)

    @app.post("/feedback", response_model=FeedbackOut, summary="Impressions, clicks, ratings")
    def feedback(body: FeedbackIn) -> dict[str, Any]:
        if len(body.events) > cfg.max_events:
            raise RequestError(
                f"too many events in one request ({len(body.events)} > {cfg.max_events})", 413
            )
        return service.feedback([e.model_dump() for e in body.events])

    @app.get("/fairness", summary="Live per-group exposure and utility, controller log")
    def fairness() -> dict[str, Any]:
        return service.fairness()

    del fastapi
    return app


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"detail": detail}, status, headers=headers)


class TokenBuckets:
    """Per-client token buckets: ``burst`` requests at once, refilled at ``per_second``.

    At most ``max_clients`` buckets are kept; the least recently used is dropped (that client
    starts again with a full bucket).
    """

    def __init__(self, config: RateLimitConfig, clock: Any = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Take one token; 0 if granted, else the seconds until one is available."""
        cfg, now = self.config, self.clock()
        with self._lock:
            b = self._buckets.pop(client, None)
            if b is None:
                b = [float(cfg.burst), now]
            tokens = min(float(cfg.burst), b[0] + (now - b[1]) * cfg.per_second)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / cfg.per_second
            self._buckets[client] = [tokens, now]
            while len(self._buckets) > cfg.max_clients:
                self._buckets.popitem(last=False)
        return wait


class Guard:
    """ASGI middleware: per-client rate limit (429) and API keys (401) on protected endpoints.

    A key is sent as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; it is compared by
    SHA-256 digest with :func:`hmac.compare_digest` against every configured key (constant
    time), and never logged or echoed. The rate-limit client is the API key when a valid one is
    presented, else the client address (the first ``X-Forwarded-For`` entry when
    ``trust_forwarded_for``). ``/health`` is exempt from both.
    """

    def __init__(
        self,
        app: Any,
        *,
        key_digests: tuple[bytes, ...],
        protect: set[str],
        rate_limit: RateLimitConfig,
    ) -> None:
        self.app = app
        self.key_digests = tuple(key_digests)
        self.protect = set(protect) if self.key_digests else set()
        self.rate = rate_limit
        self.buckets = TokenBuckets(rate_limit) if rate_limit.enabled else None

    def _key_id(self, headers: dict[bytes, bytes]) -> tuple[bool, str | None]:
        """(a key was presented, the id of the valid key or None)."""
        raw = headers.get(b"x-api-key")
        auth = headers.get(b"authorization")
        if raw is None and auth is not None:
            scheme, _, token = auth.partition(b" ")
            if scheme.lower() == b"bearer":
                raw = token.strip()
        if raw is None:
            return False, None
        digest = hashlib.sha256(raw).digest()
        ok = False
        for ref in self.key_digests:  # no early exit: the time does not depend on which key
            ok |= hmac.compare_digest(digest, ref)
        return True, ("key:" + digest.hex()[:16]) if ok else None

    def _address(self, scope: Any, headers: dict[bytes, bytes]) -> str:
        if self.rate.trust_forwarded_for:
            fwd = headers.get(b"x-forwarded-for")
            if fwd:
                return fwd.split(b",")[0].strip().decode("latin-1")
        client = scope.get("client")
        return str(client[0]) if client else "unknown"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope.get("path", "/").strip("/").split("/")[0]
        if endpoint == "health":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        presented, key_id = self._key_id(headers) if self.key_digests else (False, None)
        if self.buckets is not None:
            wait = self.buckets.take(key_id or "ip:" + self._address(scope, headers))
            if wait > 0:
                retry = max(1, math.ceil(wait))
                msg = (
                    f"rate limit exceeded ({self.rate.per_second:g} requests/s, burst "
                    f"{self.rate.burst}); retry after {retry} s"
                )
                await _json(429, msg, {"Retry-After": str(retry)})(scope, receive, send)
                return
        if endpoint in self.protect and key_id is None:
            msg = (
                "invalid API key"
                if presented
                else "missing API key: send it as 'Authorization: Bearer <key>' or "
                "'X-API-Key: <key>'"
            )
            await _json(401, msg, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse

        msg = f"request body too large (limit {self.max_bytes} bytes)"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await JSONResponse({"detail": "invalid Content-Length"}, 400)(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await JSONResponse({"detail": msg}, 413)(scope, receive, send)
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, msg)
            return message

        await self.app(scope, limited, send)


def run(service: Service, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"):
    """Serve with uvicorn (blocks until stopped)."""
    uvicorn = require("uvicorn", "serve")
    uvicorn.run(create_app(service), host=host, port=port, log_level=log_level)


__all__ = ["BodyLimit", "FeedbackIn", "Guard", "RecommendOut", "TokenBuckets", "create_app", "run"]
