"""A fixed-rate load of a CRM's day, driven through the load balancer as client systems drive it, and what must be
true of the database afterwards.

Every `1 / rate` seconds a web form creates a deal; a quarter of the deals are moved on by a person a few seconds
later, a quarter are paid (a payment trigger moves them), and the other half stay, with a date field a PATCH
moves later. The stage they are created in has four rules: a timeline note and an email at once, a note 15 s
after entry, and a note when the date field comes (counted from the field, so the PATCH moves its timer). Each
request is sent again on a connection error or a 5xx, with its `Idempotency-Key` (a PATCH sets the same value
again), as a real client does; what took more than one try is counted.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.crm import automate, ok, pipeline, user

LATER_SECONDS = 15
FOLLOW_FIRST, FOLLOW_MOVED = 25, 35
"""The date field of a staying deal: this many seconds after its creation, then (by a PATCH) this many."""
ACT_AFTER = 4.0
"""Seconds after its creation a deal is moved, paid or has its date moved."""
ATTEMPTS = 12
AMOUNT = 310.0
NEW_RULES = ("note", "mail", "later", "follow")


def automation(paid_in_full: bool = True) -> dict[str, Any]:
    """The pipeline's rules; `paid_in_full` puts on the payment trigger the condition that the payments cover the
    amount (`Deal.Paid`, which releases before 0.6.0 do not know)."""
    condition = {"field": "Deal.Paid", "op": ">=", "value": "{{Deal.Amount}}"} if paid_in_full else None
    return {
        "NEW": {"rules": [
            {"name": "note", "type": "add_timeline_entry", "settings": {"text": "Welcome {{Deal.Title}}"}},
            {"name": "mail", "type": "send_email",
             "settings": {"subject": "Your order {{Deal.Title}}", "body": "Hello {{Deal.Contact.Name}}"}},
            {"name": "later", "type": "add_timeline_entry", "delay": f"{LATER_SECONDS}s",
             "settings": {"text": "Still new"}},
            {"name": "follow", "type": "add_timeline_entry", "delay": {"field": "Fields.follow_up"},
             "settings": {"text": "Follow up {{Deal.Title}}"}},
        ]},
        "WORK": {"rules": [{"name": "work", "type": "add_timeline_entry", "settings": {"text": "Working on it"}}]},
        "PAID": {"rules": [{"name": "receipt", "type": "add_timeline_entry", "settings": {"text": "Paid"}}],
                 "triggers": [{"name": "paid", "type": "payment_received", "condition": condition}]},
    }


@dataclass
class Call:
    kind: str
    sent: float
    """Seconds since the load began, when it was first sent."""
    took: float = 0.0
    attempts: int = 0
    status: int | None = None
    answer: Any = None

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 300


@dataclass
class Deal:
    number: int
    cohort: str
    """stay, move or pay."""
    created_at: datetime
    id: int | None = None
    follow_up: datetime | None = None


@dataclass
class Load:
    url: str
    headers: dict[str, str]
    rate: float
    seconds: float
    calls: list[Call] = field(default_factory=list)
    deals: list[Deal] = field(default_factory=list)
    began: float = 0.0
    started_at: datetime | None = None
    paid_in_full: bool = True
    pipeline_id: int = 0
    manager_id: int = 0
    contact_id: int = 0

    async def prepare(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=60) as http:
            manager = await user(http, "Marek Manager")
            flow = await pipeline(http, ["NEW", "WORK", "PAID"], name="Orders")
            await automate(http, flow["id"], automation(self.paid_in_full))
            contact = ok(await http.post("/contacts", json={"name": "Anna", "email": "anna@example.com"}), 201)
        self.pipeline_id, self.manager_id, self.contact_id = flow["id"], manager["id"], contact["id"]

    def now(self) -> float:
        return time.monotonic() - self.began

    async def _send(self, http: httpx.AsyncClient, kind: str, method: str, path: str, body: dict[str, Any],
                    key: str | None) -> Call:
        call = Call(kind=kind, sent=self.now())
        self.calls.append(call)
        headers = {"Idempotency-Key": key} if key else {}
        start = time.monotonic()
        while call.attempts < ATTEMPTS:
            call.attempts += 1
            try:
                response = await http.request(method, path, json=body, headers=headers)
            except httpx.HTTPError:
                await asyncio.sleep(0.5 * call.attempts)
                continue
            call.status = response.status_code
            if response.status_code >= 500:
                await asyncio.sleep(0.5 * call.attempts)
                continue
            call.answer = response.json() if response.content else None
            break
        call.took = time.monotonic() - start
        return call

    async def _create(self, http: httpx.AsyncClient, deal: Deal) -> None:
        fields = {}
        if deal.cohort == "stay":
            deal.follow_up = deal.created_at + timedelta(seconds=FOLLOW_FIRST)
            fields["follow_up"] = deal.follow_up.isoformat()
        call = await self._send(http, "create", "POST", "/deals", {
            "title": f"Order {deal.number}", "pipeline_id": self.pipeline_id, "responsible_id": self.manager_id,
            "contact_id": self.contact_id, "amount": AMOUNT, "currency": "EUR", "fields": fields,
        }, key=f"create-{deal.number}-{uuid.uuid4().hex[:6]}")
        if call.ok:
            deal.id = call.answer["id"]
            await asyncio.sleep(ACT_AFTER)
            await self._act(http, deal)

    async def _act(self, http: httpx.AsyncClient, deal: Deal) -> None:
        if deal.cohort == "move":
            await self._send(http, "move", "POST", f"/deals/{deal.id}/move", {"stage": "WORK"},
                             key=f"move-{deal.number}")
        elif deal.cohort == "pay":
            await self._send(http, "payment", "POST", f"/deals/{deal.id}/payments",
                             {"amount": AMOUNT, "currency": "EUR"}, key=f"pay-{deal.number}")
        else:
            deal.follow_up = deal.created_at + timedelta(seconds=FOLLOW_MOVED)
            await self._send(http, "patch", "PATCH", f"/deals/{deal.id}",
                             {"fields": {"follow_up": deal.follow_up.isoformat()}}, key=None)

    async def run(self) -> None:
        """Creates deals at the rate for the time given; returns when every request is answered."""
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=30, limits=limits) as http:
            self.began = time.monotonic()
            self.started_at = datetime.now(timezone.utc)
            tasks = []
            number = 0
            while self.now() < self.seconds:
                cohort = ("stay", "move", "stay", "pay")[number % 4]
                deal = Deal(number=number, cohort=cohort, created_at=datetime.now(timezone.utc))
                self.deals.append(deal)
                tasks.append(asyncio.create_task(self._create(http, deal)))
                number += 1
                await asyncio.sleep(max(0.0, number / self.rate - self.now()))
            await asyncio.gather(*tasks)

    # -- what the run shows --------------------------------------------------------------------------

    def latency(self, since: float, until: float) -> dict[str, Any]:
        """p50 and p99 (ms, from first send to answer, retries included) of the requests sent in [since, until)."""
        took = sorted(call.took * 1000 for call in self.calls if since <= call.sent < until and call.ok)
        if not took:
            return {"requests": 0}
        return {"requests": len(took), "p50_ms": round(statistics.median(took), 1),
                "p99_ms": round(took[min(len(took) - 1, int(len(took) * 0.99))], 1)}

    def figures(self) -> dict[str, Any]:
        sent = [call for call in self.calls if call.kind == "create"]
        return {
            "seconds": round(max((call.sent for call in self.calls), default=0.0), 1),
            "deals_created_per_second": round(len(sent) / self.seconds, 2),
            "requests": len(self.calls),
            "requests_by_kind": dict(Counter(call.kind for call in self.calls)),
            "retried_requests": sum(call.attempts > 1 for call in self.calls),
            "failed_requests": sum(not call.ok for call in self.calls),
        }


# -- the checks ------------------------------------------------------------------------------------


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text(sql), params))


def outcomes(engine: Engine, pipeline_id: int) -> dict[int, dict[str, list[tuple[str, datetime]]]]:
    """Item → rule → its outcome entries (kind, when), in order."""
    found: dict[int, dict[str, list[tuple[str, datetime]]]] = defaultdict(lambda: defaultdict(list))
    for item_id, rule, kind, at in rows(engine, """
            SELECT t.item_id, t.rule_name, t.kind, t.at FROM timelineentry t JOIN item i ON i.id = t.item_id
            WHERE i.pipeline_id = :p AND t.kind IN ('rule_done', 'rule_cancelled', 'rule_failed', 'rule_skipped')
            ORDER BY t.at, t.id""", p=pipeline_id):
        found[item_id][rule].append((kind, at if at.tzinfo else at.replace(tzinfo=timezone.utc)))
    return found


def problems(load: Load, engine: Engine, mails: Counter) -> list[str]:
    """Everything that is not as the requests and the rules say it must be: an effect missing or doubled, a rule
    early, a stage change lost or doubled."""
    found: list[str] = []
    titles = Counter(title for (title,) in rows(engine, "SELECT title FROM item WHERE pipeline_id = :p",
                                                p=load.pipeline_id))
    ran = outcomes(engine, load.pipeline_id)
    entries = defaultdict(list)
    for item_id, stage in rows(engine, """
            SELECT t.item_id, t.data->>'to' FROM timelineentry t JOIN item i ON i.id = t.item_id
            WHERE i.pipeline_id = :p AND t.kind = 'stage_changed' ORDER BY t.at, t.id""", p=load.pipeline_id):
        entries[item_id].append(stage)
    entered = {item_id: at if at.tzinfo else at.replace(tzinfo=timezone.utc) for item_id, at in rows(engine, """
            SELECT t.item_id, min(t.at) FROM timelineentry t JOIN item i ON i.id = t.item_id
            WHERE i.pipeline_id = :p AND t.kind = 'stage_changed' GROUP BY t.item_id""", p=load.pipeline_id)}
    paid = dict(rows(engine, "SELECT id, paid FROM item WHERE pipeline_id = :p", p=load.pipeline_id))
    for deal in load.deals:
        title = f"Order {deal.number}"
        if deal.id is None:
            found.append(f"{title}: its create was never answered")
            continue
        if titles[title] != 1:
            found.append(f"{title}: {titles[title]} deals")
        rules = ran.get(deal.id, {})
        expected_path = {"stay": ["NEW"], "move": ["NEW", "WORK"], "pay": ["NEW", "PAID"]}[deal.cohort]
        if entries.get(deal.id) != expected_path:
            found.append(f"{title} ({deal.cohort}): stages {entries.get(deal.id)}, not {expected_path}")
        for rule in ("note", "mail"):
            if [kind for kind, _ in rules.get(rule, [])] != ["rule_done"]:
                found.append(f"{title}: {rule} {rules.get(rule)}")
        if mails[title] != 1:
            found.append(f"{title}: {mails[title]} emails reached the SMTP server")
        if deal.cohort == "stay":
            later, follow = rules.get("later", []), rules.get("follow", [])
            if [kind for kind, _ in later] != ["rule_done"]:
                found.append(f"{title}: later {later}")
            elif deal.id in entered and later[0][1] < entered[deal.id] + timedelta(seconds=LATER_SECONDS):
                found.append(f"{title}: later done at {later[0][1]}, before its due time")
            if [kind for kind, _ in follow] != ["rule_done"]:
                found.append(f"{title}: follow {follow}")
            elif follow[0][1] < deal.follow_up:
                found.append(f"{title}: follow done at {follow[0][1]}, before its field's {deal.follow_up}")
        else:
            moved_rule = "work" if deal.cohort == "move" else "receipt"
            if [kind for kind, _ in rules.get(moved_rule, [])] != ["rule_done"]:
                found.append(f"{title}: {moved_rule} {rules.get(moved_rule)}")
            for rule in ("later", "follow"):
                if [kind for kind, _ in rules.get(rule, [])] != ["rule_cancelled"]:
                    found.append(f"{title}: {rule} {rules.get(rule)} (it left NEW before)")
        if deal.cohort == "pay" and load.paid_in_full and paid.get(deal.id) != AMOUNT:
            found.append(f"{title}: paid {paid.get(deal.id)}, not {AMOUNT}")
    return found


def due_rules_done(engine: Engine, pipeline_id: int, count: int) -> bool:
    """Whether `count` deals have all their rules settled (done or cancelled)."""
    (settled,) = rows(engine, """
        SELECT count(*) FROM timelineentry t JOIN item i ON i.id = t.item_id
        WHERE i.pipeline_id = :p AND t.kind IN ('rule_done', 'rule_cancelled')""", p=pipeline_id)[0]
    return settled >= count


def expected_outcomes(load: Load) -> int:
    """How many rule outcomes the deals' stories hold in the end."""
    return sum(4 if deal.cohort == "stay" else 5 for deal in load.deals if deal.id is not None)


