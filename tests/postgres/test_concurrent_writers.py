"""Many writers at once on a real PostgreSQL database (which, unlike SQLite, lets them write in parallel).

Items are moved, commented on, edited and paid for all at the same time, while every move starts rules
that write timeline entries, notifications, tasks and numbered documents. Nothing is lost or doubled, each
item's stages follow one another, and document numbers stay unique and without gaps.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

from models.tables import Document, Notification, Task, TimelineEntry
from tests.crm import automate, deal, eventually, ok, pipeline, user
from tests.documents.support import client_company, my_company
from tests.postgres_support import PostgresUnavailable, create_database, drop_database
from tests.stacks import open_stack, stack_settings

ITEMS = 20
RULES = ("note", "ping", "todo", "invoice")


@pytest.fixture
async def pg_stack(dev_env: WorkflowEnvironment, tmp_path: Path):
    try:
        url = create_database("writers")
    except PostgresUnavailable as error:
        pytest.skip(f"PostgreSQL unavailable: {error}")
    try:
        async with AsyncExitStack() as exit_stack:
            yield await open_stack(exit_stack, dev_env, stack_settings(tmp_path, database_url=url))
    finally:
        drop_database(url)


@pytest.mark.timeout(240)
async def test_concurrent_moves_events_and_edits_on_postgresql(pg_stack):
    stack = pg_stack
    assert stack.engine.dialect.name == "postgresql"
    await my_company(stack.http)
    buyer = await client_company(stack.http)
    manager = await user(stack.http, "Manager")
    courier = await user(stack.http, "Courier")
    flow = await pipeline(stack.http, ["NEW", "WORK", "PAID"])
    await automate(stack.http, flow["id"], {
        "WORK": {"rules": [
            {"name": "note", "type": "add_timeline_entry", "settings": {"text": "Working on {{Deal.Title}}"}},
            {"name": "ping", "type": "notify_employee",
             "settings": {"user_ids": [courier["id"]], "text": "Pack {{Deal.Title}}"}},
            {"name": "todo", "type": "create_task", "settings": {"title": "Call about {{Deal.Title}}"}},
            {"name": "invoice", "type": "create_document", "settings": {"template": "invoice", "wait_for_pdf": False}},
        ]},
        "PAID": {"triggers": [{"name": "paid", "type": "payment_received"}]},
    })
    items = [(await deal(stack.http, flow["id"], manager["id"], title=f"Order {n}", company_id=buyer["id"],
                         amount=100 + n))["id"] for n in range(ITEMS)]

    async def work(item: int) -> list[int]:
        answers = await asyncio.gather(
            stack.http.post(f"/deals/{item}/move", json={"stage": "WORK"}, headers={"Idempotency-Key": f"m{item}"}),
            stack.http.post(f"/deals/{item}/comments", json={"text": f"Client called about {item}"}),
            stack.http.patch(f"/deals/{item}", json={"fields": {"city": "Łódź"}}),
        )
        return [answer.status_code for answer in answers]

    statuses = await asyncio.gather(*(work(item) for item in items))
    assert all(codes == [200, 201, 200] for codes in statuses), statuses

    def count(*kinds: str) -> int:
        with stack.session() as session:
            return len(session.exec(select(TimelineEntry.id).where(
                col(TimelineEntry.kind).in_(kinds), col(TimelineEntry.item_id).in_(items))).all())

    await eventually(lambda: count("rule_done", "rule_cancelled", "rule_failed") >= ITEMS * len(RULES),
                     timeout=120, interval=0.5)
    payments = await asyncio.gather(*(
        stack.http.post(f"/deals/{item}/payments", json={"amount": 10}, headers={"Idempotency-Key": f"p{item}"})
        for item in items))
    assert {answer.status_code for answer in payments} == {202}
    await eventually(lambda: count("stage_changed") == ITEMS * 3, timeout=60, interval=0.5)
    with stack.session() as session:
        entries = session.exec(select(TimelineEntry).where(col(TimelineEntry.item_id).in_(items))
                               .order_by(TimelineEntry.item_id, TimelineEntry.id)).all()
        notes = Counter(row.item_id for row in session.exec(
            select(Notification).where(col(Notification.item_id).in_(items))))
        tasks = Counter(row.item_id for row in session.exec(select(Task).where(col(Task.item_id).in_(items))))
        numbers = [row.number for row in session.exec(select(Document).where(col(Document.item_id).in_(items)))]
    outcomes = Counter((entry.item_id, entry.rule_name, entry.kind) for entry in entries if entry.rule_name)
    for item in items:
        stages = [entry.data["to"] for entry in entries if entry.item_id == item and entry.kind == "stage_changed"]
        assert stages == ["NEW", "WORK", "PAID"], (item, stages)
        comments = [entry.text for entry in entries if entry.item_id == item and entry.kind == "comment"]
        assert sorted(comments) == sorted([f"Client called about {item}", f"Working on Order {items.index(item)}"])
        for rule in RULES:
            assert outcomes[(item, rule, "rule_done")] == 1, (item, rule, outcomes)
        assert (notes[item], tasks[item]) == (1, 1)
    assert not [entry.text for entry in entries if entry.kind == "rule_failed"]
    sequence = sorted(int(number.rsplit("-", 1)[1]) for number in numbers)
    assert sequence == list(range(1, ITEMS + 1)), numbers
    fields = [ok(await stack.http.get(f"/deals/{item}"))["fields"] for item in items]
    assert all(value == {"city": "Łódź"} for value in fields)
