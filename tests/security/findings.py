"""What the security tests observed, kept in tests/security/results/<name>.json for the README's table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.results import record_results

RESULTS = Path(__file__).resolve().parent / "results"


def record(name: str, facts: dict[str, Any]) -> Path:
    return record_results(RESULTS, name, "test", facts)
