"""The API's Prometheus metrics, in a registry of the app's own (`app.state.metrics`), served at GET /metrics.

  stageflow_http_requests_total{route, method, status}        requests answered
  stageflow_http_request_duration_seconds{route, method}      how long answering took
  stageflow_simulations_total{outcome}                        simulations run (done or failed)

`route` is the path pattern of the route that answered (`/deals/{deal_id}/move`), never the path asked for, so ids
do not make new series; a request no route matches is `unmatched`.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("stageflow.metrics")

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name; any other is `other`, so made-up methods cannot make new series."""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ApiMetrics:
    """The metrics of one API app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "stageflow_http_requests", "HTTP requests answered, by route pattern, method and status",
            ("route", "method", "status"), registry=self.registry,
        )
        self.latency = Histogram(
            "stageflow_http_request_duration_seconds", "Seconds from a request's arrival to the end of its answer",
            ("route", "method"), buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.simulations = Counter(
            "stageflow_simulations", "What-if simulations run, by outcome (done, failed)", ("outcome",),
            registry=self.registry,
        )

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        try:
            self.requests.labels(route, method, str(status)).inc()
            self.latency.labels(route, method).observe(seconds)
        except Exception:  # noqa: BLE001 - metrics never break an answer
            log.warning("recording a request metric failed", exc_info=True)

    def simulation(self, outcome: str) -> None:
        try:
            self.simulations.labels(outcome).inc()
        except Exception:  # noqa: BLE001 - metrics never break a simulation
            log.warning("recording a simulation metric failed", exc_info=True)


def route_of(scope: Scope) -> str:
    """The path pattern of the route that took the request (a mount's pattern with `/{path}`), or `unmatched`."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", None) or UNMATCHED
    endpoint = scope.get("endpoint")
    if endpoint is not None:
        for candidate in getattr(scope.get("app"), "routes", ()):
            if isinstance(candidate, Mount) and candidate.app is endpoint:
                return f"{candidate.path}/{{path}}"
    return UNMATCHED


class MetricsMiddleware:
    """Counts and times every HTTP request by the route that answered it."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.request(route_of(scope), method, status, time.perf_counter() - began)
