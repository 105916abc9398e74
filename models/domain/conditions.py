"""Rule and trigger conditions: the grammar (AND/OR groups of comparisons), and evaluating a condition on the
data tree with a reason a person can read.

Comparisons: numbers numerically (numeric text counts as a number), dates as dates (ISO text counts as
a date), other text case-insensitively. A missing field is empty. `contains` looks for text inside text
(case-insensitive) or for an element in a list; `=` on a list field is true when any element is equal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from models.domain.placeholders import (
    PLACEHOLDER_RE,
    UnresolvedPlaceholder,
    format_value,
    is_single_placeholder,
    render,
    resolve,
    split_path,
)
from models.domain.problems import Problem, ProblemsError, problems_of
from models.domain.wording import OP_WORDS

MAX_CONDITION_DEPTH = 8
MAX_CONDITION_ITEMS = 100


class ConditionInvalid(ProblemsError):
    """A condition that does not follow the grammar; `problems` are (location, message) pairs."""


# -- the grammar ---------------------------------------------------------------------------------

ConditionOp = Literal[
    "=", "!=", ">", ">=", "<", "<=", "in", "not in", "contains", "not contains", "empty", "not empty", "between"
]
CONDITION_OPS: tuple[str, ...] = get_args(ConditionOp)
NO_VALUE_OPS = frozenset({"empty", "not empty"})
LIST_OPS = frozenset({"in", "not in"})
_OP_ALIASES = {
    "==": "=", "<>": "!=", "not_in": "not in", "not_contains": "not contains", "not_empty": "not empty",
    "is empty": "empty", "is not empty": "not empty",
}


ORDERED_OPS = frozenset({">", ">=", "<", "<=", "between", "contains", "not contains"})
"""The operators that order or search: an empty value gives them nothing to compare with."""


def normal_op(value: Any) -> str | None:
    """An operator as written (`==`, `is empty`, ` NOT  IN `) in its one spelling; None for what is not text."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.lower().split())
    return _OP_ALIASES.get(text, text)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


