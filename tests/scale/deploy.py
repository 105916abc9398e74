"""A production-like installation on loopback: Debian's PostgreSQL as the app database, the Temporal dev server,
two workers and two API processes, and HAProxy from Debian's packages in front of the APIs, health-checking
`GET /ready`. What a test needs from Debian (`postgresql`, `haproxy`) is installed with apt-get when missing (as
root); what cannot be had fails the test."""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.local import free_port
from tests.debian import NotInstallable, install
from tests.faults.cluster import Cluster, Process
from tests.postgres_support import PostgresUnavailable, create_database, drop_database

HAPROXY = "haproxy"
APIS = ("api-1", "api-2")
WORKERS = ("worker-1", "worker-2")


def haproxy() -> str:
    """Debian's HAProxy, installed when missing."""
    try:
        install(HAPROXY, lambda: shutil.which(HAPROXY) is not None)
    except NotInstallable as reason:
        pytest.fail(str(reason))
    return shutil.which(HAPROXY)


def balancer_config(port: int, backends: dict[str, int], check: str = "/ready") -> str:
    """Round robin over the APIs; a server whose `/ready` fails twice (every half second) is out until it answers
    twice; a connection refused is tried on the other server."""
    servers = "\n".join(f"    server {name} 127.0.0.1:{backend} check" for name, backend in backends.items())
    return f"""global
    maxconn 1024

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 2
    option redispatch
    retry-on conn-failure

frontend apis
    bind 127.0.0.1:{port}
    default_backend apis

backend apis
    balance roundrobin
    option httpchk GET {check}
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
{servers}
"""


class Installation:
    """The cluster of processes, the API ports behind the balancer, and the balancer's URL."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.check = "/ready"
        """What the balancer asks an API (releases before 0.6.0 answer only `/health`)."""
        self.api_ports = {name: free_port() for name in APIS}
        self.balancer_port = free_port()
        self.balancer: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.balancer_port}"

    def start_balancer(self) -> None:
        config = self.cluster.root / "haproxy.cfg"
        config.write_text(balancer_config(self.balancer_port, self.api_ports, self.check))
        process = self.cluster._spawn("haproxy", [haproxy(), "-f", str(config), "-db"])
        self.balancer = process

        def serving() -> bool:
            try:
                return httpx.get(f"{self.url}{self.check}", timeout=3).status_code == 200
            except httpx.HTTPError:
                return False

        self.cluster._ready(process, serving, "the balancer reaches a ready API")

    def start_api(self, name: str, root: Path | None = None) -> Process:
        kwargs = {"root": root} if root is not None else {}
        return self.cluster.start_api(name, self.api_ports[name], **kwargs)

    def start_worker(self, name: str, root: Path | None = None) -> Process:
        kwargs = {"root": root} if root is not None else {}
        return self.cluster.start_worker(name, **kwargs)

    def wait_until_balanced(self, timeout: float = 30.0) -> None:
        """Until every API is up again behind the balancer (its health check needs two answers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answers = set()
            for _ in range(6):
                try:
                    answers.add(httpx.get(f"{self.url}{self.check}", timeout=3).status_code)
                except httpx.HTTPError:
                    answers.add(0)
            if answers == {200}:
                time.sleep(1.2)
                return
            time.sleep(0.3)


@contextmanager
def installation(root: Path, **settings: str) -> Iterator[Installation]:
    """A cluster on a new PostgreSQL database; its processes are started by the test."""
    try:
        database = create_database("scale")
    except PostgresUnavailable as error:
        pytest.fail(f"PostgreSQL is needed and cannot be had: {error}")
    cluster = Cluster(root, DATABASE_URL=database, **settings)
    try:
        yield Installation(cluster)
    finally:
        cluster.close()
        drop_database(database)
