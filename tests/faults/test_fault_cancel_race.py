"""A stage left while its rules are still being loaded: every rule of that entry is recorded as cancelled.

Item workflow runs from before engine generation 1 (0.4.0 and earlier, until they continue as new) start each entry
as a child workflow that loads its rules in its first activity. The item moves on while that activity runs; the
entry workflow is cancelled at that moment. Its rules were scheduled (they are on the timeline), so each must end
cancelled, never left without an outcome.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import workflows.client
from activities.steps import WorkerActivities
from activities.rules import CUSTOM_RULES, RULE_TYPES, rule_types
from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from tests.stacks import open_stack, stack_settings
from activities.worker import WORKFLOWS
from workflows.types import BEGIN_ENTRY, EntryInput, EntryPlan

LOADING_SECONDS = 1.5


async def test_rules_of_an_entry_cancelled_while_they_load_are_recorded_cancelled(
    dev_env: WorkflowEnvironment, tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(workflows.client, "GENERATION", 0)  # the item's workflow runs as one started by 0.4.0
    async with AsyncExitStack() as exit_stack:
        stack = await open_stack(exit_stack, dev_env, stack_settings(tmp_path), worker=False)
        engine = WorkerActivities(stack.deps, RULE_TYPES, CUSTOM_RULES, rule_types)
        loading = asyncio.Event()

        @activity.defn(name=BEGIN_ENTRY)
        async def slow_begin_entry(entry: EntryInput) -> EntryPlan:
            plan = await engine.planning.begin_entry(entry)
            if entry.stage == "WORK":
                loading.set()
                await asyncio.sleep(LOADING_SECONDS)
            return plan

        activities = [slow_begin_entry if fn == engine.planning.begin_entry else fn for fn in engine.all()]
        await exit_stack.enter_async_context(Worker(
            stack.client, task_queue=stack.settings.temporal_task_queue, workflows=WORKFLOWS, activities=activities,
        ))

        manager = await user(stack.http, "Manager")
        flow = await pipeline(stack.http, ["NEW", "WORK", "DONE"])
        await automate(stack.http, flow["id"], {"WORK": {"rules": [
            {"name": "now", "type": "add_timeline_entry", "settings": {"text": "Working on {{Deal.Title}}"}},
            {"name": "later", "type": "add_timeline_entry", "delay": "1h", "settings": {"text": "Still working"}},
        ]}})
        item = await deal(stack.http, flow["id"], manager["id"])
        ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "WORK"}))
        await asyncio.wait_for(loading.wait(), timeout=20)
        ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "DONE"}))

        async def outcomes() -> dict[str, list[str]] | None:
            entries = [entry for entry in await timeline(stack.http, item["id"]) if entry["entry_no"] == 2]
            found = {rule: [entry["kind"] for entry in entries if entry.get("rule_name") == rule]
                     for rule in ("now", "later")}
            return found if all(len(kinds) >= 2 for kinds in found.values()) else None

        try:
            found = await eventually(outcomes, timeout=LOADING_SECONDS + 15)
        except AssertionError:
            entries = [entry for entry in await timeline(stack.http, item["id"]) if entry["entry_no"] == 2]
            raise AssertionError(
                "rules of the cancelled entry left without an outcome: "
                f"{[(entry['kind'], entry.get('rule_name')) for entry in entries]}"
            ) from None
        assert found == {"now": ["rule_scheduled", "rule_cancelled"], "later": ["rule_scheduled", "rule_cancelled"]}
