"""Prometheus metrics of one service process: requests, latency, time on the model thread,
model load time.

Each app has its own registry (several apps in one test process never collide); ``/metrics``
serves it in the text exposition format. Requests are labelled by route template
(``/images/{image_id}``), never by the raw path, so probing paths cannot grow the series.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from embplat.serve.security import ASGIApp, Message, Receive, Scope, Send

#: Latency buckets in seconds: a warm classify is tens of milliseconds on a CPU.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The service's collectors, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "embplat_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "embplat_request_seconds",
            "time to answer a request",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "embplat_images", "query images received", ["endpoint"], registry=self.registry
        )
        self.model_calls = Histogram(
            "embplat_model_seconds",
            "time of one call on the model thread (a batch of classify requests, a search)",
            ["call"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.model_load = Gauge(
            "embplat_model_load_seconds",
            "time to build the encoder and open its index at start-up",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, started: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(time.perf_counter() - started)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class MeasureRequests:
    """ASGI middleware: counts every HTTP request by method, route and status, with its
    latency (a plain ASGI wrapper: Starlette's ``BaseHTTPMiddleware`` costs a task and a
    stream per request)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(scope["method"], route_of(scope), status, started)


def route_of(scope: Mapping[str, Any]) -> str:
    """The matched route's template, or ``unmatched``."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))
