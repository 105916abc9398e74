"""The value types that rule settings and trigger filters are made of, with their checks and hints.

Each is an `Annotated` type (or a small model) that validates one kind of value — a user reference, a
duration, a clock time, a date field, a moment — and says in its error what to write instead. Rule types
build their settings models from these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
)

from models.domain.placeholders import PLACEHOLDER_RE, is_single_placeholder
from models.domain.timing import CUSTOM_FIELD_PREFIX, is_date_field, parse_clock, split_duration

MAX_TEXT_LENGTH = 10_000
ENTITY_TYPES = ("deal", "lead")

UPDATABLE_FIELDS = ("title", "amount", "currency", "close_date")
"""Standard item fields that `update_fields` may set (besides `Fields.<custom>`)."""
WATCHABLE_FIELDS = (*UPDATABLE_FIELDS, "responsible_id", "contact_id", "company_id")
"""Item fields that `wait` and the `field_changed` trigger may watch (besides `Fields.<custom>`)."""
TASK_STATUSES = ("pending", "in_progress", "completed", "deferred")
RESERVED_TIMELINE_KINDS = (
    "stage_changed", "rule_scheduled", "rule_done", "rule_skipped", "rule_cancelled", "rule_failed", "event_received",
    "activity_completed", "rule_rescheduled", "rule_waiting", "rule_changed", "rule_retried",
)


ACRONYMS = {"cc": "CC", "bcc": "BCC", "url": "URL", "sms": "SMS", "pdf": "PDF", "docx": "DOCX", "vat": "VAT", "iban": "IBAN", "api": "API",
            "http": "HTTP", "utc": "UTC"}
UNITS = ("seconds", "minutes", "hours", "days")
WORDS = {"op": "operation"}
PREPOSITIONS = ("in", "after", "before", "within", "every")


def _numeric(info: Any) -> bool:
    """Whether a settings field holds a number (not known of a custom type's field, named only)."""
    annotation = getattr(info, "annotation", None)
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    return bool(args) and all(arg in (int, float, type(None)) for arg in args)


def field_title(name: str, info: Any = None) -> str:
    """The label a form shows for a settings field: `author_id` → `Author`, `signer_user_id` → `Signer`,
    `recipient_ids` → `Recipients`, `timeout_seconds` → `Timeout (seconds)`, `url` → `URL`."""
    words = [word for word in name.split("_") if word] or [name]
    if len(words) > 1 and words[-1] in ("id", "ids"):
        plural = words.pop() == "ids"
        if len(words) > 1 and words[-1] == "user":
            words.pop()
        if plural:
            last = ACRONYMS.get(words[-1], words[-1])
            words[-1] = last + ("es" if last.endswith(("s", "x", "sh", "ch")) else "s")
    counted = len(words) > 1 and words[-1] in UNITS and words[0] not in PREPOSITIONS and _numeric(info)
    unit = f" ({words.pop()})" if counted else ""
    words = [ACRONYMS.get(word, WORDS.get(word, word)) for word in words]
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]]) + unit


def settings_config(*examples: dict[str, Any]) -> ConfigDict:
    """A settings (or filter) model's config: unknown keys refused, field docstrings as descriptions, labels made
    from the field names (`field_title`), the examples a client builds its form from."""
    return ConfigDict(extra="forbid", use_attribute_docstrings=True, field_title_generator=field_title,
                      json_schema_extra={"examples": list(examples)})


# -- field types ---------------------------------------------------------------------------------


def _user_ref(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a user id is a number")
    if isinstance(value, int):
        if value < 1:
            raise ValueError("a user id is a positive number")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
        if is_single_placeholder(text):
            return text
    raise ValueError("give a user id (a number) or one placeholder such as {{Constants.Courier}}")


USER_REF_DESCRIPTION = "a user id, or one placeholder that yields it (e.g. {{Constants.Courier}})"
"""How the catalogue's JSON Schemas describe a setting that names a user."""

UserRef = Annotated[
    int | str,
    BeforeValidator(_user_ref),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\s*\{\{[^{}]+\}\}\s*$"}],
            "description": USER_REF_DESCRIPTION,
        }
    ),
]
"""A user id, or a single placeholder resolved when the rule runs (`placeholders.render_value`)."""


def _duration_text(value: str) -> str:
    if split_duration(value).negative:
        raise ValueError(f"{value!r}: the duration must not be negative")
    return "".join(value.split()).lstrip("+")


def _signed_duration_text(value: str) -> str:
    split_duration(value)
    return "".join(value.split())


def _clock_text(value: str) -> str:
    return parse_clock(value).strftime("%H:%M")


