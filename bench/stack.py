"""Processes of a benchmark run: the Temporal dev server, stageflow's API and worker, the bare worker.

Each runs in its own process group with its output in a log file under the run's directory, and is stopped
(SIGTERM, then SIGKILL) when the run ends, whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.client import Client

ROOT = Path(__file__).resolve().parent.parent
from scripts import local  # noqa: E402
from scripts.local import LOOPBACK, free_port, parent_death_signal  # noqa: E402
from workflows.types import SEARCH_ATTRIBUTES  # noqa: E402


def binary(name: str, install: str = "make bench") -> str:
    try:
        return local.binary(name)
    except FileNotFoundError:
        raise SystemExit(f"{name} not found next to {sys.executable}; install it with `{install}`") from None


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: Path = ROOT
    popen: subprocess.Popen | None = None

    def start(self) -> "Proc":
        handle = open(self.log, "ab")
        self.popen = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=parent_death_signal(),
        )
        handle.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with code {self.popen.returncode if self.popen else None}; "
                               f"its log: {self.log}\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def status_kib(self, field_name: str) -> int:
        """A memory figure (VmRSS, VmHWM) of the process from /proc, in KiB; 0 when it is gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, grace: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait()


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Processes:
    """Everything a run started, stopped in reverse order."""

    procs: list[Proc] = field(default_factory=list)

    def start(self, proc: Proc) -> Proc:
        self.procs.append(proc.start())
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each running process, by this one (the load generator), and by the whole
        machine ("machine": busy time of all cores, from /proc/stat)."""
        mine = os.times()
        used = {proc.name: proc.cpu_seconds() for proc in self.procs if proc.alive()}
        used["driver"] = mine.user + mine.system
        used["machine"] = machine_busy_seconds()
        return used

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


async def connect(address: str, proc: Proc, timeout: float = 60.0) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        proc.check()
        try:
            return await Client.connect(address)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def dev_server(run_dir: Path) -> tuple[Proc, str]:
    """`temporal server start-dev` on a SQLite file with the WAL pragmas, the UI off, log level error."""
    port = free_port()
    argv = local.dev_server_argv(
        binary("temporal"), port=port, ui_port=None, namespace="default", database=run_dir / "temporal.db",
        search_attributes=SEARCH_ATTRIBUTES, http_port=free_port(), metrics_port=free_port(),
    )
    return Proc("temporal", argv, run_dir / "temporal.log"), f"{LOOPBACK}:{port}"


def app_env(run_dir: Path, name: str, address: str, api_key: str, port: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1",
        STAGEFLOW_API_KEY=api_key,
        STAGEFLOW_DATA_DIR=str(run_dir / name),
        DATABASE_URL=f"sqlite:///{run_dir / name / 'stageflow.db'}",
        TEMPORAL_ADDRESS=address,
        TEMPORAL_TASK_QUEUE=f"stageflow-{name}",
        STAGEFLOW_PORT=str(port),
        STAGEFLOW_ALLOW_PRIVATE_URLS="false",
    )
    env.update(extra)
    (run_dir / name).mkdir(parents=True, exist_ok=True)
    return env


def worker_proc(run_dir: Path, name: str, env: dict[str, str], app_root: Path, worker_argv: list[str] | None) -> Proc:
    argv = worker_argv or [sys.executable, str(app_root / "worker.py")]
    return Proc(f"worker-{name}", argv, run_dir / f"worker-{name}.log", env=env, cwd=app_root)


PRODUCTION_UVICORN = ("--loop", "uvloop", "--http", "httptools")
"""The event loop and HTTP parser the API runs on in production (the Dockerfile, docker-compose, `make run`)."""


def api_proc(run_dir: Path, name: str, env: dict[str, str], app_root: Path, extra: Sequence[str] = ()) -> Proc:
    """The API under uvicorn as production runs it; `extra` options come after, so one given twice wins."""
    argv = [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", "--host", LOOPBACK,
            "--port", env["STAGEFLOW_PORT"], "--log-level", "warning", "--no-access-log", *PRODUCTION_UVICORN, *extra]
    return Proc(f"api-{name}", argv, run_dir / f"api-{name}.log", env=env, cwd=app_root)


async def wait_for_log(proc: Proc, text: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log.read_text(errors="replace"):
        proc.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not log {text!r} within {timeout:.0f} s:\n{proc.tail()}")
        await asyncio.sleep(0.2)


async def wait_until_answers(proc: Proc, answers, what: str, timeout: float = 90.0) -> None:
    """Until `answers(http)` is true (an HTTP error counts as not yet), while `proc` runs; else an error saying
    `proc` `what` in time, with the end of its log."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            proc.check()
            try:
                if await answers(http):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} {what} within {timeout:.0f} s:\n{proc.tail()}")
            await asyncio.sleep(0.3)


async def wait_for_health(proc: Proc, url: str, timeout: float = 90.0) -> None:
    async def healthy(http: httpx.AsyncClient) -> bool:
        return (await http.get(url + "/health")).status_code == 200

    await wait_until_answers(proc, healthy, f"is not healthy at {url}", timeout)


def file_bytes(path: Path) -> int:
    """A SQLite database's size on disk: the file with its -wal and -shm files."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


class AppDb:
    """Read-only look into the app's SQLite database (WAL lets it read while the worker writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        return self.conn

    def rows(self, sql: str, *params) -> list[tuple]:
        return self._conn().execute(sql, params).fetchall()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
