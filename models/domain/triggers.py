"""Trigger types: each one's filter model (its fields, save-time checks and matching) and which trigger an event
fires, scanned in pipeline order.

A trigger type waits for one kind of event (`models/domain/events.py`, named by its `TYPE`). A filter model
validates the filter when the automation is saved and decides, when an event arrives, whether the event is one its
trigger waits for (`matches`, reading the event's data back as its event type). `TRIGGER_TYPES` is the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from models.domain import conditions
from models.domain.events import (
    CallFinished,
    ChannelReply,
    DocumentEvent,
    DocumentOpened,
    DocumentSigned,
    EmailOpened,
    FieldChanged,
    LinkClicked,
    PaymentReceived,
    ResponsibleChanged,
    TaskStatusChanged,
    WebhookCalled,
)
from models.domain.fields import StageCode, TemplateCode, WatchableField, number_or_none, settings_config
from models.domain.problems import Problem
from models.domain.rule_types import RuleEnv, stage_problem, template_problem

if TYPE_CHECKING:
    from models.domain.automation import AutomationConfig, TriggerConfig


class Filter(BaseModel):
    """A trigger's filter: which events of its type move the item. No fields: every such event."""

    model_config = settings_config({})

    def matches(self, event: str, data: Mapping[str, Any], stage: str, trigger: str) -> bool:
        """Whether event `event` with `data` fires trigger `trigger`, which sits on `stage` (the trigger's type
        has accepted the event's type already)."""
        return True

    def check(self, env: RuleEnv) -> Iterable[Problem]:
        """Save-time problems beyond the model's own (stages, templates)."""
        return ()


class PaymentFilter(Filter):
    model_config = settings_config({"min_amount": 100, "currency": "USD"})
    min_amount: float | None = Field(default=None, ge=0)
    max_amount: float | None = Field(default=None, ge=0)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None

    @model_validator(mode="after")
    def _range(self) -> PaymentFilter:
        if self.min_amount is not None and self.max_amount is not None and self.min_amount > self.max_amount:
            raise ValueError("min_amount is above max_amount")
        return self

    def matches(self, event: str, data: Mapping[str, Any], stage: str, trigger: str) -> bool:
        payment = PaymentReceived.read(data)
        amount = number_or_none(payment.amount)
        if self.min_amount is not None and (amount is None or amount < self.min_amount):
            return False
        if self.max_amount is not None and (amount is None or amount > self.max_amount):
            return False
        return not self.currency or str(payment.currency or "").upper() == self.currency.upper()


class TaskStatusFilter(Filter):
    model_config = settings_config({"status": "completed", "title_contains": ["invoice"]})
    status: Literal["pending", "in_progress", "completed", "deferred"] | None = None
    """Default: any status change."""
    title_contains: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20
    )
    """Every word must appear in the task's title (case-insensitive)."""
    responsible_id: int | None = Field(default=None, ge=1)
    created_by_stage: StageCode | None = None

    @field_validator("title_contains", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def matches(self, event: str, data: Mapping[str, Any], stage: str, trigger: str) -> bool:
        task = TaskStatusChanged.read(data)
        if self.status and task.status != self.status:
            return False
        title = str(task.title or "").lower()
        if not all(word.lower() in title for word in self.title_contains):
            return False
        if self.responsible_id and task.responsible_id != self.responsible_id:
            return False
        return not self.created_by_stage or task.stage == self.created_by_stage

    def check(self, env: RuleEnv) -> Iterable[Problem]:
        return stage_problem(self.created_by_stage, env.stage_codes, ("created_by_stage",), "this pipeline")


class DocumentFilter(Filter):
    model_config = settings_config({"template": "invoice"})
    template: TemplateCode | None = None

    def matches(self, event: str, data: Mapping[str, Any], stage: str, trigger: str) -> bool:
        return not self.template or DocumentEvent.read(data).template == self.template

    def check(self, env: RuleEnv) -> Iterable[Problem]:
        return template_problem(self.template, env)


class FieldChangedFilter(Filter):
    model_config = settings_config({"fields": ["amount", "Fields.delivery_date"]})
    fields: list[WatchableField] = Field(min_length=1, max_length=50)

    def matches(self, event: str, data: Mapping[str, Any], stage: str, trigger: str) -> bool:
        return bool(set(self.fields) & set(FieldChanged.read(data).fields or []))


class ChannelReplyFilter(Filter):
    model_config = settings_config({"channel": "telegram", "text_contains": ["yes"]})
    channel: Literal["telegram", "whatsapp"] | None = None
    """Default: a reply on any channel."""
    text_contains: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20
    )
    """Every word must appear in the reply (case-insensitive)."""

    @field_validator("text_contains", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def matches(self, event: str, data: Mapping[str, Any], stage: str, trigger: str) -> bool:
        reply = ChannelReply.read(data)
        if self.channel and reply.channel != self.channel:
            return False
        text = str(reply.text or "").lower()
        return all(word.lower() in text for word in self.text_contains)


class CallFinishedFilter(Filter):
    model_config = settings_config({"outcome": "missed"})
    outcome: Literal["answered", "missed"] | None = None
    """Default: any finished call."""

    def matches(self, event: str, data: Mapping[str, Any], stage: str, trigger: str) -> bool:
        return not self.outcome or CallFinished.read(data).outcome == self.outcome


class WebhookFilter(Filter):
    """No fields: a call of the trigger's own secret URL names its stage and trigger."""

    def matches(self, event: str, data: Mapping[str, Any], stage: str, trigger: str) -> bool:
        call = WebhookCalled.read(data)
        return call.stage == stage and call.trigger == trigger


class CustomEventFilter(Filter):
    model_config = settings_config({"event": "order_shipped"})
    event: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_.\-]*$")]

    @field_validator("event")
    @classmethod
    def _not_built_in(cls, event: str) -> str:
        if event in BUILT_IN_EVENTS:
            raise ValueError(f"{event!r} is a built-in event; use the {event} trigger type")
        return event

    def matches(self, event: str, data: Mapping[str, Any], stage: str, trigger: str) -> bool:
        return event == self.event


