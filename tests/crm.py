"""Helpers for tests that drive stageflow through its HTTP API."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import httpx


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
    return response.json() if response.content else None


async def user(http: httpx.AsyncClient, name: str, **fields: Any) -> dict:
    return ok(await http.post("/users", json={"name": name, **fields}), 201)


async def pipeline(http: httpx.AsyncClient, stages: list[str], *, entity: str = "deal", name: str = "Sales") -> dict:
    body = {
        "entity_type": entity,
        "name": name,
        "stages": [{"code": code, "name": code.title()} for code in stages],
    }
    return ok(await http.post("/pipelines", json=body), 201)


async def automate(http: httpx.AsyncClient, pipeline_id: int, stages: dict[str, Any], **extra: Any) -> dict:
    body = {"stages": stages, **extra}
    return ok(await http.put(f"/pipelines/{pipeline_id}/automation", json=body))


async def deal(http: httpx.AsyncClient, pipeline_id: int, responsible_id: int, *, entity: str = "deal", **fields: Any) -> dict:
    body = {"title": fields.pop("title", "Sofa for Anna"), "pipeline_id": pipeline_id, "responsible_id": responsible_id, **fields}
    return ok(await http.post(f"/{entity}s", json=body), 201)


async def timeline(http: httpx.AsyncClient, item_id: int, *, entity: str = "deal", kind: str | None = None) -> list[dict]:
    params = {"limit": 500}
    if kind:
        params["kind"] = kind
    return ok(await http.get(f"/{entity}s/{item_id}/timeline", params=params))


async def eventually(check: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Polls `check` (sync or async) until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def kinds(entries: list[dict], rule: str | None = None) -> list[str]:
    return [entry["kind"] for entry in entries if rule is None or entry.get("rule_name") == rule]
