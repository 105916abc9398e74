"""The events that reach an item's triggers, each declared once with its data.

Whoever reports an event builds one of these (the API's use cases, a rule that completes a task); the trigger type
that waits for it is named after its `TYPE` (`models/domain/triggers.py`) and reads its data back with `read`. An
item's workflow carries an event as its type and its `data()` (`workflows.types.ItemEvent`). Only the standard
library here: the item's workflow reads `FieldChanged.TYPE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

E = TypeVar("E", bound="Event")


@dataclass(frozen=True)
class Event:
    TYPE: ClassVar[str] = ""
    RENAMED: ClassVar[Mapping[str, str]] = {}
    """Fields whose key in the event's data is another word (`previous` travels as `from`)."""

    @property
    def type(self) -> str:
        return self.TYPE

    def data(self) -> dict[str, Any]:
        return {self.RENAMED.get(part.name, part.name): getattr(self, part.name) for part in fields(self)}

    @classmethod
    def read(cls: type[E], data: Mapping[str, Any]) -> E:
        """The event an item received, from its data; a field it lacks takes its default (None when it has none)."""
        values = {}
        for part in fields(cls):
            key = cls.RENAMED.get(part.name, part.name)
            if key in data:
                values[part.name] = data[key]
            elif part.default is not MISSING:
                values[part.name] = part.default
            elif part.default_factory is not MISSING:
                values[part.name] = part.default_factory()
            else:
                values[part.name] = None
        return cls(**values)


@dataclass(frozen=True)
class PaymentReceived(Event):
    """A payment for the item (`POST …/payments`)."""

    TYPE: ClassVar[str] = "payment_received"
    amount: float | None
    currency: str | None = None


@dataclass(frozen=True)
class TaskStatusChanged(Event):
    """A task linked to the item reached a status (a person, a client system, or a rule that completes tasks)."""

    TYPE: ClassVar[str] = "task_status"
    task_id: int | None
    status: str | None
    title: str | None = None
    responsible_id: int | None = None
    rule_name: str | None = None
    """The rule that created the task, if one did."""
    pipeline_id: int | None = None
    stage: str | None = None
    """The stage whose rule created the task."""

    @classmethod
    def of(cls, task: Any) -> TaskStatusChanged:
        """The event of a task as it is now (a `models.tables.Task` row)."""
        return cls(task_id=task.id, status=task.status, title=task.title, responsible_id=task.responsible_id,
                   rule_name=task.rule_name, pipeline_id=task.pipeline_id, stage=task.stage)


@dataclass(frozen=True)
class DocumentEvent(Event):
    """Something the client did with a document."""

    document_id: int | None
    template: str | None = None
    number: str | None = None

    @classmethod
    def of(cls: type[E], document: Any) -> E:
        """The event of a document (a `models.tables.Document` row)."""
        return cls(document_id=document.id, template=document.template, number=document.number)


@dataclass(frozen=True)
class DocumentOpened(DocumentEvent):
    """The client opened a document's public link."""

    TYPE: ClassVar[str] = "document_opened"


@dataclass(frozen=True)
class DocumentSigned(DocumentEvent):
    """Every signer of a document sent for signing has signed it."""

    TYPE: ClassVar[str] = "document_signed"


@dataclass(frozen=True)
class EmailOpened(Event):
    """The client opened an e-mail a rule sent (its tracking pixel loaded)."""

    TYPE: ClassVar[str] = "email_opened"
    message_id: int | None


@dataclass(frozen=True)
class LinkClicked(Event):
    """The client clicked a link in an e-mail a rule sent; `url` without its capability token."""

    TYPE: ClassVar[str] = "link_clicked"
    message_id: int | None
    url: str | None = None


@dataclass(frozen=True)
class ChannelReply(Event):
    """The client wrote to the business on a messenger channel (Telegram, WhatsApp)."""

    TYPE: ClassVar[str] = "channel_reply"
    channel: str | None
    text: str | None = None
    sender: str | None = None
    """The client's identity on the channel (chat id, number)."""
    provider_id: str | None = None


@dataclass(frozen=True)
class CallFinished(Event):
    """A call a rule placed ended: `answered`, or `missed` (busy, no answer, failed)."""

    TYPE: ClassVar[str] = "call_finished"
    outcome: str | None
    status: str | None = None
    """The provider's final status: completed, busy, no-answer, failed, canceled."""
    message_id: int | None = None
    rule_name: str | None = None


@dataclass(frozen=True)
class FieldChanged(Event):
    """Fields of the item changed (`close_date`, `Fields.<name>`), by a person or a client system."""

    TYPE: ClassVar[str] = "field_changed"
    fields: list[str] = field(default_factory=list)
    by_user_id: int | None = None


@dataclass(frozen=True)
class ResponsibleChanged(Event):
    """Another user became responsible for the item."""

    TYPE: ClassVar[str] = "responsible_changed"
    RENAMED: ClassVar[Mapping[str, str]] = {"previous": "from"}
    previous: int | None
    to: int | None
    by_user_id: int | None = None


@dataclass(frozen=True)
class WebhookCalled(Event):
    """An outside system called a webhook trigger's secret URL: the trigger's pipeline, stage and name, with the
    values it sent."""

    TYPE: ClassVar[str] = "webhook"
    pipeline_id: int | None
    stage: str | None
    trigger: str | None
    values: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {**self.values, "pipeline_id": self.pipeline_id, "stage": self.stage, "trigger": self.trigger}

    @classmethod
    def read(cls, data: Mapping[str, Any]) -> WebhookCalled:
        own = ("pipeline_id", "stage", "trigger")
        return cls(*(data.get(name) for name in own), values={k: v for k, v in data.items() if k not in own})


@dataclass(frozen=True)
class PostedEvent(Event):
    """An event a client system posts by name (`POST …/events`): one of its own, or a built-in type by its name."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.name

    def data(self) -> dict[str, Any]:
        return dict(self.values)

