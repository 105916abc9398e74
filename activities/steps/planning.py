"""The engine's planning steps: a stage entry's plan (its rules, their order, what each waits for, when each is
due), and the due time of a rule that starts after the previous one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session
from temporalio import activity

from activities.keys import outcome_key, part_key
from activities.rule import Deps
from models.domain import placeholders, timing
from models.domain.automation import AutomationConfig, RuleConfig
from models.domain.data_tree import date_fields
from models.domain.delays import parse_delay
from models.domain.rule_types import RuleType
from models.item_data import load_automation, load_calendar
from models.store import add_timeline
from models.tables import Item
from workflows.types import BEGIN_ENTRY, RESCHEDULE_RULE, SCHEDULE_RULE, EntryInput, EntryPlan, RescheduleCall, Rescheduled, RulePlan, ScheduleCall, anchor_field

RULE_DEPENDENCY = "Rule."
VARIABLE_DEPENDENCY = "Variables."
CUSTOM_RULE_ACTIVITY = "rule.custom"
"""The activity that runs rules of custom rule types."""


def rule_text(rule: RulePlan) -> str:
    return f"{rule.name} ({rule.type})"


def dump(value: Any) -> Any:
    return value.model_dump(mode="json", exclude_none=True) if hasattr(value, "model_dump") else value


def dependencies(rule: RuleConfig, earlier: set[str], setters: dict[str, str]) -> list[str]:
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
    walk(dump(rule.condition))
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


def _variable_set_by(rule: RuleConfig, rule_types: Mapping[str, RuleType]) -> str | None:
    kind = rule_types.get(rule.type)
    if kind is None:
        return None
    try:
        return kind.variable_name(rule.typed_settings(rule_types))
    except (KeyError, ValueError):
        return None


def _due(item: Item, rule: RuleConfig | RulePlan, base: datetime, calendar: timing.CalendarSpec) -> datetime | None:
    """When the rule is due; None when the date field its delay is counted from is empty (or holds no date):
    the rule waits for a value."""
    delay = rule.delay if isinstance(rule, RuleConfig) else parse_delay(rule.delay)
    if delay is None:
        return base
    try:
        return timing.compute_due(delay, base=base, item=date_fields(item), calendar=calendar)
    except timing.DueTimeError as error:
        if error.field:
            return None
        activity.logger.warning("rule %s: %s; it runs at once", rule.name, error)
        return base


def _record_scheduled(
    session: Session, item: Item, entry_no: int, workflow_id: str, rule: RulePlan, at: datetime, due: datetime | None
) -> None:
    field = anchor_field(rule.delay)
    if due is None and field:
        text = f"Rule {rule_text(rule)} waits for {field}, which its delay is counted from: the field is empty"
    else:
        due = due or at
        text = f"Rule {rule_text(rule)} scheduled, " + ("now" if due <= at else f"due {due.isoformat()}")
    add_timeline(
        session,
        item.id,
        "rule_scheduled",
        text,
        at=at,
        key=outcome_key(workflow_id, rule.name, "scheduled"),
        rule_name=rule.name,
        entry_no=entry_no,
        due=due.isoformat() if due else None,
        waiting_for=field if due is None else None,
        start=rule.start,
        workflow_id=workflow_id,
        version=rule.version or None,
    )


def entry_began(item: Item, entry_no: int, at: datetime) -> datetime:
    """When the item entered the stage of entry `entry_no`, as the item records it (the same moment as `at`, the
    entry's start, unless the entry resumes one that began earlier, as a simulation of an item already in its stage
    does)."""
    if item.entry_no == entry_no and item.stage_changed_at is not None:
        return timing.as_utc(item.stage_changed_at)
    return at


def _shown(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else "—"


class PlanningSteps:
    def __init__(
        self, deps: Deps, rule_types: Mapping[str, RuleType], all_rule_types: Callable[[Session], Mapping[str, RuleType]]
    ) -> None:
        self.deps = deps
        self.rule_types = rule_types
        """The built-in types: each runs as its own activity, `rule.<type>`."""
        self.all_rule_types = all_rule_types
        """Every type a rule may have now, custom ones included (`activities.rules.rule_types`)."""

    @activity.defn(name=BEGIN_ENTRY)
    async def begin_entry(self, entry: EntryInput) -> EntryPlan:
        """The plan of an entry started without one (by the engine before 0.5.0)."""
        def work(session: Session) -> EntryPlan:
            item = session.get(Item, entry.item_id)
            since = entry_began(item, entry.entry_no, entry.entered_at) if item is not None else entry.entered_at
            return self.plan(session, item, entry.pipeline_id, entry.stage, entry.entry_no,
                             activity.info().workflow_id, since)

        return await self.deps.db(work)

    def plan(
        self, session: Session, item: Item | None, pipeline_id: int, stage_code: str, entry_no: int, workflow_id: str,
        entered_at: datetime, automation: tuple[AutomationConfig, int] | None = None,
    ) -> EntryPlan:
        """The plan of entry `entry_no` (workflow `workflow_id`) of the item in `stage_code`: the stage's rules as
        they are now (`automation`, when the caller has read it in this transaction), with the due times of those
        that start on entry, each recorded as scheduled."""
        config, version = automation or load_automation(session, pipeline_id)
        stage = config.stages.get(stage_code)
        settings = self.deps.settings
        plan = EntryPlan(
            constants=dict(config.constants),
            variables=dict(config.variables),
            config_version=version,
            retry_initial_seconds=settings.rule_retry_initial_seconds,
            retry_max_attempts=settings.rule_max_attempts,
            heartbeat_seconds=settings.rule_heartbeat_seconds,
            shared_due_seconds=settings.shared_due_ahead_seconds,
        )
        if stage is None or item is None:
            return plan
        if stage.rules:
            self._plan_rules(session, item, entry_no, workflow_id, entered_at, stage.rules, version, plan)
        if item.entry_no == entry_no:
            item.entry_version = version
            session.add(item)
        return plan

    def _plan_rules(
        self, session: Session, item: Item, entry_no: int, workflow_id: str, entered_at: datetime,
        rules: list[RuleConfig], version: int, plan: EntryPlan,
    ) -> None:
        """The stage's rules in the plan (the rule types and the calendar read for them only), the due times of those
        that start on entry recorded as scheduled."""
        kinds = self.all_rule_types(session)
        calendar = load_calendar(session)
        for rule, plan_rule in zip(rules, self.rule_plans(kinds, rules, version)):
            if plan_rule.start == "on_entry":
                plan_rule.due = _due(item, rule, entered_at, calendar)
                _record_scheduled(session, item, entry_no, workflow_id, plan_rule, entered_at, plan_rule.due)
            plan.rules.append(plan_rule)

    def rule_plans(self, kinds: Mapping[str, RuleType], rules: list[RuleConfig], version: int) -> list[RulePlan]:
        """A stage's rules (of automation `version`) as an entry runs them: their activity, their start, what each
        waits for; no due times yet."""
        plans: list[RulePlan] = []
        earlier: set[str] = set()
        setters: dict[str, str] = {}
        previous: str | None = None
        for index, rule in enumerate(rules):
            kind = kinds.get(rule.type)
            custom = rule.type not in self.rule_types
            plans.append(RulePlan(
                index=index,
                name=rule.name,
                type=rule.type,
                activity=CUSTOM_RULE_ACTIVITY if custom else f"rule.{rule.type}",
                start=rule.start if previous is not None else "on_entry",
                delay=dump(rule.delay),
                condition=dump(rule.condition),
                settings=dict(rule.settings),
                auxiliary=kind is not None if custom else bool(kind.auxiliary),
                depends_on=dependencies(rule, earlier, setters),
                wait_for=previous if rule.start == "after_previous" else None,
                local=not custom and bool(kind.local),
                version=version,
            ))
            earlier.add(rule.name)
            if (variable := _variable_set_by(rule, self.rule_types)) is not None:
                setters[variable] = rule.name
            previous = rule.name
        return plans

    @activity.defn(name=SCHEDULE_RULE)
    async def schedule_rule(self, call: ScheduleCall) -> datetime | None:
        def work(session: Session) -> datetime | None:
            item = session.get(Item, call.item_id)
            call.rule.due = _due(item, call.rule, call.base, load_calendar(session))
            _record_scheduled(session, item, call.entry_no, call.workflow_id, call.rule, call.base, call.rule.due)
            return call.rule.due

        return await self.deps.db(work)

    @activity.defn(name=RESCHEDULE_RULE)
    async def reschedule_rule(self, call: RescheduleCall) -> Rescheduled:
        """The due time of a pending rule whose date field changed, recorded as `rule_rescheduled` when it moved."""
        def work(session: Session) -> Rescheduled:
            item = session.get(Item, call.item_id)
            due = _due(item, call.rule, call.base, load_calendar(session)) if item is not None else call.previous
            if due != call.previous:
                field = anchor_field(call.rule.delay)
                why = f"version {call.version} of the automation changed its delay" if call.version else f"{field} changed"
                if due is None:
                    text = f"Rule {rule_text(call.rule)} waits for {field} again: the field is empty"
                elif call.previous is None:
                    text = f"Rule {rule_text(call.rule)} scheduled, due {due.isoformat()}: {field} has a value"
                else:
                    text = f"Rule {rule_text(call.rule)} rescheduled from {_shown(call.previous)} to {_shown(due)}: {why}"
                add_timeline(
                    session, call.item_id, "rule_rescheduled", text, at=call.at,
                    key=part_key(outcome_key(call.workflow_id, call.rule.name, "rescheduled"), call.seq),
                    rule_name=call.rule.name, entry_no=call.entry_no, nulls=("from", "to"), field=field,
                    version=call.rule.version or None,
                    **{"from": call.previous.isoformat() if call.previous else None,
                       "to": due.isoformat() if due else None},
                )
            return Rescheduled(due=due)

        return await self.deps.db(work)
