"""Helpers for the employee monitoring tests: the people of a small shop, reading results back, reruns."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import httpx

from activities.steps import RuleRunner
from activities.rules import RULE_TYPES
from models.item_data import load_automation
from models.tables import Effect, Item
from tests.crm import eventually, ok, timeline, user
from workflows.types import RuleCall, RuleOutcome, RulePlan, entry_workflow_id


async def shop(http: httpx.AsyncClient) -> dict[str, dict]:
    """A supervisor, a manager reporting to her, a courier without e-mail."""
    boss = await user(http, "Barbara Boss", email="barbara@shop.example")
    manager = await user(http, "Marek Manager", email="marek@shop.example", supervisor_id=boss["id"])
    courier = await user(http, "Kuba Courier")
    return {"boss": boss, "manager": manager, "courier": courier}


async def notifications(http: httpx.AsyncClient, user_id: int) -> list[dict]:
    return ok(await http.get("/notifications", params={"user_id": user_id}))


async def tasks(http: httpx.AsyncClient, item_id: int) -> list[dict]:
    return ok(await http.get("/tasks", params={"deal_id": item_id}))


async def activities(http: httpx.AsyncClient, item_id: int) -> list[dict]:
    return ok(await http.get("/activities", params={"deal_id": item_id}))


async def stage_of(http: httpx.AsyncClient, item_id: int) -> str:
    return ok(await http.get(f"/deals/{item_id}"))["stage"]


async def finished(http: httpx.AsyncClient, item_id: int, rule: str, *, timeout: float = 20.0) -> dict:
    """The timeline entry that ends the rule's run (done, failed, skipped or cancelled)."""

    async def ended() -> dict | None:
        for entry in await timeline(http, item_id):
            if entry.get("rule_name") == rule and entry["kind"] in (
                "rule_done", "rule_failed", "rule_skipped", "rule_cancelled"
            ):
                return entry
        return None

    return await eventually(ended, timeout=timeout)


def problem_at(detail: list[dict], *path: Any) -> dict:
    """The 422 problem whose location ends with `path` (e.g. "settings", "deadline")."""
    for problem in detail:
        loc = list(problem["loc"])
        if loc[-len(path):] == list(path):
            return problem
    raise AssertionError(f"no problem at {path}: {detail}")


async def rerun(stack, item_id: int, rule_name: str) -> RuleOutcome:
    """Runs a rule of the item's current stage entry again, as after a worker crashed between the
    rule's effect and the engine's record of it, or after an admin's reset: the engine's record is gone,
    whatever the rule itself wrote is still there."""
    with stack.session() as session:
        item = session.get(Item, item_id)
        config, _ = load_automation(session, item.pipeline_id)
        rule = next(rule for rule in config.stages[item.stage].rules if rule.name == rule_name)
        workflow_id = entry_workflow_id(item.entity_type, item.id, item.entry_no)
        effect = session.get(Effect, f"{workflow_id}/{rule_name}")
        assert effect is not None and effect.status == "done"
        session.delete(effect)
        call = RuleCall(
            item_id=item.id,
            entity=item.entity_type,
            pipeline_id=item.pipeline_id,
            stage=item.stage,
            entry_no=item.entry_no,
            workflow_id=workflow_id,
            rule=RulePlan(index=0, name=rule.name, type=rule.type, activity=f"rule.{rule.type}",
                          settings=dict(rule.settings)),
            at=datetime.now(timezone.utc),
            constants=dict(config.constants),
            variables=dict(config.variables),
        )
    return await RuleRunner(stack.deps, RULE_TYPES[rule.type]).run(call)
