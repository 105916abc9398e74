"""Evaluating rule and trigger conditions on the data tree, with a reason a person can read.

Comparisons: numbers numerically (numeric text counts as a number), dates as dates (ISO text counts as
a date), other text case-insensitively. A missing field is empty. `contains` looks for text inside text
(case-insensitive) or for an element in a list; `=` on a list field is true when any element is equal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from activities.placeholders import (
    PLACEHOLDER_RE,
    UnresolvedPlaceholder,
    format_value,
    is_single_placeholder,
    render,
    resolve,
)
from models.automation import AllOf, AnyOf, ConditionLeaf, parse_condition

_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def evaluate(condition: AllOf | AnyOf | ConditionLeaf | Mapping[str, Any] | None, data: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the condition holds on `data`, and why (e.g. "Deal.Amount = 500 is not > 1000")."""
    if condition is None:
        return True, "no condition"
    parsed = parse_condition(condition)
    return _evaluate(parsed, data)


def _evaluate(condition: AllOf | AnyOf | ConditionLeaf, data: Mapping[str, Any]) -> tuple[bool, str]:
    if isinstance(condition, ConditionLeaf):
        return _leaf(condition, data)
    if isinstance(condition, AllOf):
        reasons = []
        for item in condition.all:
            passed, reason = _evaluate(item, data)
            if not passed:
                return False, reason
            reasons.append(reason)
        return True, " and ".join(reasons)
    reasons = []
    for item in condition.any:
        passed, reason = _evaluate(item, data)
        if passed:
            return True, reason
        reasons.append(reason)
    return False, "none holds: " + "; ".join(reasons)


# -- values --------------------------------------------------------------------------------------


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def _moment(value: Any) -> date | datetime | None:
    if isinstance(value, (datetime, date)):
        return value
    if isinstance(value, str) and _DATE_RE.match(value.strip()):
        text = value.strip()
        try:
            return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            return None
    return None


def _comparable_moments(left: date | datetime, right: date | datetime) -> tuple[Any, Any]:
    if isinstance(left, datetime) and isinstance(right, datetime):
        return _utc(left), _utc(right)
    as_date = lambda value: value.date() if isinstance(value, datetime) else value  # noqa: E731
    return as_date(left), as_date(right)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, dict, set)):
        return not value
    return False


def _compare(left: Any, right: Any) -> int | None:
    """-1, 0 or 1; None when the two cannot be ordered."""
    for convert in (_number, _moment):
        a, b = convert(left), convert(right)
        if a is not None and b is not None:
            if convert is _moment:
                a, b = _comparable_moments(a, b)
            return (a > b) - (a < b)
    if isinstance(left, str) and isinstance(right, str):
        a, b = left.strip().casefold(), right.strip().casefold()
        return (a > b) - (a < b)
    return None


def _equal(left: Any, right: Any) -> bool:
    if _empty(left) or _empty(right):
        return _empty(left) and _empty(right)
    a, b = _boolean(left), _boolean(right)
    if a is not None and b is not None and (isinstance(left, bool) or isinstance(right, bool)):
        return a == b
    order = _compare(left, right)
    if order is not None:
        return order == 0
    return left == right


def _show(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    return format_value(value)


def _operand(value: Any, data: Mapping[str, Any]) -> Any:
    """A comparison value with its placeholders filled in (one placeholder alone keeps its type)."""
    if isinstance(value, list):
        return [_operand(item, data) for item in value]
    if isinstance(value, str) and PLACEHOLDER_RE.search(value):
        if is_single_placeholder(value):
            return resolve(PLACEHOLDER_RE.fullmatch(value.strip()).group(1), data)
        return render(value, data)
    return value


# -- one comparison ------------------------------------------------------------------------------


def _leaf(leaf: ConditionLeaf, data: Mapping[str, Any]) -> tuple[bool, str]:
    try:
        actual = resolve(leaf.field, data)
    except UnresolvedPlaceholder:
        actual = None
    try:
        expected = _operand(leaf.value, data)
    except UnresolvedPlaceholder as error:
        return False, f"{leaf.field}: the value {error} cannot resolve"
    passed = _holds(leaf.op, actual, expected)
    subject = f"{leaf.field} = {_show(actual)}" if not _empty(actual) else f"{leaf.field} is empty"
    if leaf.op in ("empty", "not empty"):
        if leaf.op == "empty":
            return passed, subject if passed else f"{subject}, not empty"
        return passed, f"{subject}, not empty" if passed else subject
    verdict = "is" if passed else "is not"
    return passed, f"{subject} {verdict} {leaf.op} {_show(expected)}"


def _holds(op: str, actual: Any, expected: Any) -> bool:
    if op == "empty":
        return _empty(actual)
    if op == "not empty":
        return not _empty(actual)
    if op in ("=", "!="):
        values = actual if isinstance(actual, (list, tuple)) else [actual]
        equal = any(_equal(value, expected) for value in values) if values else _empty(expected)
        return equal if op == "=" else not equal
    if op in ("in", "not in"):
        values = actual if isinstance(actual, (list, tuple)) else [actual]
        found = any(_equal(value, option) for value in values for option in expected)
        return found if op == "in" else not found
    if op in ("contains", "not contains"):
        found = _contains(actual, expected)
        return found if op == "contains" else not found
    if op == "between":
        low, high = expected
        above, below = _compare(actual, low), _compare(actual, high)
        return not _empty(actual) and above is not None and below is not None and above >= 0 and below <= 0
    if _empty(actual):
        return False
    order = _compare(actual, expected)
    if order is None:
        return False
    return {">": order > 0, ">=": order >= 0, "<": order < 0, "<=": order <= 0}[op]


def _contains(actual: Any, expected: Any) -> bool:
    if _empty(actual):
        return False
    if isinstance(actual, (list, tuple, set)):
        return any(_equal(item, expected) for item in actual)
    if isinstance(actual, Mapping):
        return str(expected) in actual
    return format_value(expected).casefold() in format_value(actual).casefold()
