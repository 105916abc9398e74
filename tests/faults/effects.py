"""What the fault tests count in the app's database: one row per effect a user sees, per item and rule."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import PendingActivityState, PendingWorkflowTaskState
from temporalio.client import Client

from models.tables import Effect, Notification, TimelineEntry
from tests.crm import automate, deal, pipeline, user

CONCURRENT_REQUESTS = 20


@dataclass
class Tally:
    """Effects seen per (item, rule): `expected` pairs, each should have exactly one row."""

    expected: int
    seen: int
    lost: int
    duplicated: int

    def figures(self) -> dict[str, int]:
        return {"effects_expected": self.expected, "effects_seen": self.seen, "lost": self.lost,
                "duplicated": self.duplicated}


def tally(rows: Counter, item_ids: list[int], rules: tuple[str, ...]) -> Tally:
    pairs = [(item_id, rule) for item_id in item_ids for rule in rules]
    return Tally(
        expected=len(pairs),
        seen=sum(rows[pair] for pair in pairs),
        lost=sum(1 for pair in pairs if rows[pair] == 0),
        duplicated=sum(rows[pair] - 1 for pair in pairs if rows[pair] > 1),
    )


@dataclass
class Outcome:
    """What a fault scenario left in the database for its items' rules."""

    counted: Tally
    done: Counter  # rule_done timeline entries per (item, rule)
    late: list[float]  # seconds each rule took effect after its due time
    extra: list[str]  # effects of rules the scenario did not configure

    def figures(self) -> dict[str, Any]:
        return {**self.counted.figures(), "rules_done_on_timeline": sum(self.done.values())}

    def check_each_rule_once(self, item_ids: list[int], rules: tuple[str, ...], figures: dict[str, Any]) -> None:
        """Every rule of every item took effect exactly once, and nothing else did."""
        assert (self.counted.lost, self.counted.duplicated) == (0, 0), figures
        assert self.extra == [], figures
        assert all(self.done[(item, rule)] == 1 for item in item_ids for rule in rules), figures


def outcome(engine: Engine, item_ids: list[int], rules: tuple[str, ...]) -> Outcome:
    return Outcome(
        counted=tally(effect_rows(engine, item_ids), item_ids, rules),
        done=timeline_kinds(engine, item_ids, "rule_done"),
        late=lateness(engine, item_ids),
        extra=unexpected_effects(engine, item_ids, rules),
    )


def effect_rows(engine: Engine, item_ids: list[int], note_rule: str = "note", ping_rule: str = "ping") -> Counter:
    """Rows the two rules of the fault scenarios leave: a comment on the timeline (`note`, add_timeline_entry) and a
    notification to the courier (`ping`, notify_employee)."""
    rows: Counter = Counter()
    with Session(engine) as session:
        comments = session.exec(
            select(TimelineEntry.item_id, func.count())
            .where(TimelineEntry.kind == "comment", TimelineEntry.rule_name == note_rule,
                   col(TimelineEntry.item_id).in_(item_ids))
            .group_by(TimelineEntry.item_id)
        ).all()
        notes = session.exec(
            select(Notification.item_id, func.count())
            .where(col(Notification.item_id).in_(item_ids))
            .group_by(Notification.item_id)
        ).all()
    rows.update({(item_id, note_rule): count for item_id, count in comments})
    rows.update({(item_id, ping_rule): count for item_id, count in notes})
    return rows


def timeline_kinds(engine: Engine, item_ids: list[int], kind: str) -> Counter:
    """(item, rule) → number of timeline entries of `kind`."""
    with Session(engine) as session:
        found = session.exec(
            select(TimelineEntry.item_id, TimelineEntry.rule_name, func.count())
            .where(TimelineEntry.kind == kind, col(TimelineEntry.item_id).in_(item_ids))
            .group_by(TimelineEntry.item_id, TimelineEntry.rule_name)
        ).all()
    return Counter({(item_id, rule): count for item_id, rule, count in found})


def effects_done(engine: Engine, item_ids: list[int]) -> int:
    with Session(engine) as session:
        return session.exec(
            select(func.count()).select_from(Effect).where(col(Effect.item_id).in_(item_ids), Effect.status == "done")
        ).one()


