"""Prometheus metrics of one service process: requests, latency, model load time.

Each app has its own registry (several apps in one test process never collide); ``/metrics``
serves it in the text exposition format. Requests are labelled by route template
(``/images/{image_id}``), never by the raw path, so probing paths cannot grow the series.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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


def route_of(scope: Mapping[str, Any]) -> str:
    """The matched route's template, or ``unmatched``."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))
