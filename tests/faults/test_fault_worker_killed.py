"""kill -9 of the worker while 100 items wait for delayed rules, and again while those rules' activities run.

A new worker finishes everything: every rule takes effect exactly once, none is lost, counted in the database.
"""

from __future__ import annotations

import time

import httpx
import pytest

from models.settings import Settings
from tests.faults.cluster import Cluster, record_figures
from tests.faults.effects import (
    create_items,
    crm_with_delayed_rules,
    effects_done,
    outcome,
    started_activities,
    timeline_kinds,
    until,
)

ITEMS = 100
RULES = ("note", "ping")
DELAY_SECONDS = 20
MID_FLIGHT_AFTER = 10  # effects the second worker stores before it is killed
# A rule activity that was running on a killed worker is retried once its heartbeat timeout has passed (local
# activities once the workflow task's 10 s timeout has); the bound leaves room for a loaded machine.
RECOVERY_BOUND = Settings().rule_heartbeat_seconds + 60


@pytest.mark.timeout(420)
async def test_worker_killed_during_delays_and_during_activities(cluster: Cluster):
    cluster.start()
    async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
        flow, manager, _ = await crm_with_delayed_rules(http, f"{DELAY_SECONDS}s")
        began = time.monotonic()
        items = await create_items(http, flow["id"], manager["id"], ITEMS)
        creating = time.monotonic() - began
    engine = cluster.engine()
    expected = len(items) * len(RULES)
    scheduled = await until(lambda: sum(timeline_kinds(engine, items, "rule_scheduled").values()) == expected, 30)
    assert scheduled, "the rules of every item were scheduled"

    # 1. During the delays: every rule is scheduled, those of the items created last are not due yet.
    done_at_first_kill = effects_done(engine, items)
    cluster.kill("worker")
    assert done_at_first_kill < expected

    # The timers fire on the server while no worker runs; the next worker gets all their rules at once.
    time.sleep(max(0.0, began + creating + DELAY_SECONDS + 1 - time.monotonic()))
    cluster.start_worker()

    # 2. During the activities: killed once the new worker has stored a few effects and is busy with the rest.
    threshold = min(done_at_first_kill + MID_FLIGHT_AFTER, expected - 1)
    await until(lambda: effects_done(engine, items) >= threshold, timeout=60, interval=0.02)
    cluster.kill("worker")
    done_at_second_kill = effects_done(engine, items)
    workflow_ids = [f"deal-{item}/entry-1" for item in items]
    in_flight = await started_activities(cluster.temporal_address, workflow_ids)
    assert done_at_second_kill < expected, "every rule had finished before the worker was killed"

    restarted = time.monotonic()
    cluster.start_worker()
    complete = await until(lambda: effects_done(engine, items) >= expected, timeout=RECOVERY_BOUND, interval=0.5)
    recovery = time.monotonic() - restarted
    time.sleep(2)
    result = outcome(engine, items, RULES)
    figures = {
        "items": len(items),
        **result.figures(),
        "pending_at_kill_during_delay": expected - done_at_first_kill,
        "pending_at_kill_during_activities": expected - done_at_second_kill,
        "activities_running_at_kill": sum(count for name, count in in_flight.items() if name != "workflow_task"),
        "workflow_tasks_running_at_kill": in_flight.get("workflow_task", 0),
        "seconds_to_finish_after_restart": round(recovery, 1),
        "max_seconds_late": round(max(result.late), 1),
        "seconds_creating_items": round(creating, 1),
    }
    figures["unexpected_effects"] = result.extra[:10]
    record_figures("worker_killed", figures)
    assert complete, f"effects missing {RECOVERY_BOUND:.0f} s after the restart: {figures}"
    result.check_each_rule_once(items, RULES, figures)
    assert result.counted.seen == expected
    assert sum(in_flight.values()) > 0, f"no activity or workflow task was running when the worker was killed: {figures}"
