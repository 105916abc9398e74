"""kill -9 of the API between accepting a request and answering it; the client retries on a new API process.

Each client sends its move (then its payment) with an `Idempotency-Key`, and the API is killed as soon as the
engine has applied the first of them, before any answer is read. A move is answered only once its stage has
changed, so the moves die half done; a payment is answered once its event is handed over, and an answer can
also be lost on the way, so every client retries, answered or not. The retry of the same request with the same
key must not move the item a second time: each item ends NEW → WORK → PAID, and a payment counted twice would
push it on to DONE.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest
from sqlmodel import Session, col, select

from models.tables import Item, TimelineEntry
from tests.crm import automate, pipeline, user
from tests.faults.cluster import Cluster, record_figures
from tests.faults.effects import create_items, until

ITEMS = 20


class Pending:
    """One request written to the API on its own connection; its answer is read only after the kill."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def status(self) -> int | None:
        """The status code the API answered before it died, or None when the connection closed unanswered."""
        try:
            data = await asyncio.wait_for(self.reader.read(), timeout=10)
        except (ConnectionError, asyncio.TimeoutError):
            data = b""
        finally:
            self.writer.close()
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None


async def send(cluster: Cluster, path: str, body: dict, key: str) -> Pending:
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.api_port)
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{cluster.api_port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nAuthorization: Bearer {cluster.api_key}\r\n"
        f"Idempotency-Key: {key}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
    return Pending(reader, writer)


def stages_entered(cluster: Cluster, items: list[int]) -> dict[int, list[str]]:
    with Session(cluster.engine()) as session:
        entries = session.exec(
            select(TimelineEntry).where(TimelineEntry.kind == "stage_changed", col(TimelineEntry.item_id).in_(items))
            .order_by(TimelineEntry.item_id, TimelineEntry.entry_no)
        ).all()
    found: dict[int, list[str]] = {item: [] for item in items}
    for entry in entries:
        found[entry.item_id].append(entry.data["to"])
    return found


def in_stage(cluster: Cluster, items: list[int], stage: str) -> int:
    with Session(cluster.engine()) as session:
        return len(session.exec(select(Item.id).where(col(Item.id).in_(items), Item.stage == stage)).all())


async def kill_mid_request(
    cluster: Cluster, requests: list[tuple[str, dict, str]], stage: str, items: list[int]
) -> dict:
    """Sends every request, kills the API once the engine has applied the first of them, then reads what came back."""
    pending = [await send(cluster, path, body, key) for path, body, key in requests]
    await until(lambda: in_stage(cluster, items, stage) > 0, timeout=30, interval=0.01)
    applied_at_kill = in_stage(cluster, items, stage)
    cluster.kill("api")
    answered = [await request.status() for request in pending]
    return {"answered": sum(status is not None for status in answered), "applied_at_kill": applied_at_kill}


@pytest.mark.timeout(300)
async def test_api_killed_before_answering_a_move_and_a_payment(cluster: Cluster):
    cluster.start()
    async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
        manager = await user(http, "Manager")
        flow = await pipeline(http, ["NEW", "WORK", "PAID", "DONE"])
        await automate(http, flow["id"], {
            "WORK": {"rules": [
                {"name": "note", "type": "add_timeline_entry", "settings": {"text": "Work on {{Deal.Title}}"}},
            ]},
            "PAID": {"triggers": [{"name": "paid", "type": "payment_received"}]},
            "DONE": {"triggers": [{"name": "paid again", "type": "payment_received"}]},
        })
        items = await create_items(http, flow["id"], manager["id"], ITEMS)

    moves = [(f"/deals/{item}/move", {"stage": "WORK"}, f"move-{item}") for item in items]
    payments = [(f"/deals/{item}/payments", {"amount": 100}, f"payment-{item}") for item in items]
    retried: Counter = Counter()
    batches = {}
    for name, requests, stage, ok_status in (("moves", moves, "WORK", 200), ("payments", payments, "PAID", 202)):
        batches[name] = await kill_mid_request(cluster, requests, stage, items)
        cluster.start_api()
        async with httpx.AsyncClient(base_url=cluster.api_url, headers=cluster.headers, timeout=60) as http:
            for path, body, key in requests:
                response = await http.post(path, json=body, headers={"Idempotency-Key": key})
                retried[(name, response.status_code)] += 1
                assert response.status_code == ok_status, (path, response.text)
                if name == "moves":
                    assert response.json()["stage"] == "WORK", response.text
        await until(lambda stage=stage: in_stage(cluster, items, stage) == len(items), timeout=60, interval=0.2)

    time.sleep(2)
    entered = stages_entered(cluster, items)
    with Session(cluster.engine()) as session:
        notes = Counter(session.exec(
            select(TimelineEntry.item_id).where(TimelineEntry.kind == "comment", col(TimelineEntry.item_id).in_(items))
        ).all())
    expected_path = ["NEW", "WORK", "PAID"]
    changes_seen = sum(len(path) - 1 for path in entered.values())
    figures = {
        "items": len(items),
        "requests": len(moves) + len(payments),
        "moves_answered_before_kill": batches["moves"]["answered"],
        "moves_applied_at_kill": batches["moves"]["applied_at_kill"],
        "payments_answered_before_kill": batches["payments"]["answered"],
        "payments_applied_at_kill": batches["payments"]["applied_at_kill"],
        "effects_expected": 2 * len(items),
        "effects_seen": changes_seen,
        "lost": sum(1 for path in entered.values() for stage in ("WORK", "PAID") if stage not in path),
        "duplicated": sum(max(0, len(path) - len(expected_path)) for path in entered.values()),
        "retries_answered_ok": retried[("moves", 200)] + retried[("payments", 202)],
    }
    record_figures("api_killed", figures)
    assert all(path == expected_path for path in entered.values()), {
        item: path for item, path in entered.items() if path != expected_path}
    assert all(notes[item] == 1 for item in items), notes
    assert batches["moves"]["answered"] < len(items), figures
    assert batches["payments"]["applied_at_kill"] > 0, figures
