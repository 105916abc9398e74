"""kill -9 of the worker while Telegram and WhatsApp messages are being sent.

20 deals enter a stage whose two rules write to the client on Telegram and on WhatsApp. Both providers (local
stand-ins speaking their APIs, tests/channels/providers.py) answer 503 for a while, so every send is tried and
waits for its next attempt; the worker is killed then, the providers come back, and the next worker sends the
rest: each of the 40 messages reaches its provider once, with its own text.
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from sqlmodel import Session, col, select

from models.tables import Message
from tests.channels.providers import provider_settings, providers
from tests.crm import automate, ok, pipeline, user
from tests.faults.cluster import Cluster, record_figures
from tests.faults.effects import create_items, until

ITEMS = 20


def messages(cluster: Cluster, items: list[int]) -> list[Message]:
    with Session(cluster.engine()) as session:
        return list(session.exec(select(Message).where(col(Message.item_id).in_(items))))


@pytest.mark.timeout(300)
async def test_worker_killed_while_channel_messages_are_sent(cluster: Cluster):
    with providers() as fake:
        cluster.env.update(provider_settings(fake.url))
        fake.outage = True
        cluster.start()
        async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
            manager = await user(http, "Manager")
            contact = ok(await http.post("/contacts", json={
                "name": "Anna", "channels": {"telegram": 123456789, "whatsapp": "+48601234567"}}), 201)
            flow = await pipeline(http, ["NEW", "DONE"])
            await automate(http, flow["id"], {"NEW": {"rules": [
                {"name": "tg", "type": "send_channel_message",
                 "settings": {"channel": "telegram", "text": "{{Deal.Title}} is ordered"}},
                {"name": "wa", "type": "send_channel_message",
                 "settings": {"channel": "whatsapp", "text": "{{Deal.Title}} is ordered"}},
            ]}})
            items = await create_items(http, flow["id"], manager["id"], ITEMS, contact_id=contact["id"])
            tried = await until(lambda: sum(1 for message in messages(cluster, items) if message.error) == ITEMS * 2,
                                timeout=120, interval=0.2)
            cluster.kill("worker")
            refused_before_kill = fake.refused
            fake.outage = False
            cluster.start_worker()
            sent = await until(lambda: sum(message.status == "sent" for message in messages(cluster, items))
                               == ITEMS * 2, timeout=150, interval=0.5)

    telegram = Counter(request.body["text"] for request in fake.of("telegram"))
    whatsapp = Counter(request.body["text"]["body"] for request in fake.of("whatsapp"))
    expected = {f"Order {number} is ordered" for number in range(ITEMS)}
    figures = {
        "items": ITEMS,
        "messages_expected": ITEMS * 2,
        "sends_refused_before_kill": refused_before_kill,
        "telegram_delivered": sum(telegram.values()),
        "whatsapp_delivered": sum(whatsapp.values()),
        "duplicated": sum(count - 1 for count in (*telegram.values(), *whatsapp.values())),
        "lost": len(expected - set(telegram)) + len(expected - set(whatsapp)),
        "broken_requests": len(fake.broken()),
    }
    record_figures("channels_killed", figures)
    assert tried, "every message was tried while the providers were down"
    assert sent, figures
    assert (figures["lost"], figures["duplicated"], figures["broken_requests"]) == (0, 0, 0), figures
    assert set(telegram) == expected and set(whatsapp) == expected
