"""What the security tests observed, kept in tests/security/results/<name>.json for the README's table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def record(name: str, facts: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {"test": name, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **facts}
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\n[{name}] " + ", ".join(f"{key}={value}" for key, value in facts.items()))
    return path
