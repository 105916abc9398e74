"""kill -9 of the worker while 100 items wait for delayed rules, and again while those rules' activities run; and
while payments move items into a stage whose rules start at once.

A new worker finishes everything: every rule takes effect exactly once, none is lost, counted in the database.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest
from sqlmodel import Session, col, select

from models.settings import Settings
from models.tables import TimelineEntry
from tests.crm import automate, ok, pipeline, user
from tests.faults.cluster import Cluster, record_figures
from tests.faults.effects import (
    create_items,
    crm_with_delayed_rules,
    effect_keys,
    effects_done,
    entry_runs,
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

    complete, recovery = await _next_worker_finishes(cluster, engine, items, expected)
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


async def _next_worker_finishes(cluster: Cluster, engine, items: list[int], expected: int) -> tuple[bool, float]:
    """Starts a worker and waits until the items' `expected` effects are stored: whether they were, and how long
    after the start."""
    restarted = time.monotonic()
    cluster.start_worker()
    complete = await until(lambda: effects_done(engine, items) >= expected, timeout=RECOVERY_BOUND, interval=0.5)
    recovery = time.monotonic() - restarted
    time.sleep(2)
    return bool(complete), recovery


ENTERING = ("note", "mark", "ping", "call")
"""Two database-only rules (one `rules.together` call) and two that reach the outside (one `rules.outside_together`
call)."""


@pytest.mark.timeout(300)
async def test_worker_killed_while_payments_move_items_into_a_stage_with_rules(cluster: Cluster):
    """kill -9 of the worker while payments move 100 items into PAID, whose rules start at once: the steps that
    enter the stage and start each entry's workflow, and the entries' `rules.together` and `rules.outside_together`
    calls, are cut off mid-way.
    The next worker finishes them: every item enters PAID once, each entry's workflow runs once, every rule takes
    effect once."""
    cluster.start()
    async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
        manager = await user(http, "Manager")
        courier = await user(http, "Courier")
        flow = await pipeline(http, ["NEW", "PAID"])
        await automate(http, flow["id"], {"PAID": {
            "rules": [
                {"name": "note", "type": "add_timeline_entry", "settings": {"text": "Paid: {{Deal.Title}}"}},
                {"name": "mark", "type": "add_timeline_entry", "settings": {"text": "Ship it", "kind": "shipping"}},
                {"name": "ping", "type": "notify_employee",
                 "settings": {"user_ids": [courier["id"]], "text": "Deliver {{Deal.Title}}"}},
                {"name": "call", "type": "notify_employee",
                 "settings": {"user_ids": [manager["id"]], "text": "Call the client of {{Deal.Title}}"}},
            ],
            "triggers": [{"name": "paid", "type": "payment_received"}],
        }})
        items = await create_items(http, flow["id"], manager["id"], ITEMS)
        engine = cluster.engine()

        async def pay() -> None:
            for item_id in items:
                ok(await http.post(f"/deals/{item_id}/payments", json={"amount": 10}), 202)

        paying = asyncio.create_task(pay())
        await until(lambda: effects_done(engine, items) >= MID_FLIGHT_AFTER, timeout=60, interval=0.01)
        cluster.kill("worker")
        done_at_kill = effects_done(engine, items)
        entered_at_kill = len(_entries(engine, items, 2))
        await paying  # the API takes the rest of the payments while no worker runs
    expected = len(items) * len(ENTERING)
    assert done_at_kill < expected, "every rule had finished before the worker was killed"

    complete, recovery = await _next_worker_finishes(cluster, engine, items, expected)
    runs = await entry_runs(cluster.temporal_address, [f"deal-{item}/entry-2" for item in items])
    done = timeline_kinds(engine, items, "rule_done")
    effects = Counter(key.rsplit("/", 1)[1] for key in effect_keys(engine, items))
    figures = {
        "items": len(items),
        "effects_expected": expected,
        "effects_seen": effects_done(engine, items),
        "pending_at_kill": expected - done_at_kill,
        "items_in_paid_at_kill": entered_at_kill,
        "seconds_to_finish_after_restart": round(recovery, 1),
        "entry_runs": sum(runs.values()),
    }
    record_figures("worker_killed_entering", figures)
    assert complete, f"effects missing {RECOVERY_BOUND:.0f} s after the restart: {figures}"
    assert effects == Counter({rule: len(items) for rule in ENTERING}), figures
    assert all(done[(item, rule)] == 1 for item in items for rule in ENTERING), figures
    assert runs == {f"deal-{item}/entry-2": 1 for item in items}, figures
    assert sorted(_entries(engine, items, 1) + _entries(engine, items, 2)) == sorted(
        (item, number) for item in items for number in (1, 2)), figures


def _entries(engine, items: list[int], entry_no: int) -> list[tuple[int, int]]:
    """(item, entry number) of each `stage_changed` entry of that number on the items' timelines."""
    with Session(engine) as session:
        return list(session.exec(select(TimelineEntry.item_id, TimelineEntry.entry_no).where(
            TimelineEntry.kind == "stage_changed", TimelineEntry.entry_no == entry_no,
            col(TimelineEntry.item_id).in_(items))).all())
