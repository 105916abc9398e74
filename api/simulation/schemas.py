"""What a simulation request holds: the pipeline and its automation (saved or a draft), a sample item, a script of
what happens to the item and when, the horizon, and the answers scripted for outside calls."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, JsonValue, StringConstraints, model_validator
from sqlmodel import Field

from api.schemas import (
    EventCreate,
    Id,
    ItemBase,
    ItemUpdate,
    PaymentCreate,
    StageCode,
    StrictModel,
    TaskStatus,
)
from models.domain.fields import RuleName
from models.domain.timing import DURATION_HINT, DurationError, as_utc, parse_duration

MAX_HORIZON = "2y"
MAX_STEPS = 200
DEFAULT_HORIZON = "30d"


def _duration(text: str) -> str:
    if text[:1] in ("+", "-"):
        raise ValueError(f"{text!r}: a duration here has no sign ({DURATION_HINT})")
    try:
        parse_duration(text)
    except DurationError:
        raise ValueError(f"{text!r} is not a duration: {DURATION_HINT}") from None
    return text


def _moment(text: str) -> str:
    """`+2h` (after the start) or an ISO date and time (with its offset, else UTC)."""
    if text.startswith("+"):
        _duration(text[1:])
        return text
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither +<duration> ({DURATION_HINT}) nor an ISO date and time") from None
    return text


Duration = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=40), AfterValidator(_duration)]
Moment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=40), AfterValidator(_moment)]


def moment_after(text: str, start: datetime) -> datetime:
    """The time a script step's `at` names, for a run that starts at `start`."""
    if text.startswith("+"):
        return start + parse_duration(text[1:])
    return as_utc(datetime.fromisoformat(text))


def horizon_end(text: str, start: datetime) -> datetime:
    return start + parse_duration(text)


def horizon_too_long(text: str) -> bool:
    base = datetime(2000, 1, 1)
    return base + parse_duration(text) > base + parse_duration(MAX_HORIZON)


class TaskStep(StrictModel):
    rule: RuleName = Field(description="The rule that made the task (its latest task, if it made several)")
    status: TaskStatus


class ScriptStep(StrictModel):
    """One thing that happens to the item, at `at`: exactly one of move, payment, event, patch, task."""

    at: Moment = Field(description="+2h, +3d, +1mo (after the start) or an ISO date and time")
    move: StageCode | None = None
    payment: PaymentCreate | None = None
    event: EventCreate | None = None
    patch: ItemUpdate | None = None
    task: TaskStep | None = None

    @model_validator(mode="after")
    def _one_action(self) -> ScriptStep:
        given = [name for name in ACTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"a step does exactly one of {', '.join(ACTIONS)} (this one: {', '.join(given) or 'none'})")
        return self

    @property
    def action(self) -> str:
        return next(name for name in ACTIONS if getattr(self, name) is not None)


ACTIONS = ("move", "payment", "event", "patch", "task")


class WebhookAnswer(StrictModel):
    """What the outside system answers a rule's call in the simulation."""

    status: Annotated[int, Field(ge=200, le=599)] = 200
    json_body: JsonValue = Field(default=None, alias="json", description="The JSON answer (null: an empty body)")


class ScriptPart(StrictModel):
    script: list[ScriptStep] = Field(default_factory=list, max_length=MAX_STEPS)
    horizon: Duration = Field(default=DEFAULT_HORIZON, description=f"How long to simulate, at most {MAX_HORIZON}")
    webhooks: dict[RuleName, WebhookAnswer] = Field(
        default_factory=dict,
        description="Per rule name, the answer its outside call gets; a call without one is recorded as "
        "'would call' and answered 200 with an empty body",
    )


class SampleItem(ItemBase):
    stage: StageCode | None = Field(default=None, description="The stage it starts in (default: the first)")


class SimulationCreate(ScriptPart):
    pipeline_id: Id
    automation: dict[str, Any] | None = Field(
        default=None, description="A draft automation, checked like PUT /pipelines/{id}/automation (default: the saved one)"
    )
    item: SampleItem


class ItemSimulate(ScriptPart):
    """A simulation of an item from its current stage and data."""

