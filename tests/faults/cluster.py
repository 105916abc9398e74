"""stageflow as separate processes, for tests that kill parts of it: a Temporal dev server on a SQLite file,
the worker (`python worker.py`) and the API (`uvicorn api.main:create_app --factory`). The app's database is
the run's choice (tests/postgres_support.py): a SQLite file in the data dir, or a new PostgreSQL database.

Each process writes its output to its own log file under the test's directory, can be killed with SIGKILL
by its pid and started again on the same files and ports. Loopback servers standing in for the outside
world (an SMTP server, a webhook target) can be stopped and started again on the same port.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from sqlalchemy.engine import Engine

from models.db import make_engine
from scripts.local import binary, dev_server_argv, free_port
from scripts.run import temporal_healthy
from tests.postgres_support import test_database_url
from tests.results import record_results
from workflows.types import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
START_TIMEOUT = 90.0
WORKER_READY = "worker on task queue"
INHERITED_PREFIXES = ("STAGEFLOW_", "TEMPORAL_", "SMTP_", "SMS_")
INHERITED_NAMES = {"DATABASE_URL"}


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Polls `check` until it returns something truthy; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last value: {last!r})")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code of the process runs."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, grace: float = 15.0) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()


class Cluster:
    """One stageflow installation on loopback, in `root`: data files, logs, ports and settings."""

    def __init__(self, root: Path, **settings: str) -> None:
        self.root = root
        self.data = root / "data"
        self.logs = root / "logs"
        self.data.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.api_key = "sf-admin-" + secrets.token_urlsafe(24)
        self.temporal_port, self.ui_port, self.api_port = free_port(), free_port(), free_port()
        self.temporal_http_port, self.temporal_metrics_port = free_port(), free_port()
        self.task_queue = "faults-" + secrets.token_hex(4)
        self.env = {
            name: value for name, value in os.environ.items()
            if not name.startswith(INHERITED_PREFIXES) and name not in INHERITED_NAMES
        }
        self.env.update(
            PYTHONUNBUFFERED="1",
            STAGEFLOW_API_KEY=self.api_key,
            STAGEFLOW_DATA_DIR=str(self.data),
            DATABASE_URL=test_database_url(self.data),
            TEMPORAL_ADDRESS=f"127.0.0.1:{self.temporal_port}",
            TEMPORAL_NAMESPACE="default",
            TEMPORAL_TASK_QUEUE=self.task_queue,
            STAGEFLOW_PORT=str(self.api_port),
            STAGEFLOW_PUBLIC_URL=f"http://127.0.0.1:{self.api_port}",
            TEMPORAL_UI_URL=f"http://127.0.0.1:{self.ui_port}",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(free_port()),
            SMTP_FROM="Furniture Shop <shop@furniture.example>",
            STAGEFLOW_RULE_RETRY_INITIAL_SECONDS="0.5",
            STAGEFLOW_RULE_MAX_ATTEMPTS="10",
            STAGEFLOW_ALLOW_PRIVATE_URLS="true",
        )
        self.env.update(settings)
        self.processes: list[Process] = []
        self.running: dict[str, Process] = {}
        self._engine: Engine | None = None

    # -- settings ----------------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    @property
    def temporal_address(self) -> str:
        return self.env["TEMPORAL_ADDRESS"]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def engine(self) -> Engine:
        """An engine on the app's database, for counting what users would see."""
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    # -- processes ---------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], root: Path = ROOT, env: dict[str, str] | None = None) -> Process:
        number = sum(1 for process in self.processes if process.name == name) + 1
        log = self.logs / f"{name}-{number}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv, cwd=root, env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        self.running[name] = process
        return process

    def _ready(self, process: Process, check: Callable[[], bool], what: str) -> Process:
        def ready() -> bool:
            if not process.alive():
                raise AssertionError(
                    f"{process.name} exited with code {process.popen.returncode} before {what}:\n"
                    f"{process.output()[-4000:]}"
                )
            return check()

        try:
            wait_for(ready, START_TIMEOUT, f"{process.name}: {what}", interval=0.25)
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- {process.log} ---\n{process.output()[-4000:]}") from None
        return process

    def start_temporal(self) -> Process:
        """The dev server on `data/temporal.db` (the same file every time), as `make run` starts it."""
        cli = binary("temporal")
        process = self._spawn("temporal", dev_server_argv(
            cli, port=self.temporal_port, ui_port=self.ui_port, namespace="default", database=self.data / "temporal.db",
            search_attributes=SEARCH_ATTRIBUTES, http_port=self.temporal_http_port,
            metrics_port=self.temporal_metrics_port,
        ))
        return self._ready(
            process, lambda: temporal_healthy(cli, self.temporal_address, self.env), "the server answers health checks"
        )

    def start_worker(self, name: str = "worker", root: Path = ROOT, env: dict[str, str] | None = None) -> Process:
        """`python worker.py` of the code in `root` (another release's checkout, for an upgrade)."""
        process = self._spawn(name, [sys.executable, str(root / "worker.py")], root, env)
        return self._ready(process, lambda: WORKER_READY in process.output(), "the worker polls its task queue")

    def start_api(self, name: str = "api", port: int | None = None, root: Path = ROOT,
                  env: dict[str, str] | None = None) -> Process:
        """The API of the code in `root` on `port` (default: the cluster's API port)."""
        port = port or self.api_port
        process = self._spawn(name, [
            sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--timeout-graceful-shutdown", "20",
        ], root, env)

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=3).status_code == 200
            except httpx.HTTPError:
                return False

        return self._ready(process, healthy, "GET /health answers 200")

    def start(self) -> Cluster:
        self.start_temporal()
        self.start_worker()
        self.start_api()
        return self

    def kill(self, name: str) -> Process:
        """kill -9 of the running process called `name` (temporal, worker or api)."""
        process = self.running.pop(name)
        process.kill()
        return process

    def terminate(self, name: str, grace: float = 60.0) -> float:
        """SIGTERM to the running process called `name`, and the seconds it took to exit (a graceful stop)."""
        process = self.running.pop(name)
        began = time.monotonic()
        process.stop(grace=grace)
        return time.monotonic() - began

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop(grace=10.0)
        self.running.clear()
        if self._engine is not None:
            self._engine.dispose()

    def logs_text(self) -> str:
        return "\n".join(f"--- {process.log.name} ---\n{process.output()}" for process in self.processes)

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {process.log} ---\n" + "\n".join(process.output().splitlines()[-lines:])
            for process in self.processes
        )


