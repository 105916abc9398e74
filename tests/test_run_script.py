"""`make run`'s supervisor, end to end: real Temporal dev server, SMTP sink, worker and API as child processes.

Starts scripts/run.py on a temporary data dir and free ports, waits for GET /health, stops it with SIGTERM and checks
that every child is gone; starts it again on the same data dir (same API key, same data), kills it hard with SIGKILL
and checks that a third start comes back on the same data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from scripts.local import free_ports, port_open

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "scripts" / "run.py"
TEMPORAL = Path(sys.executable).parent / "temporal"
HEALTH_TIMEOUT = 90.0
EXPECTED_CHILDREN = {"temporal", "smtp", "worker", "api"}


def pid_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class RunScript:
    """One run of scripts/run.py with its output in a log file."""

    def __init__(self, data_dir: Path, ports: dict[str, int], log: Path) -> None:
        self.data_dir = data_dir
        self.ports = ports
        self.log_path = log
        env = {k: v for k, v in os.environ.items()
               if k not in {"STAGEFLOW_API_KEY", "TEMPORAL_ADDRESS", "DATABASE_URL", "SMTP_HOST",
                            "STAGEFLOW_PUBLIC_URL", "TEMPORAL_UI_URL", "STAGEFLOW_SMTP_SINK"}}
        env.update(
            STAGEFLOW_DATA_DIR=str(data_dir),
            STAGEFLOW_PORT=str(ports["api"]),
            TEMPORAL_PORT=str(ports["temporal"]),
            TEMPORAL_UI_PORT=str(ports["ui"]),
            SMTP_PORT=str(ports["smtp"]),
        )
        if "http" in ports:
            env.update(TEMPORAL_HTTP_PORT=str(ports["http"]), TEMPORAL_METRICS_PORT=str(ports["metrics"]))
        self.env = env
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(RUN)], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.child_pids: dict[str, int] = {}

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n--- scripts/run.py output ({self.log_path}) ---\n{self.output()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports['api']}{path}"

    def wait_healthy(self) -> dict:
        deadline = time.monotonic() + HEALTH_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"scripts/run.py exited with code {self.proc.returncode} before GET /health answered "
                          f"(last answer: {last})")
            try:
                response = httpx.get(self.url("/health"), timeout=3)
                last = f"{response.status_code} {response.text[:300]}"
                if response.status_code == 200:
                    body = response.json()
                    if {k: body.get(k) for k in ("status", "database", "temporal")} == {
                        "status": "ok", "database": "ok", "temporal": "ok"}:
                        return body
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        self.fail(f"GET /health did not answer 200 with status/database/temporal all 'ok' within "
                  f"{HEALTH_TIMEOUT:.0f} s; last answer: {last}")
        raise AssertionError("unreachable")

    def read_children(self) -> dict[str, int]:
        record = json.loads((self.data_dir / "run.pids").read_text())
        self.child_pids = {name: int(info["pid"]) for name, info in record["children"].items()}
        assert set(self.child_pids) == EXPECTED_CHILDREN, record
        assert record["supervisor"] == self.proc.pid
        return self.child_pids

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"scripts/run.py did not exit within {timeout:.0f} s after {signal.Signals(sig).name}")
        raise AssertionError("unreachable")

    def wait_children_gone(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = {n: p for n, p in self.child_pids.items() if pid_running(p)}
            listening = {n: p for n, p in self.ports.items() if port_open(p)}
            if not running and not listening:
                return
            time.sleep(0.2)
        self.fail(f"after the supervisor exited, children still run: {running}; ports still open: {listening}")

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.child_pids.values():
            if pid_running(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.log.close()


def temporal_cli(args: list[str], port: int) -> subprocess.CompletedProcess:
    return subprocess.run([str(TEMPORAL), *args, "--address", f"127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.timeout(240)
def test_run_starts_stops_and_comes_back_on_the_same_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    api, temporal, ui, smtp, http, metrics = free_ports(6)
    ports = {"api": api, "temporal": temporal, "ui": ui, "smtp": smtp, "http": http, "metrics": metrics}
    runs: list[RunScript] = []
    try:
        # First start: a fresh data dir.
        first = RunScript(data_dir, ports, tmp_path / "run1.log")
        runs.append(first)
        first.wait_healthy()
        first.read_children()
        key_file = data_dir / "api_key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert f'"Authorization: Bearer $(cat {key_file})"' in first.output()
        assert f"messages in {data_dir / 'mail'}/*.eml" in first.output()
        key = key_file.read_text().strip()
        assert len(key) >= 32
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(first.url("/pipelines"), timeout=10).status_code == 401
        created = httpx.post(first.url("/pipelines"), headers=headers, timeout=30, json={
            "entity_type": "deal", "name": "Survives restarts",
            "stages": [{"code": "NEW", "name": "New"}, {"code": "WON", "name": "Won", "semantic": "success"}]})
        assert created.status_code == 201, created.text
        pipeline_id = created.json()["id"]
        started = temporal_cli(["workflow", "start", "--type", "PersistenceProbe", "--task-queue", "probe-queue",
                                "--workflow-id", "persistence-probe"], temporal)
        assert started.returncode == 0, started.stderr
        assert port_open(ui), "the Temporal UI does not listen on TEMPORAL_UI_PORT"
        assert "temporal_" in httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
        assert port_open(http), "the Temporal HTTP API does not listen on TEMPORAL_HTTP_PORT"

        assert first.stop(signal.SIGTERM) == 0, first.output()
        first.wait_children_gone()
        assert not (data_dir / "run.pids").exists()
        assert "SIGTERM received, stopping" in first.output()

        # Second start on the same data dir: same key, same app data, same Temporal state.
        second = RunScript(data_dir, ports, tmp_path / "run2.log")
        runs.append(second)
        second.wait_healthy()
        second.read_children()
        assert key_file.read_text().strip() == key
        again = httpx.get(second.url(f"/pipelines/{pipeline_id}"), headers=headers, timeout=10)
        assert again.status_code == 200, again.text
        assert again.json()["name"] == "Survives restarts"
        described = temporal_cli(["workflow", "describe", "--workflow-id", "persistence-probe"], temporal)
        assert described.returncode == 0 and "PersistenceProbe" in described.stdout, described.stderr

        # Killed hard: the children follow, and the next start comes back on the same data.
        assert second.stop(signal.SIGKILL) == -signal.SIGKILL
        second.wait_children_gone()

        third = RunScript(data_dir, ports, tmp_path / "run3.log")
        runs.append(third)
        third.wait_healthy()
        third.read_children()
        assert key_file.read_text().strip() == key
        assert httpx.get(third.url(f"/pipelines/{pipeline_id}"), headers=headers, timeout=10).status_code == 200
        assert third.stop(signal.SIGTERM) == 0, third.output()
        third.wait_children_gone()
    finally:
        for run in runs:
            run.cleanup()


@pytest.mark.timeout(60)
def test_run_refuses_a_port_in_use_and_names_it(tmp_path: Path) -> None:
    api, temporal, ui, smtp = free_ports(4)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", temporal))
        squatter.listen()
        run = RunScript(tmp_path / "data", {"api": api, "temporal": temporal, "ui": ui, "smtp": smtp},
                        tmp_path / "run.log")
        try:
            code = run.proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            run.cleanup()
            run.fail("scripts/run.py kept running although TEMPORAL_PORT was taken")
        finally:
            run.cleanup()
    output = run.output()
    assert code != 0
    assert f"port {temporal} for the Temporal dev server is already in use" in output
    assert "TEMPORAL_PORT" in output
    assert not port_open(api) and not port_open(smtp)


def test_help_says_what_runs_and_starts_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "STAGEFLOW_DATA_DIR": str(tmp_path / "data")}
    shown = subprocess.run([sys.executable, str(RUN), "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "Run the whole stageflow stack" in shown.stdout and "STAGEFLOW_PORT" in shown.stdout
    assert not (tmp_path / "data").exists(), "--help started something"
    refused = subprocess.run([sys.executable, str(RUN), "--port", "1"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "unrecognized arguments: --port" in refused.stderr
    assert not (tmp_path / "data").exists()
