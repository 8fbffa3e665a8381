"""FastAPI app over a :class:`~debiasrec.serve.service.Service` (needs the ``serve`` extra).

Endpoints: ``GET /recommend``, ``POST /feedback``, ``GET /fairness``, ``GET /health``; OpenAPI
docs at ``/docs`` and ``/openapi.json``. Errors are JSON ``{"detail": "<message>"}`` with a 4xx
status: 400 malformed JSON, 404 unknown user with ``cold_start=error``, 413 oversized request,
422 invalid parameters, unknown items or post-processors.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from debiasrec import __version__
from debiasrec.errors import require
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
    accepted: int
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
    because: list[Because] = Field(description="history items that contributed most")


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


__all__ = ["BodyLimit", "FeedbackIn", "RecommendOut", "create_app", "run"]
