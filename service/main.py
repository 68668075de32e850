"""The app factory: ``create_app(settings)`` builds one FastAPI app with its own state."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .api import api_router
from .api.openapi import install_problem_responses
from .disconnect import CancelOnDisconnectMiddleware
from .errors import install_error_handler
from .jobs import InteractiveTrafficMiddleware, JobService
from .metrics import Metrics, MetricsMiddleware
from .security import WebSecurityMiddleware
from .settings import Settings, get_settings
from .state import ServiceState

__all__ = ["create_app"]

_DESCRIPTION = """Upload a CIF, get formation energy per atom (eV/atom) and band gap (eV) from the CGCNN and
SR-CGCNN models of the model repository. Errors are RFC 9457 `application/problem+json` with a
stable `code`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app; its models load in the background once the server starts (see ``/readyz``).

    Args:
        settings: Defaults to :func:`~service.settings.get_settings` (the environment).
    """
    settings = settings or get_settings()
    logging.getLogger("service").setLevel(settings.log_level)
    metrics = Metrics()
    state = ServiceState(settings, metrics)
    jobs = JobService(settings, state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.check()
        jobs.start()  # first: a second owner of the data folder is refused before anything starts
        state.start()
        try:
            yield
        finally:
            await jobs.stop()
            await state.stop()

    # FastAPI's /docs and /redoc load their scripts from a CDN: /docs is served by service.api.routes.docs.
    app = FastAPI(
        title="Crystal property prediction",
        version="1",
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = state
    app.state.jobs = jobs
    install_error_handler(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(InteractiveTrafficMiddleware, traffic=jobs.traffic)
    app.add_middleware(
        WebSecurityMiddleware, allowed_hosts=settings.allowed_hosts, allowed_origins=settings.allowed_origins
    )
    app.add_middleware(CancelOnDisconnectMiddleware)  # outermost: cancels everything inside
    app.include_router(api_router)
    install_problem_responses(app)
    return app