@contextmanager
def cluster_of_test(request: Any, root: Path, **settings: str) -> Iterator[Cluster]:
    """A test's cluster, not started; closed at the end, the tail of every log printed when the test failed (the
    report is kept on the test by the hook in tests/conftest.py)."""
    installation = Cluster(root, **settings)
    try:
        yield installation
    finally:
        installation.close()
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(installation.log_tails())


# -- the outside world -----------------------------------------------------------------------------


class Mailbox:
    """A real SMTP server (aiosmtpd) on a fixed loopback port that can go down and come back.

    A message counts as delivered once the server has accepted its DATA. `users` makes the server ask
    for AUTH (LOGIN/PLAIN) with those credentials."""

    def __init__(self, port: int, users: dict[str, str] | None = None) -> None:
        self.port = port
        self.users = users or {}
        self.messages: list[Any] = []
        self.logins: list[str] = []
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope) -> str:
        message = message_from_bytes(envelope.original_content, policy=default_policy)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(login) == password:
                with self.lock:
                    self.logins.append(login)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def up(self) -> None:
        options: dict[str, Any] = {}
        if self.users:
            options = dict(authenticator=self._authenticate, auth_required=True, auth_require_tls=False)
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def message_ids(self) -> list[str]:
        with self.lock:
            return [str(message["Message-ID"]) for message in self.messages]


class WebhookTarget:
    """An HTTP endpoint on a fixed loopback port that records every request and can go down and come back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/orders"

    def up(self) -> None:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with target.lock:
                    target.requests.append({
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "json": json.loads(body or b"null"),
                    })
                    number = len(target.requests)
                answer = json.dumps({"order_no": f"ERP-{number}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return None

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def keys(self) -> list[str]:
        with self.lock:
            return [request["headers"].get("Idempotency-Key", "") for request in self.requests]


@contextmanager
def outside_world(
    cluster: Cluster, smtp_users: dict[str, str] | None = None
) -> Iterator[tuple[Mailbox, WebhookTarget]]:
    """The SMTP server the cluster's SMTP_PORT names and a webhook target, both up."""
    mailbox = Mailbox(int(cluster.env["SMTP_PORT"]), smtp_users)
    target = WebhookTarget(free_port())
    mailbox.up()
    target.up()
    try:
        yield mailbox, target
    finally:
        mailbox.down()
        target.down()


# -- figures ---------------------------------------------------------------------------------------


def record_figures(name: str, figures: dict[str, Any]) -> Path:
    """Prints the figures of one fault scenario and keeps them in tests/faults/results/<name>.json."""
    return record_results(RESULTS, name, "scenario", figures)