def lateness_after(engine: Engine, pipeline_id: int, load: Load, since: float, until: float) -> float:
    """The largest lateness (s) of the delayed rules due in [since, until) seconds of the load."""
    start = load.started_at
    worst = 0.0
    for due, done in rows(engine, """
            SELECT (s.data->>'due'), d.at FROM timelineentry s
            JOIN timelineentry d ON d.item_id = s.item_id AND d.rule_name = s.rule_name AND d.kind = 'rule_done'
            JOIN item i ON i.id = s.item_id
            WHERE i.pipeline_id = :p AND s.kind = 'rule_scheduled' AND s.rule_name = 'later'""", p=pipeline_id):
        if not due:
            continue
        due_at = datetime.fromisoformat(due)
        done = done if done.tzinfo else done.replace(tzinfo=timezone.utc)
        if start + timedelta(seconds=since) <= due_at < start + timedelta(seconds=until):
            worst = max(worst, (done - due_at).total_seconds())
    return round(worst, 1)


def due_after(engine: Engine, pipeline_id: int, moment: datetime, titles: set[str]) -> list[tuple[str, str]]:
    """(deal title, rule) of the delayed rules of these deals that were due after `moment`, and done."""
    found = []
    for title, rule, due in rows(engine, """
            SELECT i.title, s.rule_name, coalesce(s.data->>'due', s.data->>'to') FROM timelineentry s
            JOIN item i ON i.id = s.item_id
            WHERE i.pipeline_id = :p AND s.kind IN ('rule_scheduled', 'rule_rescheduled')
            AND s.rule_name IN ('later', 'follow')""", p=pipeline_id):
        if title in titles and due and datetime.fromisoformat(due) > moment:
            found.append((title, rule))
    return sorted(set(found))
