"""Helpers that work on the run's values: edit variable, math operation, wait.

Edit variable and math operation are auxiliary: they change a variable of the stage entry (later rules
read it as `{{Variables.<name>}}`) and touch nothing else. Every operand is read and checked before the
variable is set, so a rule that fails leaves the variables as they were. Wait makes the stage entry wait
after it until a watched item field changes or its timeout passes.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, DecimalException, InvalidOperation
from typing import Any

from activities import placeholders
from activities.engine import RuleContext, RuleFailed
from activities.timing import parse_duration

NUMBER_HINT = "give a number or a placeholder that holds one"


# -- edit variable -------------------------------------------------------------------------------


def _cleared(current: Any) -> Any:
    if isinstance(current, list):
        return []
    if isinstance(current, str):
        return ""
    return None


def _appended(name: str, current: Any, value: Any) -> Any:
    if current is None:
        return value
    if isinstance(current, list):
        return [*current, *(value if isinstance(value, list) else [value])]
    if isinstance(current, str):
        if isinstance(value, list):
            return current + "".join(placeholders.format_value(part) for part in value)
        return current + placeholders.format_value(value)
    raise RuleFailed(
        f"settings.op: variable {name} holds {current!r}; append adds to a text or a list (use set to replace it)"
    )


async def edit_variable(ctx: RuleContext) -> dict[str, Any]:
    """Sets, appends to or clears `Variables.<name>`; the value may be a constant or hold placeholders
    (a value that is exactly one placeholder keeps its type: a number stays a number)."""
    name, op = ctx.settings["name"], ctx.settings.get("op", "set")
    current = (ctx.data.get("Variables") or {}).get(name)
    if op == "clear":
        value = _cleared(current)
    else:
        rendered = placeholders.render_value(ctx.settings.get("value"), ctx.data)
        value = rendered if op == "set" else _appended(name, current, rendered)
    ctx.set_variable(name, value)
    return {"value": value}


# -- math operation ------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    """A finite Decimal from a number or a numeric text (floats by their shortest repr, so 0.1 is 0.1)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        number = Decimal(value)
    elif isinstance(value, (float, str)):
        try:
            number = Decimal(repr(value) if isinstance(value, float) else value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def _number(ctx: RuleContext, key: str) -> Decimal:
    """The operand `settings.<key>`, rendered, as a Decimal; RuleFailed naming the setting otherwise."""
    raw = ctx.settings.get(key)
    value = placeholders.render_value(raw, ctx.data)
    if value is None or value == "":
        raise RuleFailed(f"settings.{key}: {raw!r} is empty, not a number; {NUMBER_HINT}")
    number = _decimal(value)
    if number is None:
        shown = f"{raw!r}" if raw == value else f"{raw!r} gives {value!r}, which"
        raise RuleFailed(f"settings.{key}: {shown} is not a number; {NUMBER_HINT}")
    return number


def compute(op: str, left: Decimal, right: Decimal | None, digits: int) -> Decimal:
    """`left <op> right` in decimal arithmetic; `round` rounds half up (2.345 → 2.35) to `digits` places."""
    if op == "round":
        return left.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    if op == "add":
        return left + right
    if op == "subtract":
        return left - right
    if op == "multiply":
        return left * right
    if op == "divide":
        return left / right
    raise RuleFailed(f"settings.op: unknown operation {op!r}")


def as_json_number(value: Decimal) -> int | float:
    """A Decimal as the JSON number variables hold: an int when whole, else a float."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


async def math_operation(ctx: RuleContext) -> dict[str, Any]:
    """`Variables.<variable> = left <op> right` with numbers from fields, constants or variables."""
    op = ctx.settings["op"]
    left = _number(ctx, "left")
    right = None if op == "round" else _number(ctx, "right")
    if op == "divide" and right == 0:
        raise RuleFailed(f"settings.right: division by zero ({ctx.settings.get('right')!r} is 0)")
    try:
        value = as_json_number(compute(op, left, right, int(ctx.settings.get("digits", 2))))
    except DecimalException as error:
        raise RuleFailed(f"settings.op: {op} of {left} and {right} has no result ({type(error).__name__})") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise RuleFailed(f"settings.op: {op} of {left} and {right} is too large a number")
    ctx.set_variable(ctx.settings["variable"], value)
    return {"value": value}


# -- wait ------------------------------------------------------------------------------------------


def duration_seconds(ctx: RuleContext, text: str) -> float:
    """A duration from the rule's time (`6mo` counts calendar months) in seconds."""
    return (ctx.at + parse_duration(text) - ctx.at).total_seconds()


async def wait(ctx: RuleContext) -> dict[str, Any]:
    """After this rule, the stage entry waits until the watched field changes or the timeout passes; the
    wait's end gives the results `changed` and `field` (None when the time passed)."""
    watched = ctx.settings.get("until_field_changes")
    timeout = ctx.settings.get("timeout")
    ctx.wait_for_fields([watched] if watched else [], duration_seconds(ctx, timeout) if timeout else None)
    return {}
