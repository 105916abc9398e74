"""Helpers for the custom-rule and variable tests: a shop with one pipeline, reading rule outcomes back."""

from __future__ import annotations

from typing import Any

import httpx

from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user

ENDED = ("rule_done", "rule_failed", "rule_skipped", "rule_cancelled")


async def shop_deal(http: httpx.AsyncClient, stages: dict[str, Any], **deal_fields: Any) -> dict:
    """A manager, a pipeline NEW → WON automated with `stages`, and a deal entering NEW."""
    manager = await user(http, "Marek Manager", email="marek@shop.example")
    flow = await pipeline(http, ["NEW", "WON"])
    await automate(http, flow["id"], stages, **deal_fields.pop("automation", {}))
    return await deal(http, flow["id"], manager["id"], **deal_fields)


async def finished(http: httpx.AsyncClient, item_id: int, rule: str, *, timeout: float = 40.0) -> dict:
    """The timeline entry that ends the rule's run (done, failed, skipped or cancelled)."""

    async def ended() -> dict | None:
        entries = await rule_entries(http, item_id, rule)
        return next((entry for entry in entries if entry["kind"] in ENDED), None)

    return await eventually(ended, timeout=timeout)


async def comments(http: httpx.AsyncClient, item_id: int) -> list[str]:
    return [entry["text"] for entry in await timeline(http, item_id, kind="comment")]


async def rule_entries(http: httpx.AsyncClient, item_id: int, rule: str) -> list[dict]:
    return [entry for entry in await timeline(http, item_id) if entry.get("rule_name") == rule]


async def result_of(http: httpx.AsyncClient, item_id: int, rule: str) -> dict:
    """The results recorded with the rule's `rule_done` entry."""
    done = [entry for entry in await rule_entries(http, item_id, rule) if entry["kind"] == "rule_done"]
    assert len(done) == 1, done
    return done[0]["data"].get("result") or {}


def problem_at(response: httpx.Response, *path: Any) -> dict:
    """The 422 problem whose location ends with `path`."""
    assert response.status_code == 422, response.text
    for problem in response.json()["detail"]:
        if list(problem["loc"])[-len(path):] == list(path):
            return problem
    raise AssertionError(f"no problem at {path}: {response.text}")


async def automation_of(http: httpx.AsyncClient, item: dict) -> dict:
    return ok(await http.get(f"/pipelines/{item['pipeline_id']}/automation"))
