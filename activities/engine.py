"""The engine's activities: enter a stage, plan a stage entry, match triggers, run one rule.

Every rule runs through `RuleRunner`, which makes its effect idempotent: the key
`<entry workflow id>/<rule name>` is recorded in the `effect` table with the outcome, so a retry,
a crashed worker or a reset in the Temporal UI returns the recorded outcome instead of acting twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities import conditions, placeholders, timing, triggers
from activities.context import build_data, date_fields
from activities.store import add_timeline, get_by, insert_once
from models.automation import AutomationConfig, RuleConfig, parse_delay
from models.db import session_scope
from models.rule_types import RULE_TYPES
from models.settings import Settings
from models.tables import (
    Activity, Automation, Callback, CustomRuleType, Effect, Item, SettingsRecord, Stage, TimelineEntry,
)
from workflows.types import (
    EnterCall,
    EntryFinish,
    EntryInput,
    EntryPlan,
    ItemEvent,
    MatchCall,
    MatchResult,
    MoveRequest,
    RuleCall,
    RuleFailure,
    RuleOutcome,
    RulePlan,
    ScheduleCall,
    WaitEnded,
    WaitSpec,
    item_workflow_id,
)

RULE_DEPENDENCY = "Rule."
STORED_PREFIX = "<kept in the database: "
VARIABLE_DEPENDENCY = "Variables."


class RuleFailed(Exception):
    """A rule cannot take effect because of its data or configuration; retrying will not help."""


@dataclass
class Deps:
    """What rule effects may use. Built once per worker."""

    settings: Settings
    engine: Engine
    client: Client | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    async def db(self, work: Callable[[Session], Any]) -> Any:
        """Run `work(session)` in a thread, inside one transaction."""

        def run() -> Any:
            with session_scope(self.engine) as session:
                return work(session)

        return await asyncio.to_thread(run)


@dataclass
class RuleContext:
    deps: Deps
    call: RuleCall
    data: dict[str, Any]
    item: Item
    events: list[ItemEvent] = field(default_factory=list)
    moves: list[MoveRequest] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    wait: WaitSpec | None = None
    record: Callable[[Session, RuleOutcome], None] | None = None
    recorded: RuleOutcome | None = None

    @property
    def effect_key(self) -> str:
        return f"{self.call.workflow_id}/{self.call.rule.name}"

    @property
    def settings(self) -> dict[str, Any]:
        return self.call.rule.settings

    @property
    def rule_name(self) -> str:
        return self.call.rule.name

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
        return placeholders.render(text or "", self.data)

    def session(self):
        return session_scope(self.deps.engine)

    async def db(self, work: Callable[[Session], Any]) -> Any:
        return await self.deps.db(work)

    def outcome(self, result: dict[str, Any] | None) -> RuleOutcome:
        return RuleOutcome(
            status="done", result=dict(result or {}), variables=dict(self.variables), events=list(self.events),
            moves=list(self.moves), wait=self.wait,
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

    def emit_event(self, type: str, data: dict[str, Any], *, suffix: str = "") -> None:
        """An event this rule produces on purpose (e.g. a task it completed), for the item's triggers."""
        event_id = f"{self.effect_key}/event/{type}/{suffix or len(self.events)}"
        self.events.append(ItemEvent(type=type, data=data, event_id=event_id))

    def request_move(self, stage: str) -> None:
        self.moves.append(
            MoveRequest(stage=stage, reason="rule", rule=self.rule_name, request_id=f"{self.effect_key}/move")
        )

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


Handler = Callable[[RuleContext], Awaitable[dict[str, Any]]]


def _rule_text(rule: RulePlan) -> str:
    return f"{rule.name} ({rule.type})"


def _dependencies(rule: RuleConfig, earlier: set[str], setters: dict[str, str]) -> list[str]:
    """Earlier rules whose results or variables this rule reads: it waits for them to finish."""
    texts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for inner in value.values():
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(rule.settings)
    walk(_dump(rule.condition))
    needed: list[str] = []
    for text in texts:
        paths = placeholders.find_placeholders(text)
        if text.startswith((RULE_DEPENDENCY, VARIABLE_DEPENDENCY)):
            paths.append(text)
        for path in paths:
            name = None
            if path.startswith(RULE_DEPENDENCY):
                name = path[len(RULE_DEPENDENCY):].rsplit(".", 1)[0]
            elif path.startswith(VARIABLE_DEPENDENCY):
                name = setters.get(path[len(VARIABLE_DEPENDENCY):].split(".", 1)[0])
            if name in earlier and name not in needed:
                needed.append(name)
    return needed


