"""kill -9 of the worker in the middle of a bulk retry of failed rules.

The SMTP server is down while 50 deals enter a stage whose rule emails the client: every email ends `rule_failed`.
The server comes back; `POST /failures/retry` (a dry run first, which says 50) starts the operation at 5 rules a
second, and the worker is killed after it has delivered some, while the operation waits for its next second (a
worker killed inside an SMTP conversation sends that one email again, with the same Message-ID: the limit the
Reliability section of the README describes for every email). The next worker finishes the operation: each of the
50 emails reached the SMTP server once, and every timeline says `rule_retried`, then `rule_done`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest
from sqlmodel import Session, col, select

from models.tables import TimelineEntry
from tests.crm import automate, ok, pipeline, user
from tests.faults.cluster import Cluster, outside_world, record_figures
from tests.faults.effects import create_items, until

ITEMS = 50
RATE = 5
DELIVERED_BEFORE_KILL = 8


def kinds(engine, items: list[int], kind: str) -> Counter:
    """Item → its timeline entries of `kind` for the rule `mail`."""
    with Session(engine) as session:
        rows = session.exec(select(TimelineEntry.item_id).where(
            TimelineEntry.kind == kind, TimelineEntry.rule_name == "mail", col(TimelineEntry.item_id).in_(items)))
        return Counter(rows.all())


def story(engine, item: int) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(TimelineEntry.kind).where(
            TimelineEntry.item_id == item, TimelineEntry.rule_name == "mail",
        ).order_by(col(TimelineEntry.at), col(TimelineEntry.id))).all())


async def between_batches(mailbox) -> None:
    """Until at least `DELIVERED_BEFORE_KILL` emails are in, a whole number of batches, and no more arrive for a
    while: the operation sleeps until its next second."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        count = len(mailbox.messages)
        if DELIVERED_BEFORE_KILL <= count < ITEMS and count % RATE == 0:
            await asyncio.sleep(0.2)
            if len(mailbox.messages) == count:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the retry did not pause between batches: {len(mailbox.messages)} delivered")


@pytest.mark.timeout(420)
async def test_worker_killed_while_a_retry_delivers_fifty_failed_emails(cluster: Cluster):
    cluster.env.update(STAGEFLOW_RULE_MAX_ATTEMPTS="2", STAGEFLOW_RULE_RETRY_INITIAL_SECONDS="0.2")
    with outside_world(cluster) as (mailbox, _):
        mailbox.down()
        cluster.start()
        engine = cluster.engine()
        async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
            manager = await user(http, "Manager")
            client = ok(await http.post("/contacts", json={"name": "Anna", "email": "anna@example.com"}), 201)
            flow = await pipeline(http, ["NEW", "DONE"])
            await automate(http, flow["id"], {"NEW": {"rules": [
                {"name": "mail", "type": "send_email",
                 "settings": {"subject": "Your order {{Deal.Title}}", "body": "Hello {{Deal.Contact.Name}}."}}]}})
            items = await create_items(http, flow["id"], manager["id"], ITEMS, contact_id=client["id"])
            failed = await until(lambda: len(kinds(engine, items, "rule_failed")) == ITEMS, timeout=180, interval=0.5)
            assert failed, f"{len(kinds(engine, items, 'rule_failed'))} of {ITEMS} emails failed"
            mailbox.up()

            dry = ok(await http.post("/failures/retry", json={"pipeline_id": flow["id"]}))
            started = ok(await http.post("/failures/retry", json={
                "pipeline_id": flow["id"], "dry_run": False, "rate": RATE}), 202)
            began = time.monotonic()
            await between_batches(mailbox)
            cluster.kill("worker")
            delivered_at_kill = len(mailbox.messages)
            progress_at_kill = ok(await http.get(f"/operations/{started['operation_id']}"))
            restarted = time.monotonic()
            cluster.start_worker()

            async def finished() -> dict | None:
                progress = ok(await http.get(f"/operations/{started['operation_id']}"))
                return progress if progress["state"] == "done" else None

            progress = None
            deadline = time.monotonic() + 180
            while progress is None and time.monotonic() < deadline:
                progress = await finished()
                if progress is None:
                    await asyncio.sleep(0.5)
            finished_after = time.monotonic() - restarted
            again = ok(await http.post("/failures/retry", json={"pipeline_id": flow["id"]}))

    subjects = Counter(str(message["Subject"]) for message in mailbox.messages)
    retried, done = kinds(engine, items, "rule_retried"), kinds(engine, items, "rule_done")
    figures = {
        "items": ITEMS,
        "dry_run_count": dry["count"],
        "rate_per_second": RATE,
        "delivered_when_killed": delivered_at_kill,
        "targets_done_when_killed": progress_at_kill["done"],
        "seconds_from_start_to_kill": round(restarted - began, 1),
        "seconds_to_finish_after_restart": round(finished_after, 1),
        "emails_delivered": sum(subjects.values()),
        "duplicated": sum(count - 1 for count in subjects.values()),
        "lost": ITEMS - len(subjects),
        "second_dry_run_count": again["count"],
    }
    record_figures("retry_killed", figures)
    assert dry == {"dry_run": True, "count": ITEMS}
    assert delivered_at_kill < ITEMS, "the retry had delivered every email before the worker was killed"
    assert progress is not None, figures
    assert (progress["total"], progress["done"], progress["failed"]) == (ITEMS, ITEMS, 0), progress
    assert (figures["lost"], figures["duplicated"]) == (0, 0), figures
    assert set(subjects) == {f"Your order Order {number}" for number in range(ITEMS)}
    assert set(retried.values()) == {1} and len(retried) == ITEMS
    assert set(done.values()) == {1} and len(done) == ITEMS
    for item in items:
        assert story(engine, item)[-3:] == ["rule_failed", "rule_retried", "rule_done"], (item, story(engine, item))
    assert again["count"] == 0
