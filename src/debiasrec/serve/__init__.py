"""debiasrec.serve: an HTTP service over a trained result folder (extra ``serve``).

Three lines of Python do what ``debiasrec serve DIR`` does::

    from debiasrec.serve import Service, ServeConfig, run
    service = Service("results/ml100k", ServeConfig(model="itemknn"))
    run(service, port=8000)                    # or create_app(service) for any ASGI server

:class:`Service` (no web framework needed) recommends with explanations and a cold-start
policy, stores feedback durably (:mod:`debiasrec.serve.store`), keeps the live fairness
monitor (differentially private releases, :class:`PrivacyConfig`) and runs the online
self-calibration loop (:mod:`debiasrec.serve.monitor`); the app adds optional API keys and a
per-client rate limit. See ``docs/serving.md``.
"""

from debiasrec.serve.config import (
    OnlineServeConfig,
    PrivacyConfig,
    RateLimitConfig,
    ServeConfig,
)
from debiasrec.serve.monitor import FairnessMonitor, OnlineLoop
from debiasrec.serve.pipeline import ServingPipeline, saved_models
from debiasrec.serve.service import RequestError, Service
from debiasrec.serve.store import (
    Event,
    FeedbackStore,
    SQLAlchemyStore,
    SQLiteStore,
    open_store,
)


def create_app(service: Service):  # noqa: ANN201 - FastAPI is an optional dependency
    """The FastAPI app for ``service`` (see :mod:`debiasrec.serve.app`)."""
    from debiasrec.serve.app import create_app as _create

    return _create(service)


def run(service: Service, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"):  # noqa: ANN201
    """Serve ``service`` with uvicorn (blocks)."""
    from debiasrec.serve.app import run as _run

    return _run(service, host=host, port=port, log_level=log_level)


__all__ = [
    "Event",
    "FairnessMonitor",
    "FeedbackStore",
    "OnlineLoop",
    "OnlineServeConfig",
    "PrivacyConfig",
    "RateLimitConfig",
    "RequestError",
    "SQLAlchemyStore",
    "SQLiteStore",
    "ServeConfig",
    "Service",
    "ServingPipeline",
    "create_app",
    "open_store",
    "run",
    "saved_models",
]