def _variable_set_by(rule: RuleConfig) -> str | None:
    kind = RULE_TYPES.get(rule.type)
    if kind is None or kind.sets_variable is None:
        return None
    try:
        return kind.variable_name(rule.typed_settings())
    except (KeyError, ValueError):
        return None


def load_calendar(session: Session) -> timing.CalendarSpec:
    record = session.get(SettingsRecord, "calendar")
    return timing.CalendarSpec(**record.value) if record and record.value else timing.CalendarSpec()


def load_automation(session: Session, pipeline_id: int) -> tuple[AutomationConfig, int]:
    row = session.get(Automation, pipeline_id)
    if row is None:
        return AutomationConfig(), 0
    return AutomationConfig.model_validate(row.config), row.version


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json", exclude_none=True) if hasattr(value, "model_dump") else value


class EngineActivities:
    """Activities the workflows call to read and write the CRM. Rule effects come from a catalogue."""

    def __init__(self, deps: Deps, handlers: dict[str, Handler]) -> None:
        self.deps = deps
        self.handlers = handlers

    def all(self) -> list[Callable]:
        return [
            self.enter_stage,
            self.begin_entry,
            self.schedule_rule,
            self.match_trigger,
            self.record_rule_failed,
            self.record_wait_end,
            self.finish_entry,
            *(self._rule_activity(name, handler) for name, handler in self.handlers.items()),
        ]

    # -- stage changes -------------------------------------------------------------------------

    @activity.defn(name="enter_stage")
    async def enter_stage(self, call: EnterCall) -> None:
        await self.deps.db(lambda session: self._enter_stage(session, call))

    def _enter_stage(self, session: Session, call: EnterCall) -> None:
        item = session.get(Item, call.item_id, with_for_update=True)
        if item is None:
            raise ApplicationError(f"{call.entity} {call.item_id} does not exist", type="UnknownItem", non_retryable=True)
        if item.entry_no >= call.entry_no:
            return
        item.stage, item.entry_no, item.stage_changed_at, item.updated_at = call.stage, call.entry_no, call.at, call.at
        session.add(item)
        by = {
            "created": "created",
            "manual": "moved by user",
            "trigger": f"moved by trigger {call.trigger}",
            "rule": f"moved by rule {call.rule}",
        }.get(call.reason, call.reason)
        author = call.as_user_id or (item.responsible_id if call.reason == "trigger" else None)
        text = f"Stage {call.previous_stage or '—'} → {call.stage} ({by})"
        add_timeline(
            session,
            item.id,
            "stage_changed",
            text,
            at=call.at,
            key=_stage_change_key(call.entity, call.item_id, call.entry_no),
            author_id=author,
            entry_no=call.entry_no,
            **{"from": call.previous_stage, "to": call.stage, "reason": call.reason, "trigger": call.trigger,
               "event": call.event_type, "rule": call.rule},
        )
        for todo in session.exec(
            select(Activity).where(
                Activity.item_id == item.id, Activity.completed == False,  # noqa: E712
                Activity.complete_on_stage_change == True,  # noqa: E712
            )
        ):
            todo.completed, todo.completed_at = True, call.at
            session.add(todo)

    # -- planning ------------------------------------------------------------------------------

    @activity.defn(name="begin_entry")
    async def begin_entry(self, entry: EntryInput) -> EntryPlan:
        return await self.deps.db(lambda session: self._begin_entry(session, entry))

    def _begin_entry(self, session: Session, entry: EntryInput) -> EntryPlan:
        config, version = load_automation(session, entry.pipeline_id)
        stage = config.stages.get(entry.stage)
        item = session.get(Item, entry.item_id)
        custom = {row.name for row in session.exec(select(CustomRuleType))}
        calendar = load_calendar(session)
        settings = self.deps.settings
        plan = EntryPlan(
            constants=dict(config.constants),
            variables=dict(config.variables),
            config_version=version,
            retry_initial_seconds=settings.rule_retry_initial_seconds,
            retry_max_attempts=settings.rule_max_attempts,
            heartbeat_seconds=settings.rule_heartbeat_seconds,
        )
        if stage is None or item is None:
            return plan
        workflow_id = activity.info().workflow_id
        earlier: set[str] = set()
        setters: dict[str, str] = {}
        previous: str | None = None
        for index, rule in enumerate(stage.rules):
            kind = RULE_TYPES.get(rule.type)
            plan_rule = RulePlan(
                index=index,
                name=rule.name,
                type=rule.type,
                activity=f"rule.{rule.type}" if rule.type in self.handlers else "rule.custom",
                start=rule.start if previous is not None else "on_entry",
                delay=_dump(rule.delay),
                condition=_dump(rule.condition),
                settings=dict(rule.settings),
                auxiliary=bool(kind.auxiliary) if kind else rule.type in custom,
                depends_on=_dependencies(rule, earlier, setters),
                wait_for=previous if rule.start == "after_previous" else None,
                local=bool(kind and kind.local) and rule.type in self.handlers,
            )
            if plan_rule.start == "on_entry":
                plan_rule.due = self._due(session, item, rule, entry.entered_at, calendar)
                self._record_scheduled(session, item, entry.entry_no, workflow_id, plan_rule, entry.entered_at)
            plan.rules.append(plan_rule)
            earlier.add(rule.name)
            if (variable := _variable_set_by(rule)) is not None:
                setters[variable] = rule.name
            previous = rule.name
        return plan

    @staticmethod
    def _due(session: Session, item: Item, rule: RuleConfig | RulePlan, base: datetime, calendar) -> datetime:
        delay = rule.delay if isinstance(rule, RuleConfig) else parse_delay(rule.delay)
        if delay is None:
            return base
        try:
            return timing.compute_due(delay, base=base, item=date_fields(item), calendar=calendar)
        except timing.DueTimeError as error:
            activity.logger.warning("rule %s: %s; it runs at once", rule.name, error)
            return base

    @staticmethod
    def _record_scheduled(session: Session, item: Item, entry_no: int, workflow_id: str, rule: RulePlan, at: datetime) -> None:
        due = rule.due or at
        when = "now" if due <= at else f"due {due.isoformat()}"
        add_timeline(
            session,
            item.id,
            "rule_scheduled",
            f"Rule {_rule_text(rule)} scheduled, {when}",
            at=at,
            key=f"{workflow_id}/{rule.name}/scheduled",
            rule_name=rule.name,
            entry_no=entry_no,
            due=due.isoformat(),
            start=rule.start,
            workflow_id=workflow_id,
        )

    @activity.defn(name="schedule_rule")
    async def schedule_rule(self, call: ScheduleCall) -> datetime:
        def work(session: Session) -> datetime:
            item = session.get(Item, call.item_id)
            call.rule.due = self._due(session, item, call.rule, call.base, load_calendar(session))
            self._record_scheduled(session, item, call.entry_no, call.workflow_id, call.rule, call.base)
            return call.rule.due

        return await self.deps.db(work)

    # -- triggers ------------------------------------------------------------------------------

    @activity.defn(name="match_trigger")
    async def match_trigger(self, call: MatchCall) -> MatchResult:
        """The first trigger the event matches; with `enter_entry_no`, the item also enters that trigger's stage."""
        def work(session: Session) -> MatchResult:
            item = session.get(Item, call.item_id, with_for_update=bool(call.enter_entry_no))
            if item is None or call.stage is None:
                return MatchResult()
            if call.enter_entry_no and item.entry_no >= call.enter_entry_no:
                return self._entered_before(session, call)
            config, _ = load_automation(session, call.pipeline_id)
            order = [
                stage.code
                for stage in session.exec(
                    select(Stage).where(Stage.pipeline_id == call.pipeline_id).order_by(Stage.position, Stage.id)
                )
            ]
            data = build_data(session, item, constants=config.constants, variables=config.variables)
            found = triggers.first_match(config, order, call.stage, call.event, data)
            if found is None:
                return MatchResult()
            stage, trigger = found
            match = MatchResult(stage=stage, trigger=trigger.name, as_user_id=trigger.as_user_id)
            if call.enter_entry_no and stage != call.stage:
                self._enter_stage(session, EnterCall(
                    item_id=call.item_id, entity=call.entity, stage=stage, previous_stage=call.stage,
                    entry_no=call.enter_entry_no, at=call.at, reason="trigger", as_user_id=trigger.as_user_id,
                    trigger=trigger.name, event_type=call.event.type,
                ))
                match.entered = True
            return match

        return await self.deps.db(work)

    @staticmethod
    def _entered_before(session: Session, call: MatchCall) -> MatchResult:
        """An earlier run of this same step matched and entered (its workflow task was lost): its stage change,
        read back, rather than a new match on data that already shows the new stage."""
        entered = get_by(session, TimelineEntry, key=_stage_change_key(call.entity, call.item_id, call.enter_entry_no))
        if entered is None:
            raise ApplicationError(f"entry {call.enter_entry_no} has no stage change on record", type="EntryMissing")
        return MatchResult(stage=entered.data["to"], trigger=entered.data.get("trigger"), entered=True)

    # -- outcomes ------------------------------------------------------------------------------

    @activity.defn(name="record_rule_failed")
    async def record_rule_failed(self, failure: RuleFailure) -> None:
        link = self.deps.settings.workflow_ui_link(failure.workflow_id)

        def work(session: Session) -> None:
            attempt = session.exec(
                select(Effect).where(Effect.key == f"{failure.workflow_id}/{failure.rule}")
            ).first()
            if attempt is not None:
                return
            add_timeline(
                session,
                failure.item_id,
                "rule_failed",
                f"Rule {failure.rule} ({failure.rule_type}) failed: {failure.error}",
                at=failure.at,
                rule_name=failure.rule,
                entry_no=failure.entry_no,
                error=failure.error,
                workflow_id=failure.workflow_id,
                workflow_url=link,
            )

        await self.deps.db(work)

    @activity.defn(name="record_wait_end")
    async def record_wait_end(self, ended: WaitEnded) -> None:
        if ended.timed_out:
            kind = "rule_timed_out"
        else:
            kind = "rule_callback_received" if ended.kind == "callback" else "rule_wait_ended"
        text = f"Rule {ended.rule}: {ended.detail}" + ("; going on" if ended.timed_out else "")

        def work(session: Session) -> None:
            add_timeline(
                session, ended.item_id, kind, text, at=ended.at, key=f"{ended.workflow_id}/{ended.rule}/wait-ended",
                rule_name=ended.rule, entry_no=ended.entry_no, timed_out=ended.timed_out,
            )

        await self.deps.db(work)

    @activity.defn(name="finish_entry")
    async def finish_entry(self, finish: EntryFinish) -> None:
        def work(session: Session) -> None:
            cancelled = list(finish.cancelled)
            if finish.before_plan and finish.pipeline_id is not None:
                config, _ = load_automation(session, finish.pipeline_id)
                stage = config.stages.get(finish.stage or "")
                cancelled = [rule.name for rule in stage.rules] if stage else []
            for name in cancelled:
                add_timeline(
                    session,
                    finish.item_id,
                    "rule_cancelled",
                    f"Rule {name} cancelled: the item left the stage",
                    at=finish.at,
                    key=f"{finish.workflow_id}/{name}/cancelled",
                    rule_name=name,
                    entry_no=finish.entry_no,
                )
            for name, reason in finish.skipped.items():
                add_timeline(
                    session,
                    finish.item_id,
                    "rule_skipped",
                    f"Rule {name} skipped: {reason}",
                    at=finish.at,
                    key=f"{finish.workflow_id}/{name}/skipped",
                    rule_name=name,
                    entry_no=finish.entry_no,
                    reason=reason,
                )

        await self.deps.db(work)

    # -- rules ---------------------------------------------------------------------------------

    def _rule_activity(self, rule_type: str, handler: Handler) -> Callable:
        runner = RuleRunner(self.deps, handler)

        async def run(call: RuleCall) -> RuleOutcome:
            return await runner.run(call)

        run.__name__ = f"rule_{rule_type}"
        return activity.defn(name=f"rule.{rule_type}")(run)


