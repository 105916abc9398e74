"""kill -9 of the worker while a due moment runs the rules of 300 items that fell due at it together.

Each item's rule follows a date field that all 300 share: the first entry keeps its own timer, the moment's workflow
runs the 299 others a hundred to a transaction. The worker dies once the first batch has taken effect; the next worker
finishes the moment: every rule takes effect once, every entry is told and ends.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from temporalio.client import Client

from tests.crm import automate, pipeline, user
from tests.faults.cluster import Cluster, record_figures
from tests.faults.effects import create_items, effects_done, outcome, until
from workflows.types import due_moment_key, due_workflow_id

ITEMS = 300
RULES = ("note",)
AHEAD_SECONDS = 45
"""The shared date lies this far after the items start being created (past the time creating them takes)."""


@pytest.mark.timeout(420)
async def test_worker_killed_while_a_due_moment_runs_its_rules(cluster: Cluster):
    cluster.start()
    due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=AHEAD_SECONDS)
    async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
        manager = await user(http, "Manager")
        flow = await pipeline(http, ["NEW", "DONE"])
        await automate(http, flow["id"], {"NEW": {"rules": [
            {"name": "note", "type": "add_timeline_entry", "delay": {"field": "Fields.call_on"},
             "settings": {"text": "Call the client about {{Deal.Title}}"}},
        ]}})
        items = await create_items(http, flow["id"], manager["id"], ITEMS, fields={"call_on": due.isoformat()})
    created = datetime.now(timezone.utc)
    assert created < due - timedelta(seconds=10), f"creating {ITEMS} items took past the shared date"
    engine = cluster.engine()

    assert await until(lambda: effects_done(engine, items) >= 1, timeout=AHEAD_SECONDS + 60, interval=0.01)
    await until(lambda: effects_done(engine, items) >= 100, timeout=60, interval=0.01)
    cluster.kill("worker")
    done_at_kill = effects_done(engine, items)

    restarted = time.monotonic()
    cluster.start_worker()
    complete = await until(lambda: effects_done(engine, items) >= ITEMS, timeout=120, interval=0.5)
    recovery = time.monotonic() - restarted
    client = await Client.connect(cluster.temporal_address)
    ran = await client.get_workflow_handle(due_workflow_id(due_moment_key(due))).result()
    running = f"WorkflowType = 'StageEntryWorkflow' AND ExecutionStatus = 'Running' AND StageflowPipelineId = '{flow['id']}'"

    deadline = time.monotonic() + 120
    while (still := (await client.count_workflows(running)).count) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    ended = not still
    result = outcome(engine, items, RULES)
    figures = {
        "items": len(items),
        **result.figures(),
        "done_at_kill": done_at_kill,
        "rules_the_moment_ran": ran,
        "seconds_to_finish_after_restart": round(recovery, 1),
        "max_seconds_late": round(max(result.late), 1),
    }
    record_figures("moment_killed", figures)
    assert complete, f"effects missing 120 s after the restart: {figures}"
    assert done_at_kill < ITEMS, f"every rule had taken effect before the worker was killed: {figures}"
    result.check_each_rule_once(items, RULES, figures)
    assert ran == ITEMS - 1, figures
    assert ended, f"entries still running 120 s after their rules took effect: {figures}"
