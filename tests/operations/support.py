"""What the operations tests read and stand up: Prometheus text scraped and summed by label, the route pattern the
API's route table gives a path, the requests a test's HTTP client made, and a slow outside endpoint."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from fastapi.routing import iter_route_contexts
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from models.settings import Settings
from scripts.local import free_port
from tests.results import record_results


def scrape(url: str, headers: dict[str, str] | None = None) -> list[tuple[str, dict[str, str], float]]:
    """Every sample at `url` (Prometheus text format): (sample name, labels, value)."""
    response = httpx.get(url, headers=headers, timeout=10)
    response.raise_for_status()
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def summed(samples: list[tuple[str, dict[str, str], float]], name: str, *labels: str) -> Counter:
    """The values of the samples called `name`, added up by the values of `labels` (other labels summed over)."""
    totals: Counter = Counter()
    for sample, values, value in samples:
        if sample == name:
            key = tuple(values.get(label, "") for label in labels)
            totals[key if len(labels) != 1 else key[0]] += value
    return Counter({key: int(value) if float(value).is_integer() else value for key, value in totals.items()})


class RouteTable:
    """The API's routes, to tell which path pattern answers a concrete path."""

    def __init__(self) -> None:
        app = create_app(Settings(STAGEFLOW_DATA_DIR="/nonexistent"))
        self.routes = [route for route in iter_route_contexts(app.routes) if getattr(route, "path_regex", None)]

    def pattern(self, method: str, path: str) -> str:
        for route in self.routes:
            if method in (getattr(route, "methods", None) or ()) and route.path_regex.match(path):
                return route.path
        return "unmatched"


@dataclass
class Requests:
    """The requests one HTTP client made: (method, path, status) of each answer."""

    made: list[tuple[str, str, int]] = field(default_factory=list)

    async def hook(self, response: httpx.Response) -> None:
        self.made.append((response.request.method, response.request.url.path, response.status_code))

    def by_route(self, table: RouteTable) -> Counter:
        """(route pattern, method, status as text) → how many."""
        return Counter((table.pattern(method, path), method, str(status)) for method, path, status in self.made)


class SlowEndpoint:
    """An HTTP endpoint on loopback that answers each request `seconds` after it arrived, with `{"ok": true}`; it
    records when each request arrived and when it was answered."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.port = free_port()
        self.arrived: list[float] = []
        self.answered: list[float] = []
        self.bodies: list[Any] = []
        self.first = threading.Event()
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slow"

    def up(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with endpoint.lock:
                    endpoint.arrived.append(time.monotonic())
                    endpoint.bodies.append(json.loads(body or b"null"))
                endpoint.first.set()
                time.sleep(endpoint.seconds)
                answer = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                with endpoint.lock:
                    endpoint.answered.append(time.monotonic())

            def log_message(self, *args: Any) -> None:
                return None

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@contextmanager
def slow_endpoint(seconds: float) -> Iterator[SlowEndpoint]:
    endpoint = SlowEndpoint(seconds)
    endpoint.up()
    try:
        yield endpoint
    finally:
        endpoint.down()


RESULTS = Path(__file__).resolve().parent / "results"


def record_figures(name: str, figures: dict[str, Any]) -> Path:
    """Prints the figures of one operations scenario and keeps them in tests/operations/results/<name>.json."""
    return record_results(RESULTS, name, "scenario", figures)