def _date_field(value: str) -> str:
    if not is_date_field(value):
        raise ValueError(f"{value!r} is not a date field; use close_date, created_at or Fields.<custom field>")
    return value


def _watchable_field(value: str) -> str:
    if value in WATCHABLE_FIELDS or (value.startswith(CUSTOM_FIELD_PREFIX) and value[len(CUSTOM_FIELD_PREFIX):]):
        return value
    raise ValueError(f"{value!r} is not an item field; use {', '.join(WATCHABLE_FIELDS)} or Fields.<custom field>")


def _number_or_placeholder(value: float | str) -> float | str:
    if isinstance(value, str):
        text = value.strip()
        if PLACEHOLDER_RE.search(text):
            return text
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{value!r} is neither a number nor a placeholder such as {{{{Deal.Amount}}}}") from None
    return value


def _moment_text(value: str) -> str:
    text = value.strip()
    if PLACEHOLDER_RE.search(text):
        return text
    if text.startswith("+"):
        _duration_text(text)
        return text
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{value!r}: give a relative time (+3d), an ISO date or date-time (2025-06-01, 2025-06-01T14:00), "
            '{"in_days": 1, "at": "14:00"} or {"field": "close_date", "offset": "-1d"}'
        ) from None
    return text


DurationText = Annotated[str, StringConstraints(max_length=40), AfterValidator(_duration_text)]
SignedDurationText = Annotated[str, StringConstraints(max_length=40), AfterValidator(_signed_duration_text)]
ClockText = Annotated[str, StringConstraints(max_length=5), AfterValidator(_clock_text)]
DateField = Annotated[str, StringConstraints(max_length=100), AfterValidator(_date_field)]
WatchableField = Annotated[str, StringConstraints(max_length=100), AfterValidator(_watchable_field)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH)]
OptionalText = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
TemplateCode = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")]
StageCode = Annotated[str, StringConstraints(min_length=1, max_length=50)]
PipelineId = Annotated[int, Field(ge=1)]
NumberOrPlaceholder = Annotated[float | str, AfterValidator(_number_or_placeholder)]
RuleName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
RequisiteEntity = Literal["contact", "company"]
RequisiteTemplate = Literal["organization", "sole_proprietor", "individual"]
AddressType = Literal["legal", "actual", "other"]
Scalar = str | int | float | bool | None


class FieldMoment(BaseModel):
    """A moment counted from a date field of the item."""

    model_config = settings_config({"field": "close_date", "offset": "-1d", "at": "10:00"})
    field: DateField
    offset: SignedDurationText | None = None
    at: ClockText | None = None
    business_hours: bool = False


class DaysAhead(BaseModel):
    """A day counted from today (0 = today), optionally at a clock time in the company time zone."""

    model_config = settings_config({"in_days": 1, "at": "14:00"})
    in_days: int = Field(ge=0, le=3650)
    at: ClockText | None = None


def _moment_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "<text>"
    if isinstance(value, Mapping):
        return "<in_days>" if "in_days" in value else "<field>"
    if isinstance(value, (FieldMoment, DaysAhead)):
        return "<field>" if isinstance(value, FieldMoment) else "<in_days>"
    return None


Moment = Annotated[
    Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_moment_text), Tag("<text>")]
    | Annotated[FieldMoment, Tag("<field>")]
    | Annotated[DaysAhead, Tag("<in_days>")],
    Discriminator(
        _moment_kind,
        custom_error_type="moment",
        custom_error_message='give "+3d", an ISO date or date-time, {"in_days": 1, "at": "14:00"} '
        'or {"field": "close_date", "offset": "-1d"}',
    ),
]
"""A deadline or activity date; the engine computes it with `models.domain.timing.compute_deadline`."""

UNION_TAGS = frozenset({"<text>", "<field>", "<in_days>"})


EMAIL_RE = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()\-.]{2,48}$")


def number_or_none(value: Any) -> float | None:
    """The value as a number (numeric text counts), or None."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def has_placeholder(value: Any) -> bool:
    return isinstance(value, str) and PLACEHOLDER_RE.search(value) is not None


def check_recipients(value: str | None, pattern: re.Pattern[str], what: str) -> str | None:
    """Comma-separated addresses (or numbers) each matching `pattern`, or text with a placeholder."""
    if value is None or PLACEHOLDER_RE.search(value):
        return value
    for part in value.split(","):
        if not pattern.match(part.strip()):
            raise ValueError(f"{part.strip()!r} is not {what}; give one or a placeholder")
    return value.strip()


def check_url(value: str) -> str:
    probe = PLACEHOLDER_RE.sub("x", value.strip())
    parts = urlsplit(probe)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.strip()
