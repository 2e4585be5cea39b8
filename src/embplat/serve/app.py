"""The FastAPI application: one warm :class:`~embplat.api.Platform`, JSON errors, metrics.

``create_app(platform, options)`` builds it; ``platform serve`` runs it under uvicorn. The
encoder is built and the index opened at start-up (``embplat_model_load_seconds``), so the
first request is as fast as the others. Every error is JSON ``{"error", "detail"}`` with a
4xx status for anything a client can cause; an unexpected fault is a 500 whose body holds
no traceback (the server log has it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from embplat import __version__
from embplat.api import Platform
from embplat.errors import (
    BusyError,
    ConfigError,
    DataError,
    EmbplatError,
    IndexDamagedError,
    IndexEmptyError,
    NotFoundError,
    ServiceUnavailableError,
)
from embplat.serve.batching import Batcher
from embplat.serve.metrics import MeasureRequests, Metrics
from embplat.serve.security import BodyTooLarge, Guard
from embplat.serve.uploads import Limits

log = logging.getLogger(__name__)
T = TypeVar("T")
STATIC = Path(__file__).parent / "static"

#: Status of each project error, most specific first.
STATUS: list[tuple[type[EmbplatError], int, str]] = [
    (IndexDamagedError, 503, "index_damaged"),
    (DataError, 422, "invalid"),
    (NotFoundError, 404, "not_found"),
    (IndexEmptyError, 409, "index_empty"),
    (ConfigError, 422, "invalid"),
    (ServiceUnavailableError, 503, "unavailable"),
    (BusyError, 503, "busy"),
]
HTTP_ERRORS = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
HTTP_ERRORS |= {413: "too_large", 415: "unsupported_media_type", 422: "invalid"}


@dataclass(frozen=True)
class ServeOptions:
    """What the service allows (``EMBPLAT_SERVE_*``, see ``config.ServeSettings``)."""

    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_upload_bytes: int = 10 * 2**20
    max_images: int = 32
    max_pixels: int = 40_000_000
    max_k: int = 1000
    warm: bool = True

    @property
    def limits(self) -> Limits:
        """The per-request upload limits."""
        return Limits(self.max_upload_bytes, self.max_images, self.max_pixels)

    @property
    def max_body(self) -> int:
        """Largest request body: every image at its limit, base64-inflated, plus the form."""
        return self.max_images * (self.max_upload_bytes * 4 // 3 + 4096) + 2**20


@dataclass
class Service:
    """What the routes share, kept in ``app.state.service``.

    ``model_thread`` runs every platform call: one thread keeps torch's per-thread state
    (oneDNN primitive caches, thread settings) warm between requests, and it makes the
    encoder and the index one-request-at-a-time besides the platform's own lock.
    """

    platform: Platform
    options: ServeOptions
    metrics: Metrics
    model_thread: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="embplat-model")
    )
    #: classify requests that arrive together share one forward pass
    batcher: Batcher = field(init=False)

    def __post_init__(self) -> None:
        self.batcher = Batcher(self._classify, max_items=max(self.options.max_images, 64))

    async def _classify(
        self, images: list[Any], names: list[str], options: dict[str, Any]
    ) -> list[Any]:
        return await self.run(self.platform.classify_many, images, names=names, **options)

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)`` on the model thread, awaited; its time there (waiting
        for the thread excluded) goes to ``embplat_model_seconds{call=<its name>}``."""
        loop = asyncio.get_running_loop()
        timed = partial(self._timed, call, args, kwargs)
        return await loop.run_in_executor(self.model_thread, timed)

    def _timed(self, call: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            name = getattr(call, "__name__", "call")
            self.metrics.model_calls.labels(name).observe(time.perf_counter() - started)


def create_app(platform: Platform, options: ServeOptions | None = None) -> FastAPI:
    """The service around ``platform`` (closed when the app shuts down)."""
    from embplat.serve import routes

    options = options or ServeOptions()
    service = Service(platform, options, Metrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if options.warm:
            seconds = await service.run(platform.warm)
            service.metrics.model_load.set(seconds)
            log.info("encoder and index ready in %.2f s", seconds)
        yield
        await service.batcher.close()
        await service.run(platform.close)
        service.model_thread.shutdown()

    app = FastAPI(
        title="embplat",
        version=__version__,
        description="Classify and search images by their embeddings (kNN vote, DeViSE text).",
        lifespan=lifespan,
    )
    app.state.service = service
    app.include_router(routes.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_error_handlers(app)
    _add_middleware(app, service)
    return app


def _add_middleware(app: FastAPI, service: Service) -> None:
    options = service.options
    if options.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
        )

    app.add_middleware(MeasureRequests, metrics=service.metrics)
    # outermost: refused requests never reach the app
    app.add_middleware(Guard, api_key=options.api_key, max_body=options.max_body)


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def _invalid(error: dict[str, Any]) -> str:
    """One validation error in words, naming the bad value of a query or path parameter
    (a body's value may be large and is left out)."""
    loc = error.get("loc", ())
    where = ".".join(str(p) for p in loc)
    shown = tuple(loc[:1]) in (("query",), ("path",)) and error.get("input") is not None
    got = f" (got {error['input']!r:.100})" if shown else ""
    return f"{where}: {error.get('msg')}{got}"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EmbplatError)
    async def project_error(request: Request, exc: EmbplatError) -> JSONResponse:
        for kind, status, error in STATUS:
            if isinstance(exc, kind):
                return _error(status, error, str(exc))
        log.error("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        return _error(500, "failed", str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, HTTP_ERRORS.get(exc.status_code, "error"), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid", "; ".join(_invalid(e) for e in exc.errors()))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return _error(413, "too_large", str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, "internal", "internal error; the server log has the details")
