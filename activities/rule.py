"""What a rule type's `run` works with: its context (`RuleContext`), its dependencies (`Deps`) and its expected
failure (`RuleFailed`).

A handler reads its validated settings from `ctx.settings`, the item's data tree from `ctx.data`, renders texts
with `ctx.render`, and writes through `ctx.finish(work)`, which records the rule as done in the same transaction
as its last write. Everything it writes is keyed by `ctx.effect_key` (or `ctx.key(part)`), so a retry finds it.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity

from activities import keys
from activities.metrics import RuleMetrics
from activities.transports.senders import Transports
from models.db import session_scope
from models.domain import placeholders
from models.domain.events import Event
from models.settings import Settings
from models.store import get_by
from models.tables import Callback, Item
from workflows.types import ItemEvent, ItemMove, RuleCall, RuleOutcome, WaitSpec

S = TypeVar("S", bound=BaseModel)


class RuleFailed(Exception):
    """A rule cannot take effect because of its data or configuration; retrying will not help."""


@dataclass
class Deps:
    """What rule effects may use. Built once per worker."""

    settings: Settings
    database: Engine
    client: Any | None = None
    """The Temporal client, for rules that start other items' workflows."""
    transports: Transports = field(default_factory=Transports)
    """How rules reach the outside: the real senders, or a simulation's recorders."""
    metrics: RuleMetrics = field(default_factory=RuleMetrics)
    """Where rule outcomes are counted: the worker's metrics endpoint, or nowhere."""

    async def db(self, work: Callable[[Session], Any]) -> Any:
        """Run `work(session)` in a thread, inside one transaction."""

        def run() -> Any:
            with session_scope(self.database) as session:
                return work(session)

        return await asyncio.to_thread(run)

    def in_session(self, session: Session) -> Deps:
        """The same dependencies, with database work done at once in `session` (one transaction for several
        rules, in the thread that holds it)."""
        return InSession(**{part.name: getattr(self, part.name) for part in fields(Deps)}, session=session)


@dataclass
class InSession(Deps):
    session: Session | None = None

    async def db(self, work: Callable[[Session], Any]) -> Any:
        """Runs `work(session)` at once in the open session; it commits with the others."""
        return work(self.session)


