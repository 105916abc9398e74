"""What a test needs from Debian (`chromium`, `postgresql`, `haproxy`), installed with apt-get when missing, as root.

The suite runs in several processes at once (`make test`): they share the machine's package database and services,
so installing a package or starting a service holds `machine_lock` while it runs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = Path(tempfile.gettempdir()) / "stageflow-tests-machine.lock"
INSTALL_TIMEOUT = 900
_held = [0]


class NotInstallable(Exception):
    """The package cannot be installed here; the message says why."""


@contextmanager
def machine_lock() -> Iterator[None]:
    """One process of the suite at a time installs packages or starts the machine's services (a process that holds
    the lock may take it again)."""
    if _held[0]:
        _held[0] += 1
        try:
            yield
        finally:
            _held[0] -= 1
        return
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _held[0] = 1
        try:
            yield
        finally:
            _held[0] = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(package: str, installed: Callable[[], bool], *, recommends: bool = False) -> None:
    """Installs `package` (with the packages it recommends, when asked: a browser's fonts) unless `installed()`
    already holds (checked again under the lock, since another process of the suite may have installed it
    meanwhile)."""
    with machine_lock():
        if installed():
            return
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            raise NotInstallable(f"{package} is missing and cannot be installed here (needs root and apt-get): "
                                 f"apt-get install {package}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        extra = [] if recommends else ["--no-install-recommends"]
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *extra, package]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
            if done.returncode != 0 and command[1] == "install":
                raise NotInstallable(f"apt-get install {package} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        if not installed():
            raise NotInstallable(f"apt-get installed {package}, but it is not there")
