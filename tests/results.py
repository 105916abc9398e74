"""Figures the fault and security tests record for the README's tables: printed, and kept as JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def record_results(directory: Path, name: str, label: str, figures: dict[str, Any]) -> Path:
    """Prints `figures` under `[name]` and writes them to `directory/<name>.json` with the time of recording."""
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.json"
    document = {label: name, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\n[{name}] " + ", ".join(f"{key}={value}" for key, value in figures.items()))
    return path