@dataclass
class RuleContext(Generic[S]):
    deps: Deps
    call: RuleCall
    settings: S
    """The rule's settings, validated by its type's settings model."""
    data: dict[str, Any]
    item: Item
    events: list[ItemEvent] = field(default_factory=list)
    moves: list[ItemMove] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    wait: WaitSpec | None = None
    changed: list[str] = field(default_factory=list)
    """Item fields this rule changed (`close_date`, `Fields.<name>`): delays counted from them follow."""
    record: Callable[[Session, RuleOutcome], None] | None = None
    recorded: RuleOutcome | None = None
    empty: list[str] = field(default_factory=list)
    """The placeholders this rule's texts rendered as nothing (no value): its `rule_done` entry names them."""

    @property
    def effect_key(self) -> str:
        return keys.effect_key(self.call.workflow_id, self.call.rule.name)

    def key(self, *parts: str | int) -> str:
        """The key of one thing this rule writes, below its effect key."""
        return keys.part_key(self.effect_key, *parts)

    @property
    def rule_name(self) -> str:
        return self.call.rule.name

    @property
    def attempt(self) -> int:
        """The rule's attempt running now, counting those made in a `rules.outside_together` call (1 outside an
        activity)."""
        try:
            return activity.info().attempt + self.call.attempts_before
        except RuntimeError:
            return 1

    @property
    def rule_type(self) -> str:
        return self.call.rule.type

    @property
    def entity(self) -> str:
        return self.call.entity

    @property
    def item_id(self) -> int:
        return self.call.item_id

    @property
    def pipeline_id(self) -> int:
        return self.call.pipeline_id

    @property
    def stage(self) -> str:
        return self.call.stage

    @property
    def entry_no(self) -> int:
        return self.call.entry_no

    @property
    def workflow_id(self) -> str:
        return self.call.workflow_id

    @property
    def at(self) -> datetime:
        return self.call.at

    def render(self, text: str | None) -> str:
        rendered = placeholders.render(text or "", self.data)
        self._note_empty(text)
        return rendered

    def render_value(self, value: Any) -> Any:
        """A setting's value with its placeholders filled in (a single placeholder keeps its value's type)."""
        rendered = placeholders.render_value(value, self.data)
        self._note_empty(value)
        return rendered

    def _note_empty(self, value: Any) -> None:
        for path in placeholders.empty_placeholders(value, self.data):
            if path not in self.empty:
                self.empty.append(path)

    def user_id(self, value: Any, field: str) -> int:
        """The user id a setting names: an id, or one placeholder that yields one (`{{Constants.Boss}}`);
        RuleFailed naming the setting `field` otherwise. Whether the user exists is for the caller to check."""
        try:
            return placeholders.resolve_user_ref(value, self.data)
        except placeholders.UnresolvedPlaceholder as error:
            raise RuleFailed(f"settings.{field}: {error}") from None

    async def db(self, work: Callable[[Session], Any]) -> Any:
        return await self.deps.db(work)

    def outcome(self, result: dict[str, Any] | None) -> RuleOutcome:
        return RuleOutcome(
            status="done", result=dict(result or {}), variables=dict(self.variables), events=list(self.events),
            moves=list(self.moves), wait=self.wait, changed=list(self.changed),
        )

    async def finish(self, work: Callable[[Session], dict[str, Any]]) -> dict[str, Any]:
        """The rule's last step: `work(session)` gives its result, and the rule is recorded as done in the same
        transaction, so its rows and its record commit together. Nothing may change the outcome afterwards."""

        def run(session: Session) -> dict[str, Any]:
            outcome = self.outcome(work(session))
            if self.record is not None:
                self.record(session, outcome)
            self.recorded = outcome
            return outcome.result

        return await self.db(run)

    def emit_event(self, event: Event, *, suffix: str = "") -> None:
        """An event this rule produces on purpose (e.g. a task it completed), for the item's triggers."""
        event_id = self.key("event", event.type, suffix or len(self.events))
        self.events.append(ItemEvent(type=event.type, data=event.data(), event_id=event_id))

    def request_move(self, stage: str) -> None:
        self.moves.append(ItemMove(stage=stage, reason="rule", rule=self.rule_name, request_id=self.key("move")))

    async def callback_url(self, timeout_seconds: float) -> str:
        """A one-time URL for the outside system's answer; after this rule, the stage entry waits for it
        (at most `timeout_seconds`) and the answer's values become this rule's results. Retries of the
        rule get the same URL."""
        def register(session: Session) -> str:
            existing = get_by(session, Callback, effect_key=self.effect_key)
            if existing is not None:
                return existing.token
            token = secrets.token_urlsafe(32)
            session.add(Callback(
                token=token, token_hash=hashlib.sha256(token.encode()).hexdigest(), effect_key=self.effect_key,
                workflow_id=self.workflow_id, rule_name=self.rule_name, item_id=self.item_id,
                expires_at=self.at + timedelta(seconds=timeout_seconds),
            ))
            return token

        token = await self.db(register)
        self.wait = WaitSpec(kind="callback", timeout_seconds=timeout_seconds)
        return f"{self.deps.settings.effective_public_url}/callbacks/{token}"

    def wait_for_fields(self, fields: list[str], timeout_seconds: float | None) -> None:
        """After this rule, the stage entry waits until one of `fields` changes or the time passes."""
        self.wait = WaitSpec(kind="fields", timeout_seconds=timeout_seconds, fields=list(fields))

    def set_variable(self, name: str, value: Any) -> None:
        self.variables[name] = value
        self.data.setdefault("Variables", {})[name] = value