@dataclass(frozen=True)
class TriggerType:
    name: str
    title: str
    description: str
    filter: type[Filter] = Filter
    user_fields: tuple[str, ...] = ()

    def accepts(self, event_type: str) -> bool:
        """Whether events of this type can fire a trigger of this type (before its filter is asked)."""
        return event_type == self.name

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "filter_schema": self.filter.model_json_schema(),
        }


@dataclass(frozen=True)
class CustomEventType(TriggerType):
    """Any event a client system posts by a name of its own: the filter names the event."""

    def accepts(self, event_type: str) -> bool:
        return event_type not in BUILT_IN_EVENTS


_TRIGGERS: list[TriggerType] = [
    TriggerType(PaymentReceived.TYPE, "Payment received", "A payment for the item is reported (POST …/payments).",
                PaymentFilter),
    TriggerType(TaskStatusChanged.TYPE, "Task status changed", "A task linked to the item reaches a status.",
                TaskStatusFilter, user_fields=("responsible_id",)),
    TriggerType(DocumentOpened.TYPE, "Document opened", "The client opens a document's public link.", DocumentFilter),
    TriggerType(DocumentSigned.TYPE, "Document signed", "A document sent for signing is signed.", DocumentFilter),
    TriggerType(EmailOpened.TYPE, "Email opened", "The client opens an e-mail sent by a rule."),
    TriggerType(LinkClicked.TYPE, "Email link clicked", "The client clicks a link in an e-mail sent by a rule."),
    TriggerType(FieldChanged.TYPE, "Field changed", "One of the chosen item fields changes.", FieldChangedFilter),
    TriggerType(ChannelReply.TYPE, "Client replied on a channel",
                "The client writes on Telegram or WhatsApp (the provider's webhook, matched to the contact's identity).",
                ChannelReplyFilter),
    TriggerType(CallFinished.TYPE, "Call finished", "A call a rule placed to the client ended, answered or missed.",
                CallFinishedFilter),
    TriggerType(ResponsibleChanged.TYPE, "Responsible changed", "Another user becomes responsible for the item."),
    TriggerType(WebhookCalled.TYPE, "Inbound webhook",
                "An outside system calls the trigger's secret URL (POST /hooks/{secret}).", WebhookFilter),
    CustomEventType("custom", "Custom event", "A client system posts an event with this name (POST …/events).",
                    CustomEventFilter),
]
TRIGGER_TYPES: dict[str, TriggerType] = {trigger.name: trigger for trigger in _TRIGGERS}
BUILT_IN_EVENTS: tuple[str, ...] = tuple(
    name for name, kind in TRIGGER_TYPES.items() if not isinstance(kind, CustomEventType)
)
"""The events the product itself reports; every other event name is a custom event."""


def trigger_type_catalogue() -> list[dict[str, Any]]:
    """Every trigger type as JSON-able dicts with the filter JSON schema (for `GET /trigger-types`)."""
    return [trigger.describe() for trigger in TRIGGER_TYPES.values()]


# -- which trigger an event fires ------------------------------------------------------------------


def trigger_accepts(trigger: TriggerConfig, stage: str, event_type: str, data: Mapping[str, Any]) -> bool:
    kind = TRIGGER_TYPES.get(trigger.type)
    if kind is None or not kind.accepts(event_type):
        return False
    found = trigger.typed_filter()
    return found is not None and found.matches(event_type, data or {}, stage, trigger.name)


def candidates(order: list[str], current: str) -> list[tuple[str, bool]]:
    """Stages to scan: those after the current one, then the earlier ones (only for backward triggers)."""
    if current not in order:
        return [(code, False) for code in order]
    position = order.index(current)
    return [(code, False) for code in order[position + 1:]] + [(code, True) for code in order[:position]]


@dataclass(frozen=True)
class Miss:
    """A trigger for this event's type that did not fire, and why."""

    trigger: str
    stage: str
    reason: str


def scan(
    config: AutomationConfig, order: list[str], current: str, event_type: str, event_data: Mapping[str, Any],
    data: Callable[[], Mapping[str, Any]],
) -> tuple[tuple[str, TriggerConfig] | None, list[Miss]]:
    """The first trigger, in pipeline order, that the event fires (`data()` gives the item's tree, asked for only
    when a trigger's condition is checked), and why each trigger of the event's type before it did not."""
    misses: list[Miss] = []
    here = config.stages.get(current)
    for trigger in here.triggers if here is not None else ():
        if trigger_accepts(trigger, current, event_type, event_data):
            misses.append(Miss(trigger.name, current, "the item is in its stage already"))
    for stage, backwards in candidates(order, current):
        automation = config.stages.get(stage)
        if automation is None:
            continue
        for trigger in automation.triggers:
            kind = TRIGGER_TYPES.get(trigger.type)
            if kind is None or not kind.accepts(event_type):
                continue
            if not trigger_accepts(trigger, stage, event_type, event_data):
                misses.append(Miss(trigger.name, stage, "its filter does not match the event"))
                continue
            if backwards and not trigger.allow_backwards:
                misses.append(Miss(trigger.name, stage, "its stage comes before the item's, and it does not move back"))
                continue
            if trigger.condition is not None:
                passed, reason = conditions.evaluate(trigger.condition, data())
                if not passed:
                    misses.append(Miss(trigger.name, stage, f"its condition is false: {reason}"))
                    continue
            return (stage, trigger), misses
    return None, misses
