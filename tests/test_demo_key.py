"""`make demo` names the API key that is in use in its closing hint: the one from STAGEFLOW_API_KEY, --key, or
the file `make run` writes; never a file that does not exist."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def demo_module():
    spec = importlib.util.spec_from_file_location("stageflow_demo", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_key_from_the_environment_is_named_as_such(monkeypatch, tmp_path):
    monkeypatch.setenv("STAGEFLOW_API_KEY", "sf-from-env")
    monkeypatch.setenv("STAGEFLOW_DATA_DIR", str(tmp_path))
    assert demo_module().api_key(None) == ("sf-from-env", "$STAGEFLOW_API_KEY")


def test_the_key_file_of_make_run_is_named_when_it_is_the_source(monkeypatch, tmp_path):
    monkeypatch.delenv("STAGEFLOW_API_KEY", raising=False)
    monkeypatch.setenv("STAGEFLOW_DATA_DIR", str(tmp_path))
    (tmp_path / "api_key").write_text("sf-from-file\n")
    assert demo_module().api_key(None) == ("sf-from-file", f"$(cat {tmp_path / 'api_key'})")
    assert demo_module().api_key("sf-given") == ("sf-given", "<the key given with --key>")


def test_no_key_anywhere_stops_with_what_to_do(monkeypatch, tmp_path):
    monkeypatch.delenv("STAGEFLOW_API_KEY", raising=False)
    monkeypatch.setenv("STAGEFLOW_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="set STAGEFLOW_API_KEY"):
        demo_module().api_key(None)