class RuleRunner:
    """Runs one rule exactly once per stage entry: checks the entry, the condition, then the effect."""

    def __init__(self, deps: Deps, handler: Handler) -> None:
        self.deps = deps
        self.handler = handler

    async def run(self, call: RuleCall) -> RuleOutcome:
        info = activity.info() if activity.in_activity() else None
        beating = None
        if info is not None and not info.is_local and info.heartbeat_timeout:
            beating = asyncio.create_task(_heartbeat(info.heartbeat_timeout.total_seconds() / 3))
        try:
            return _in_history(call, await self._run(call))
        finally:
            if beating is not None:
                beating.cancel()

    async def _run(self, call: RuleCall) -> RuleOutcome:
        key = f"{call.workflow_id}/{call.rule.name}"
        ready = await self.deps.db(lambda session: self._before(session, call, key))
        if isinstance(ready, RuleOutcome):
            return ready
        item, data = ready
        context = RuleContext(deps=self.deps, call=call, data=data, item=item)
        context.record = lambda session, outcome: self._after(session, call, key, outcome)
        try:
            result = await self.handler(context)
        except RuleFailed as error:
            raise ApplicationError(str(error), type="RuleFailed", non_retryable=True) from error
        except placeholders.UnresolvedPlaceholder as error:
            raise ApplicationError(f"placeholder cannot resolve: {error}", type="RuleFailed", non_retryable=True) from error
        outcome = context.outcome(result)
        if context.recorded is None:
            await self.deps.db(lambda session: self._after(session, call, key, outcome))
        elif context.recorded != outcome:
            raise RuntimeError(f"rule type {call.rule.type} changed its outcome after finishing")
        return outcome

    def _before(self, session: Session, call: RuleCall, key: str) -> RuleOutcome | tuple[Item, dict]:
        recorded = session.get(Effect, key)
        if recorded is not None:
            return _outcome_from(recorded)
        item = session.get(Item, call.item_id)
        if item is None or item.entry_no != call.entry_no:
            add_timeline(
                session, call.item_id, "rule_cancelled", f"Rule {_rule_text(call.rule)} cancelled: the item left the stage",
                at=call.at, key=f"{key}/cancelled", rule_name=call.rule.name, entry_no=call.entry_no,
            )
            return RuleOutcome(status="cancelled", reason="the item left the stage")
        results = _stored_results(session, call)
        data = build_data(session, item, constants=call.constants, variables=call.variables, results=results)
        if call.rule.condition:
            passed, reason = conditions.evaluate(call.rule.condition, data)
            if not passed:
                outcome = RuleOutcome(status="skipped", reason=reason)
                session.add(Effect(key=key, item_id=item.id, rule_type=call.rule.type, status="skipped",
                                   result={"reason": reason}))
                add_timeline(
                    session, item.id, "rule_skipped", f"Rule {_rule_text(call.rule)} skipped: {reason}",
                    at=call.at, key=f"{key}/skipped", rule_name=call.rule.name, entry_no=call.entry_no, reason=reason,
                )
                return outcome
        return item, data

    def _after(self, session: Session, call: RuleCall, key: str, outcome: RuleOutcome) -> None:
        effect = Effect(
            key=key,
            item_id=call.item_id,
            rule_type=call.rule.type,
            status="done",
            result={
                "result": outcome.result,
                "variables": outcome.variables,
                "events": [vars(event) for event in outcome.events],
                "moves": [vars(move) for move in outcome.moves],
                "wait": vars(outcome.wait) if outcome.wait else None,
            },
        )
        if insert_once(session, Effect.__table__, effect.model_dump(), "key", "key") is None:
            return  # recorded by an earlier attempt
        add_timeline(
            session, call.item_id, "rule_done", f"Rule {_rule_text(call.rule)} done",
            at=call.at, key=f"{key}/done", rule_name=call.rule.name, entry_no=call.entry_no,
            result=outcome.result or None, auxiliary=call.rule.auxiliary or None,
        )