class ConditionLeaf(BaseModel):
    """One comparison: `{"field": "Deal.Amount", "op": ">", "value": 1000}`.

    `field` is a placeholder path (without braces). `value` may hold placeholders such as
    `"{{Constants.MinAmount}}"`. `in`/`not in` take a list, `between` takes `[low, high]`,
    `empty`/`not empty` take no value.
    """

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"field": "Deal.Amount", "op": ">", "value": 1000}]}
    )
    field: Annotated[str, Field(min_length=1, max_length=300)]
    op: ConditionOp
    value: Any = None

    @field_validator("field", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("{{") and text.endswith("}}"):
            text = text[2:-2].strip()
        try:
            return ".".join(split_path(text))
        except UnresolvedPlaceholder:
            raise ValueError(f"{value!r} is not a field path such as Deal.Amount") from None

    @field_validator("op", mode="before")
    @classmethod
    def _op(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = normal_op(value)
            if text not in CONDITION_OPS:
                raise ValueError(f"unknown operator {value!r}; use {', '.join(CONDITION_OPS)}")
            return text
        return value

    @model_validator(mode="after")
    def _value_shape(self) -> ConditionLeaf:
        op, value = self.op, self.value
        if op in NO_VALUE_OPS:
            if value is not None:
                raise ValueError(f"op {op!r} takes no value")
        elif op in LIST_OPS:
            if not isinstance(value, list) or not all(_scalar(item) for item in value):
                raise ValueError(f'op {op!r} needs a list of values, e.g. ["USD", "EUR"]')
        elif op == "between":
            if not isinstance(value, list) or len(value) != 2 or not all(_scalar(item) for item in value):
                raise ValueError("op 'between' needs value [low, high]")
            low, high = value
            if _is_number(low) and _is_number(high) and float(low) > float(high):
                raise ValueError(f"between: low {low} is above high {high}")
        elif value is None:
            raise ValueError(f"op {op!r} needs a value")
        elif not _scalar(value):
            raise ValueError(f"op {op!r} needs a single value (text, number or true/false), not a list or object")
        return self

    @model_serializer(mode="wrap")
    def _without_empty_value(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("value") is None:
            data.pop("value", None)
        return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class AllOf(BaseModel):
    """True when every condition in the list is true."""

    model_config = ConfigDict(extra="forbid")
    all: list[Condition] = Field(min_length=1, max_length=MAX_CONDITION_ITEMS)


class AnyOf(BaseModel):
    """True when at least one condition in the list is true."""

    model_config = ConfigDict(extra="forbid")
    any: list[Condition] = Field(min_length=1, max_length=MAX_CONDITION_ITEMS)


def _condition_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "all" if "all" in value else "any" if "any" in value else "leaf"
    if isinstance(value, AllOf):
        return "all"
    return "any" if isinstance(value, AnyOf) else "leaf"


Condition = Annotated[
    Union[Annotated[AllOf, Tag("all")], Annotated[AnyOf, Tag("any")], Annotated[ConditionLeaf, Tag("leaf")]],
    Discriminator(_condition_kind),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()
_CONDITION = TypeAdapter(Condition)

_CONDITION_HINT = 'a condition is {"all": [...]}, {"any": [...]} or {"field": "Deal.Amount", "op": ">", "value": 1000}'


def _condition_problems(raw: Any, loc: tuple[str | int, ...], depth: int) -> list[Problem]:
    if not isinstance(raw, Mapping):
        return [(loc, _CONDITION_HINT)]
    groups = [key for key in ("all", "any") if key in raw]
    if not groups:
        try:
            ConditionLeaf.model_validate(raw)
        except ValidationError as error:
            return [(loc + sub, msg) for sub, msg in problems_of(error)]
        return []
    if len(raw) != 1:
        return [(loc, f"a group has exactly one key, all or any; found {', '.join(map(str, raw))}")]
    key = groups[0]
    items = raw[key]
    if depth >= MAX_CONDITION_DEPTH:
        return [(loc, f"conditions nest at most {MAX_CONDITION_DEPTH} groups deep")]
    if not isinstance(items, list) or not items:
        return [(loc + (key,), f"{key} needs a non-empty list of conditions")]
    if len(items) > MAX_CONDITION_ITEMS:
        return [(loc + (key,), f"a group holds at most {MAX_CONDITION_ITEMS} conditions")]
    problems: list[Problem] = []
    for index, item in enumerate(items):
        problems += _condition_problems(item, loc + (key, index), depth + 1)
    return problems


def blank_value_problem(leaf: Mapping[str, Any]) -> str | None:
    """What is wrong with a comparison as written whose value (or one of its values) is blank text: nothing to compare
    with, for the operators that order or search (`=`, `!=`, `in` and `not in` take "" as a value). Checked when an
    automation is saved, not when one saved before runs."""
    op = normal_op(leaf.get("op"))
    if op not in ORDERED_OPS:
        return None
    value = leaf.get("value")
    values = value if isinstance(value, list) else [value]
    if any(isinstance(item, str) and not item.strip() for item in values):
        which = "each of its values" if isinstance(value, list) else "a value"
        return f"{OP_WORDS.get(op, op)} (op {op!r}) needs {which} to compare with; it is empty"
    return None


def parse_condition(raw: Any) -> AllOf | AnyOf | ConditionLeaf | None:
    """A condition from its JSON form (None stays None); raises `ConditionInvalid` listing every problem."""
    if raw is None or isinstance(raw, (AllOf, AnyOf, ConditionLeaf)):
        return raw
    problems = _condition_problems(raw, (), 0)
    if problems:
        raise ConditionInvalid(problems)
    return _CONDITION.validate_python(raw)


def iter_leaves(
    condition: AllOf | AnyOf | ConditionLeaf, loc: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], ConditionLeaf]]:
    """Every comparison in a condition, with its location."""
    if isinstance(condition, ConditionLeaf):
        yield loc, condition
        return
    key = "all" if isinstance(condition, AllOf) else "any"
    for index, item in enumerate(getattr(condition, key)):
        yield from iter_leaves(item, loc + (key, index))



def raw_leaves(
    raw: Any, loc: tuple[str | int, ...] = (), depth: int = 0
) -> Iterator[tuple[tuple[str | int, ...], Mapping[str, Any]]]:
    """The comparisons of a condition as written, even when other parts of it are malformed."""
    if not isinstance(raw, Mapping) or depth > MAX_CONDITION_DEPTH:
        return
    groups = [key for key in ("all", "any") if key in raw]
    if not groups:
        yield loc, raw
        return
    for key in groups:
        if isinstance(raw[key], list):
            for index, item in enumerate(raw[key][:MAX_CONDITION_ITEMS]):
                yield from raw_leaves(item, loc + (key, index), depth + 1)


# -- evaluation ----------------------------------------------------------------------------------

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
