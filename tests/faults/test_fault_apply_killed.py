"""kill -9 of the worker while a save with `in_flight=apply` reaches 100 waiting entries.

Each entry waits on two rules: one the new version removes, one whose delay it shortens. The worker dies after the
apply has reached a few entries; the next worker finishes it. In the end every entry runs the new version: the
removed rule cancelled with its reason (and never fired, though its old due time passed), the shortened one done
once, at its new time.
"""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from sqlmodel import Session, col, select

from models.tables import Effect, TimelineEntry
from tests.crm import automate, ok, pipeline, user
from tests.faults.cluster import Cluster, record_figures
from tests.faults.effects import create_items, until

ITEMS = 100
REACHED_BEFORE_KILL = 10
OLD_DELAY_SECONDS = 90
NEW_DELAY_SECONDS = 40


def rule(name: str, seconds: int) -> dict:
    return {"name": name, "type": "add_timeline_entry", "delay": f"{seconds}s", "settings": {"text": name}}


def removed(engine, items: list[int]) -> Counter:
    """Item → `rule_cancelled` entries with reason `removed` (and version 2)."""
    with Session(engine) as session:
        rows = session.exec(select(TimelineEntry.item_id, TimelineEntry.data).where(
            TimelineEntry.kind == "rule_cancelled", col(TimelineEntry.item_id).in_(items))).all()
    return Counter(item for item, data in rows if data.get("reason") == "removed" and data.get("version") == 2)


def done(engine, items: list[int]) -> Counter:
    """Rule → effects stored as done for the items."""
    with Session(engine) as session:
        keys = session.exec(select(Effect.key).where(col(Effect.item_id).in_(items), Effect.status == "done")).all()
    return Counter(key.rsplit("/", 1)[1] for key in keys)


@pytest.mark.timeout(420)
async def test_worker_killed_while_apply_reaches_a_hundred_waiting_entries(cluster: Cluster):
    cluster.start()
    async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
        manager = await user(http, "Manager")
        flow = await pipeline(http, ["NEW", "DONE"])
        await automate(http, flow["id"], {"NEW": {"rules": [rule("gone", OLD_DELAY_SECONDS),
                                                            rule("sooner", OLD_DELAY_SECONDS)]}})
        began = time.monotonic()
        items = await create_items(http, flow["id"], manager["id"], ITEMS)
        engine = cluster.engine()
        saved = ok(await http.put(
            f"/pipelines/{flow['id']}/automation", params={"in_flight": "apply"},
            json={"stages": {"NEW": {"rules": [rule("sooner", NEW_DELAY_SECONDS)]}}, "note": "no more gone"},
        ))
    assert saved["version"] == 2 and saved["in_flight"] == "apply"
    await until(lambda: sum(removed(engine, items).values()) >= REACHED_BEFORE_KILL, timeout=60, interval=0.01)
    cluster.kill("worker")
    reached_at_kill = sum(removed(engine, items).values())
    assert reached_at_kill < ITEMS, "the apply had reached every entry before the worker was killed"

    restarted = time.monotonic()
    cluster.start_worker()
    reached = await until(lambda: len(removed(engine, items)) == ITEMS, timeout=120, interval=0.5)
    recovery = time.monotonic() - restarted
    # Past the removed rule's old due time: had an entry missed the apply, its rule would have fired by now.
    time.sleep(max(0.0, began + OLD_DELAY_SECONDS + 15 - time.monotonic()))
    await until(lambda: done(engine, items)["sooner"] == ITEMS, timeout=60, interval=0.5)
    effects = done(engine, items)
    cancelled = removed(engine, items)
    with Session(engine) as session:
        rescheduled = Counter(session.exec(select(TimelineEntry.item_id).where(
            TimelineEntry.kind == "rule_rescheduled", TimelineEntry.rule_name == "sooner",
            col(TimelineEntry.item_id).in_(items))).all())
    figures = {
        "items": len(items),
        "entries_reached_at_kill": reached_at_kill,
        "entries_reached_in_the_end": len(cancelled),
        "seconds_to_reach_every_entry_after_restart": round(recovery, 1),
        "removed_rules_fired": effects["gone"],
        "changed_rules_done": effects["sooner"],
        "changed_rules_rescheduled": len(rescheduled),
    }
    record_figures("apply_killed", figures)
    assert reached, f"entries the apply did not reach after the restart: {figures}"
    assert cancelled == Counter({item: 1 for item in items}), figures
    assert effects == Counter({"sooner": ITEMS}), figures
    assert all(rescheduled[item] <= 1 for item in items), figures