def unexpected_effects(engine: Engine, item_ids: list[int], rules: tuple[str, ...]) -> list[str]:
    """Keys of effects stored for these items other than `deal-<id>/entry-1/<rule>`: a stage entered twice, or a
    rule run under another key."""
    expected = {f"deal-{item_id}/entry-1/{rule}" for item_id in item_ids for rule in rules}
    with Session(engine) as session:
        keys = session.exec(select(Effect.key).where(col(Effect.item_id).in_(item_ids))).all()
    return sorted(set(keys) - expected)


def lateness(engine: Engine, item_ids: list[int]) -> list[float]:
    """Seconds between each rule's due time (its `rule_scheduled` entry) and the moment its effect was stored."""
    with Session(engine) as session:
        due = {
            (entry.item_id, entry.rule_name): datetime.fromisoformat(entry.data["due"])
            for entry in session.exec(
                select(TimelineEntry).where(
                    TimelineEntry.kind == "rule_scheduled", col(TimelineEntry.item_id).in_(item_ids)
                )
            )
        }
        done = session.exec(select(Effect).where(col(Effect.item_id).in_(item_ids), Effect.status == "done")).all()
    late = []
    for effect in done:
        rule = effect.key.rsplit("/", 1)[1]
        stored = effect.created_at if effect.created_at.tzinfo else effect.created_at.replace(tzinfo=timezone.utc)
        late.append((stored - due[(effect.item_id, rule)]).total_seconds())
    return late


async def until(check, timeout: float, interval: float = 0.05):
    """Polls `check` (blocking, cheap) until it returns something truthy or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(interval)
    return check()


async def crm_with_delayed_rules(http: httpx.AsyncClient, delay: str | None) -> tuple[dict, dict, dict]:
    """A pipeline NEW → DONE whose NEW stage has two rules after `delay`: a timeline note and a courier ping."""
    manager = await user(http, "Manager")
    courier = await user(http, "Courier")
    flow = await pipeline(http, ["NEW", "DONE"])
    await automate(http, flow["id"], {"NEW": {"rules": [
        {"name": "note", "type": "add_timeline_entry", "delay": delay,
         "settings": {"text": "Call the client about {{Deal.Title}}"}},
        {"name": "ping", "type": "notify_employee", "delay": delay,
         "settings": {"user_ids": [courier["id"]], "text": "Deliver {{Deal.Title}}"}},
    ]}})
    return flow, manager, courier


async def create_items(
    http: httpx.AsyncClient, pipeline_id: int, responsible_id: int, count: int, **fields
) -> list[int]:
    limit = asyncio.Semaphore(CONCURRENT_REQUESTS)

    async def one(number: int) -> int:
        async with limit:
            return (await deal(http, pipeline_id, responsible_id, title=f"Order {number}", **fields))["id"]

    return list(await asyncio.gather(*(one(number) for number in range(count))))


def effect_keys(engine: Engine, item_ids: list[int]) -> list[str]:
    """The keys of the effects stored as done for these items (`<entry workflow id>/<rule>`)."""
    with Session(engine) as session:
        return list(session.exec(
            select(Effect.key).where(col(Effect.item_id).in_(item_ids), Effect.status == "done")
        ).all())


async def entry_runs(address: str, workflow_ids: list[str]) -> Counter:
    """Workflow id → how many runs the Temporal server has of it."""
    client = await Client.connect(address)
    runs: Counter = Counter()
    for start in range(0, len(workflow_ids), 50):
        ids = ", ".join(f"'{workflow_id}'" for workflow_id in workflow_ids[start:start + 50])
        async for run in client.list_workflows(f"WorkflowId IN ({ids})"):
            runs[run.id] += 1
    return runs


async def started_activities(address: str, workflow_ids: list[str]) -> dict[str, int]:
    """Activity type → how many are started on a worker and not finished, over the given workflows. Local
    activities run inside a workflow task: workflows whose task a worker had started count under
    `workflow_task`."""
    client = await Client.connect(address)
    found: Counter = Counter()

    async def one(workflow_id: str) -> None:
        description = await client.get_workflow_handle(workflow_id).describe()
        for pending in description.raw_description.pending_activities:
            if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                found[pending.activity_type.name] += 1
        task = description.raw_description.pending_workflow_task
        if task.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED:
            found["workflow_task"] += 1

    limit = asyncio.Semaphore(20)

    async def limited(workflow_id: str) -> None:
        async with limit:
            await one(workflow_id)

    await asyncio.gather(*(limited(workflow_id) for workflow_id in workflow_ids))
    return dict(found)
