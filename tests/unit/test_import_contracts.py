"""The layer contracts in pyproject.toml hold for the code as it is, and each fails when a module imports one
above it: checked on a copy of the packages with one back-pointing import written in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "activities", "workflows", "models")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )


def copy_of_the_project(target: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_contracts_hold(tmp_path: Path) -> None:
    result = lint_imports(copy_of_the_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("models/domain/placeholders.py", "import activities.rule", "Layers point down"),
        ("activities/rules/helpers.py", "import api.main", "Layers point down"),
        ("workflows/types.py", "import activities.keys", "Layers point down"),
        ("models/domain/timing.py", "import models.tables", "Inside models"),
        ("activities/transports/mail.py", "import activities.rule", "Inside activities"),
        ("activities/rules/helpers.py", "import activities.steps", "Inside activities"),
        ("models/domain/conditions.py", "import sqlmodel", "The pure domain does no I/O"),
        ("workflows/entry.py", "import models.domain.placeholders", "Workflow code imports only"),
        ("api/routes/tasks.py", "import api.routes.items", "Route modules do not import each other"),
        ("api/simulation/runner.py", "import workflows.client", "Only the use cases talk to the item workflows"),
        ("api/usecases/items.py", "import api.console.routes", "Inside the API"),
    ],
)
def test_a_back_pointing_import_breaks_a_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    root = copy_of_the_project(tmp_path)
    path = root / module
    source = path.read_text()
    marker = "from __future__ import annotations\n"
    path.write_text(source.replace(marker, f"{marker}\n{line}  # noqa: F401\n", 1))
    result = lint_imports(root)
    assert result.returncode != 0, result.stdout
    broken = [row for row in result.stdout.splitlines() if " BROKEN" in row]
    assert any(contract in row for row in broken), result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout
