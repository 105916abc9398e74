"""Delays and conditions in words, as an admin reads them on a board: "24 hours after entry", "1 day before close
date, in working hours", "Deal.Amount > 1000 and Deal.Currency is EUR"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from models.domain.timing import CUSTOM_FIELD_PREFIX, DURATION_UNITS, DurationError, split_duration

_UNITS = tuple(reversed(DURATION_UNITS.values()))
"""The parts of a duration, the largest first."""


def duration_words(text: str) -> str:
    """`"1d12h"` → `"1 day 12 hours"`; text that is not a duration comes back as it is."""
    try:
        duration = split_duration(text)
    except DurationError:
        return text
    parts = []
    for unit in _UNITS:
        amount = getattr(duration, unit)
        if amount:
            parts.append(f"{amount} {unit if amount != 1 else unit[:-1]}")
    return " ".join(parts) or "0 seconds"


def time_after(start: datetime, moment: datetime) -> str:
    """How long after `start` `moment` is, in days and hours: `+0h`, `+2d`, `+4d 3h`."""
    delta = moment - start
    days, hours = delta.days, round(delta.seconds / 3600)
    return f"+{days}d" + (f" {hours}h" if hours else "") if days else f"+{hours}h"


def field_words(field: str) -> str:
    """An item's field in words: `close_date` → `close date`, `responsible_id` → `responsible`, `Fields.vip` →
    `field vip`."""
    if field.startswith(CUSTOM_FIELD_PREFIX):
        return f"field {field[len(CUSTOM_FIELD_PREFIX):]}"
    return field.removesuffix("_id").replace("_", " ")


def delay_words(delay: Any, start: str = "on_entry") -> str:
    """When a rule runs, from its stored delay and start mode."""
    origin = "the previous rule" if start == "after_previous" else "entry"
    if delay is None:
        return "right after the previous rule" if start == "after_previous" else "on entry"
    if isinstance(delay, str):
        delay = {"after": delay}
    parts: list[str] = []
    if delay.get("after"):
        parts.append(f"{duration_words(delay['after'])} after {origin}")
    if delay.get("field"):
        offset = delay.get("offset")
        field = field_words(delay["field"])
        if not offset or split_duration(offset).is_zero:
            parts.append(f"on {field}")
        else:
            side = "before" if split_duration(offset).negative else "after"
            parts.append(f"{duration_words(offset.lstrip('+-'))} {side} {field}")
    if delay.get("at"):
        parts.append(f"at {delay['at']}" if parts else f"at the next {delay['at']} after {origin}")
    text = ", ".join(parts)
    if delay.get("business_hours"):
        text += ", in working hours"
    return text


def _value_words(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_value_words(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


OP_WORDS = {
    "=": "is", "!=": "is not", ">": "is more than", ">=": "is at least", "<": "is less than", "<=": "is at most",
    "in": "is one of", "not in": "is none of", "contains": "contains", "not contains": "does not contain",
    "empty": "is empty", "not empty": "is not empty", "between": "is between",
}
"""Each condition operator as the condition builder offers it."""


def condition_words(condition: Any) -> str:
    """A stored condition (leaf, `all`, `any`) in words; empty text for none."""
    if not condition:
        return ""
    if "all" in condition or "any" in condition:
        joiner = " and " if "all" in condition else " or "
        parts = condition.get("all") or condition.get("any") or []
        return joiner.join(
            f"({condition_words(part)})" if isinstance(part, dict) and ("all" in part or "any" in part)
            else condition_words(part) for part in parts)
    field, op, value = condition.get("field", ""), condition.get("op", ""), condition.get("value")
    words = OP_WORDS.get(op, op)
    if op in ("empty", "not empty"):
        return f"{field} {words}"
    if op == "between" and isinstance(value, list) and len(value) == 2:
        return f"{field} {words} {_value_words(value[0])} and {_value_words(value[1])}"
    return f"{field} {words} {_value_words(value)}"
