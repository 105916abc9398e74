"""A rule's delay as configured: after a duration, before or after a date field, at a clock time, in business hours.

`models.domain.timing.compute_due` turns a delay into a due time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, ValidationError, model_serializer, model_validator
from pydantic.json_schema import JsonSchemaValue

from models.domain.fields import ClockText, DateField, DurationText, SignedDurationText
from models.domain.problems import ProblemsError, problems_of


class DelayError(ProblemsError):
    """A delay that cannot be understood; `problems` are (location, message) pairs."""


class Delay(BaseModel):
    """When a rule is due, counted from its start (stage entry, or the previous rule's end).

    Accepted forms: `"24h"` (same as `{"after": "24h"}`); `{"after": "2h", "business_hours": true}`;
    `{"field": "close_date", "offset": "-1d"}`; `{"at": "14:00"}`; `{"at": "14:00", "field": "close_date"}`;
    `{"after": "1d", "at": "09:00"}`. Serialized back to the short string form when only `after` is set.
    """

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": ["24h", {"after": "2h", "business_hours": True}, {"field": "close_date", "offset": "-1d"},
                         {"at": "14:00"}]
        },
    )
    after: DurationText | None = None
    """A duration from the start: 30s, 15m, 24h, 3d, 2w, 6mo, 1y (parts combine: 1d12h)."""
    field: DateField | None = None
    """An item date field: close_date, created_at or Fields.<custom field>."""
    offset: SignedDurationText | None = None
    """Added to `field`; negative means before (e.g. -1d)."""
    at: ClockText | None = None
    """A clock time (HH:MM) in the company time zone."""
    business_hours: bool = False
    """Count working time only, and land inside working hours."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        as_object = handler(core_schema)
        return {"anyOf": [{"type": "string", "description": "a duration, same as {\"after\": ...}"}, as_object]}

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"after": value}
        if isinstance(value, (Mapping, Delay)):
            return value
        raise ValueError(
            'a delay is null, a duration such as "24h", or an object with after, field, offset, at, business_hours'
        )

    @model_validator(mode="after")
    def _consistent(self) -> Delay:
        if self.offset is not None and self.field is None:
            raise ValueError("offset is counted from a date field: give field too (e.g. close_date)")
        if self.after is not None and self.field is not None:
            raise ValueError("with field, give the distance as offset (e.g. -1d), not after")
        if self.after is None and self.field is None and self.at is None:
            raise ValueError("a delay needs after, field or at")
        return self

    @model_serializer(mode="wrap")
    def _compact(self, handler: Any) -> str | dict[str, Any]:
        data = handler(self)
        if self.after is not None and self.field is None and self.at is None and not self.business_hours:
            return self.after
        return {key: value for key, value in data.items() if value is not None and value is not False}


def parse_delay(raw: Any) -> Delay | None:
    """A delay from its JSON form (None stays None); raises `DelayError` naming the part at fault."""
    if raw is None or isinstance(raw, Delay):
        return raw
    try:
        return Delay.model_validate(raw)
    except ValidationError as error:
        raise DelayError(problems_of(error)) from None

