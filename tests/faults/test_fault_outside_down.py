"""The SMTP server and a webhook target are down for a while: the rules retry with backoff and, when both
come back, every e-mail is delivered and every webhook called exactly once."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter

import httpx
import pytest
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from models.tables import Message
from tests.crm import automate, ok, pipeline, user
from tests.faults.cluster import Cluster, outside_world, record_figures
from tests.faults.effects import create_items, effects_done, until

ITEMS = 20
DOWN_SECONDS = 6  # after every e-mail has failed once
FINISH_BOUND = 90.0


async def attempts_per_rule(address: str, workflow_ids: list[str]) -> dict[str, list[int]]:
    """Rule activity (`rule.<type>`) → the attempts each rule took, read from the workflow histories: those of the
    call that ran it with others (`rules.outside_together`, whose summary names each of its rules) and those of its
    own activity."""
    client = await Client.connect(address)
    found: dict[str, list[int]] = {}
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        scheduled: dict[int, list[tuple[str, str]]] = {}
        tries: Counter = Counter()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                summary = json.loads(event.user_metadata.summary.data or b'""')
                scheduled[event.event_id] = re.findall(r"([^,]+?) \(([a-z_]+)\)(?:, |$)", summary)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                attributes = event.activity_task_started_event_attributes
                for rule in scheduled[attributes.scheduled_event_id]:
                    tries[rule] += attributes.attempt
        for (_name, kind), attempts in tries.items():
            found.setdefault(f"rule.{kind}", []).append(attempts)
    return found


def failed_sends(cluster: Cluster, items: list[int]) -> list[Message]:
    """The e-mails tried and waiting for their next attempt, with the error they got."""
    return [message for message in messages(cluster, items) if message.status == "queued" and message.error]


def messages(cluster: Cluster, items: list[int]) -> list[Message]:
    with Session(cluster.engine()) as session:
        return list(session.exec(select(Message).where(col(Message.item_id).in_(items))))


@pytest.mark.timeout(300)
async def test_smtp_server_and_webhook_target_down_then_back(cluster: Cluster):
    with outside_world(cluster) as (mailbox, target):
        cluster.start()
        async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
            manager = await user(http, "Manager")
            client = ok(await http.post("/contacts", json={"name": "Anna", "email": "anna@example.com"}), 201)
            flow = await pipeline(http, ["NEW", "DONE"])
            await automate(http, flow["id"], {"NEW": {"rules": [
                {"name": "mail", "type": "send_email",
                 "settings": {"subject": "Your order {{Deal.Title}}",
                              "body": "Hello {{Deal.Contact.Name}}, thank you."}},
                {"name": "erp", "type": "webhook",
                 "settings": {"url": target.url + "?deal={{Deal.Id}}", "body": {"title": "{{Deal.Title}}"},
                              "returns": ["order_no"]}},
            ]}})
            mailbox.down()
            target.down()
            went_down = time.monotonic()
            items = await create_items(http, flow["id"], manager["id"], ITEMS, contact_id=client["id"])
        engine = cluster.engine()
        expected = len(items) * 2

        failed: set[int] = set()
        tried = await until(
            lambda: failed.update(message.id for message in failed_sends(cluster, items)) or len(failed) == len(items),
            timeout=120, interval=0.1,
        )
        await asyncio.sleep(DOWN_SECONDS)
        done_while_down = effects_done(engine, items)
        mailbox.up()
        target.up()
        back = time.monotonic()
        complete = await until(lambda: effects_done(engine, items) == expected, timeout=FINISH_BOUND, interval=0.2)
        finished = time.monotonic() - back
        await asyncio.sleep(2)
        delivered = Counter(mailbox.message_ids())
        called = Counter(target.keys())

    attempts = await attempts_per_rule(cluster.temporal_address, [f"deal-{item}/entry-1" for item in items])
    sent = messages(cluster, items)
    figures = {
        "items": len(items),
        "effects_expected": expected,
        "effects_seen": sum(delivered.values()) + sum(called.values()),
        "lost": (len(items) - len(delivered)) + (len(items) - len(called)),
        "duplicated": sum(count - 1 for count in delivered.values()) + sum(count - 1 for count in called.values()),
        "emails_delivered": sum(delivered.values()),
        "webhook_calls": sum(called.values()),
        "seconds_down": round(back - went_down, 1),
        "emails_failed_while_down": len(items) if tried else "not all",
        "max_attempts_email": max(attempts.get("rule.send_email", [0])),
        "max_attempts_webhook": max(attempts.get("rule.webhook", [0])),
        "seconds_to_finish_after_back": round(finished, 1),
    }
    record_figures("outside_down", figures)
    assert done_while_down == 0
    assert tried, "every e-mail was tried while the server was down, and waited queued with the error it got"
    assert complete, figures
    assert (figures["lost"], figures["duplicated"]) == (0, 0), figures
    assert all(message.status == "sent" and message.sent_at for message in sent), [m.status for m in sent]
    assert sorted(attempts) == ["rule.send_email", "rule.webhook"]
    assert min(attempts["rule.send_email"]) > 1 and min(attempts["rule.webhook"]) > 1, attempts
    assert {request["path"] for request in target.requests} == {f"/orders?deal={item}" for item in items}