def _stage_change_key(entity: str, item_id: int, entry_no: int) -> str:
    """The key of the timeline entry that records the item entering a stage: one per entry, ever."""
    return f"{item_workflow_id(entity, item_id)}/entry-{entry_no}/stage_changed"


async def _heartbeat(every: float) -> None:
    """Tells the server the rule is still running, so a worker that dies is noticed within seconds, not at the
    rule's timeout."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(max(every, 0.2))


def _reference(rule: str, name: str) -> str:
    return f"{STORED_PREFIX}Rule.{rule}.{name}>"


def _in_history(call: RuleCall, outcome: RuleOutcome) -> RuleOutcome:
    """The outcome as the workflow history keeps it: results that carry a capability token (a link that opens
    or signs a document) are replaced by a reference; the effect row in the database holds their values."""
    kind = RULE_TYPES.get(call.rule.type)
    private = [name for name in (kind.private_returns if kind else ()) if outcome.result.get(name)]
    if not private:
        return outcome
    result = {**outcome.result, **{name: _reference(call.rule.name, name) for name in private}}
    return dataclasses.replace(outcome, result=result)


def _stored_results(session: Session, call: RuleCall) -> dict[str, dict[str, Any]]:
    """The results of the earlier rules this one reads, with referenced values read back from their effects."""
    results = {}
    for name, values in call.results.items():
        if any(isinstance(value, str) and value.startswith(STORED_PREFIX) for value in values.values()):
            effect = session.get(Effect, f"{call.workflow_id}/{name}")
            stored = ((effect.result if effect else None) or {}).get("result") or {}
            values = {
                field: stored.get(field, value) if value == _reference(name, field) else value
                for field, value in values.items()
            }
        results[name] = values
    return results


def _outcome_from(effect: Effect) -> RuleOutcome:
    if effect.status != "done":
        return RuleOutcome(status=effect.status, reason=effect.result.get("reason", ""))
    stored = effect.result
    return RuleOutcome(
        status="done",
        result=stored.get("result", {}),
        variables=stored.get("variables", {}),
        events=[ItemEvent(**event) for event in stored.get("events", [])],
        moves=[MoveRequest(**move) for move in stored.get("moves", [])],
        wait=WaitSpec(**stored["wait"]) if stored.get("wait") else None,
    )
