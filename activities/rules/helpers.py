"""Helpers and custom rules: change responsible, change stage, update fields, edit variable, math operation,
wait, webhook.

Edit variable and math operation are auxiliary: they change a variable of the stage entry (later rules read it
as `{{Variables.<name>}}`) and touch nothing else. Every operand is read and checked before the variable is
set, so a rule that fails leaves the variables as they were. Wait makes the stage entry wait after it until a
watched item field changes or its timeout passes. The webhook calls an outside endpoint (`activities.outbound`);
with a callback, the entry waits after the rule until the outside system posts its values to the callback URL
(or the timeout passes); the posted values join the rule's results.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, DecimalException, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator, model_validator
from sqlmodel import Session

from activities.outbound import (
    IDEMPOTENCY_HEADER,
    call_endpoint,
    idempotency_key,
    item_payload,
    render_headers,
    render_url,
    returned_values,
)
from activities.rule import RuleContext, RuleFailed
from models.domain import placeholders
from models.domain.fields import (
    MAX_TEXT_LENGTH,
    UPDATABLE_FIELDS,
    DurationText,
    Identifier,
    NumberOrPlaceholder,
    Scalar,
    StageCode,
    UserRef,
    WatchableField,
    check_url,
    has_placeholder,
    number_or_none,
    settings_config,
)
from models.domain.problems import Problem
from models.domain.rule_types import RuleEnv, RuleType, stage_problem
from models.domain.timing import CUSTOM_FIELD_PREFIX, parse_duration
from models.store import locked_item
from models.tables import User

CALLBACK_HEADER = "X-Stageflow-Callback"
NUMBER_HINT = "give a number or a placeholder that holds one"
STANDARD_FIELDS = {"title": str, "amount": float, "currency": str, "close_date": date.fromisoformat}


def duration_seconds(ctx: RuleContext, text: str) -> float:
    """A duration from the rule's time (`6mo` counts calendar months) in seconds."""
    return (ctx.at + parse_duration(text) - ctx.at).total_seconds()


# -- change responsible ----------------------------------------------------------------------------


class ChangeResponsibleSettings(BaseModel):
    model_config = settings_config({"user_id": 2})
    user_id: UserRef


class ChangeResponsible(RuleType[ChangeResponsibleSettings]):
    name = "change_responsible"
    group = "helpers"
    title = "Change responsible"
    description = "Makes another user responsible for the item."
    settings = ChangeResponsibleSettings
    returns = ("previous_id", "user_id")
    user_fields = ("user_id",)
    local = True

    async def run(self, ctx: RuleContext[ChangeResponsibleSettings]) -> dict[str, Any]:
        user_id = ctx.user_id(ctx.settings.user_id, "user_id")

        def work(session: Session) -> dict[str, Any]:
            if session.get(User, user_id) is None:
                raise RuleFailed(f"settings.user_id: user {user_id} does not exist")
            item = locked_item(session, ctx.item_id)
            previous = item.responsible_id
            item.responsible_id = user_id
            session.add(item)
            return {"previous_id": previous, "user_id": user_id}

        return await ctx.finish(work)


# -- change stage ----------------------------------------------------------------------------------


class ChangeStageSettings(BaseModel):
    model_config = settings_config({"stage": "INVOICE"})
    stage: StageCode


class ChangeStage(RuleType[ChangeStageSettings]):
    name = "change_stage"
    group = "helpers"
    title = "Change stage"
    description = "Moves the item to another stage of its pipeline."
    settings = ChangeStageSettings
    returns = ("stage",)
    local = True

    def check(self, settings: ChangeStageSettings, env: RuleEnv) -> Iterable[Problem]:
        if settings.stage == env.stage:
            return [(("stage",), f"the item is already in stage {env.stage!r}; name another stage")]
        return stage_problem(settings.stage, env.stage_codes, ("stage",), "this pipeline")

    async def run(self, ctx: RuleContext[ChangeStageSettings]) -> dict[str, Any]:
        ctx.request_move(ctx.settings.stage)
        return {"stage": ctx.settings.stage}


# -- update fields ---------------------------------------------------------------------------------


def _check_field_value(name: str, value: Any) -> None:
    if has_placeholder(value):
        return
    if name == "title" and not (isinstance(value, str) and value.strip()):
        raise ValueError("title must be a non-empty text")
    if name == "amount" and value is not None:
        if isinstance(value, bool) or number_or_none(value) is None:
            raise ValueError(f"amount: {value!r} is not a number")
    if name == "currency" and value is not None and not (isinstance(value, str) and re.fullmatch(r"[A-Z]{3}", value)):
        raise ValueError(f"currency: {value!r} is not a three-letter code such as USD")
    if name == "close_date" and value is not None:
        try:
            date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"close_date: {value!r} is not a date (YYYY-MM-DD)") from None


class UpdateFieldsSettings(BaseModel):
    """Keys: title, amount, currency, close_date, or Fields.<custom field>. Values may hold placeholders."""

    model_config = settings_config({"fields": {"amount": "{{Variables.Total}}", "Fields.delivery": "courier"}})
    fields: dict[str, Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)] | int | float | bool | None] = Field(
        min_length=1, max_length=100,
        description='Each field to set and its value: title, amount, currency, close_date, or a custom field as '
        'Fields.<its name>; values may hold placeholders. {"amount": "{{Variables.Total}}", "Fields.delivery": '
        '"courier"}',
    )

    @field_validator("fields")
    @classmethod
    def _fields(cls, fields: dict[str, Any]) -> dict[str, Any]:
        for name, value in fields.items():
            if name.startswith(CUSTOM_FIELD_PREFIX):
                if not name[len(CUSTOM_FIELD_PREFIX):].strip():
                    raise ValueError("Fields. needs a custom field name: Fields.<name>")
                continue
            if name not in UPDATABLE_FIELDS:
                raise ValueError(f"{name!r} cannot be set; use {', '.join(UPDATABLE_FIELDS)} or Fields.<custom field>")
            _check_field_value(name, value)
        return fields



def _convert(name: str, value: Any) -> Any:
    convert = STANDARD_FIELDS[name]
    if value in (None, ""):
        return None
    try:
        return convert(value)
    except (TypeError, ValueError) as error:
        raise RuleFailed(f"settings.fields.{name}: {value!r} is not a valid {name}") from error


class UpdateFields(RuleType[UpdateFieldsSettings]):
    name = "update_fields"
    group = "helpers"
    title = "Update fields"
    description = "Sets item fields (title, amount, currency, close date, custom fields)."
    settings = UpdateFieldsSettings
    returns = ("updated",)
    local = True

    async def run(self, ctx: RuleContext[UpdateFieldsSettings]) -> dict[str, Any]:
        values = {name: ctx.render(value) if isinstance(value, str) else value
                  for name, value in ctx.settings.fields.items()}

        def work(session: Session) -> dict[str, Any]:
            item = locked_item(session, ctx.item_id)
            custom = dict(item.fields or {})
            for name, value in values.items():
                if name.startswith(CUSTOM_FIELD_PREFIX):
                    custom[name.removeprefix(CUSTOM_FIELD_PREFIX)] = value
                elif name in STANDARD_FIELDS:
                    setattr(item, name, _convert(name, value))
                else:
                    raise RuleFailed(f"settings.fields.{name}: unknown field")
            item.fields = custom
            item.updated_at = ctx.at
            session.add(item)
            ctx.changed = sorted(values)
            return {"updated": sorted(values)}

        return await ctx.finish(work)


# -- edit variable ---------------------------------------------------------------------------------


class EditVariableSettings(BaseModel):
    """`set` replaces the value, `append` adds to a text or list, `clear` empties it."""

    model_config = settings_config({"name": "City", "value": "{{Rule.addr.city}}", "op": "set"})
    name: Identifier
    value: Scalar | list[Scalar] = None
    op: Literal["set", "append", "clear"] = "set"

    @model_validator(mode="after")
    def _value(self) -> EditVariableSettings:
        if self.op == "clear" and self.value is not None:
            raise ValueError("op 'clear' takes no value")
        if self.op != "clear" and self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        return self


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


class EditVariable(RuleType[EditVariableSettings]):
    name = "edit_variable"
    group = "helpers"
    title = "Edit variable"
    description = "Sets, appends to or clears a variable that later rules read as {{Variables.<name>}}."
    settings = EditVariableSettings
    returns = ("value",)
    auxiliary = True
    local = True

    def variable_name(self, settings: EditVariableSettings) -> str:
        return settings.name

    async def run(self, ctx: RuleContext[EditVariableSettings]) -> dict[str, Any]:
        """Sets, appends to or clears `Variables.<name>`; the value may be a constant or hold placeholders
        (a value that is exactly one placeholder keeps its type: a number stays a number)."""
        name, op = ctx.settings.name, ctx.settings.op
        current = (ctx.data.get("Variables") or {}).get(name)
        if op == "clear":
            value = _cleared(current)
        else:
            rendered = ctx.render_value(ctx.settings.value)
            value = rendered if op == "set" else _appended(name, current, rendered)
        ctx.set_variable(name, value)
        return {"value": value}


# -- math operation --------------------------------------------------------------------------------


class MathOperationSettings(BaseModel):
    """Variables.<variable> = left <op> right; `round` rounds left to `digits` decimals."""

    model_config = settings_config(
        {"variable": "Total", "left": "{{Deal.Amount}}", "op": "multiply", "right": 1.23, "digits": 2}
    )
    variable: Identifier
    left: NumberOrPlaceholder
    op: Literal["add", "subtract", "multiply", "divide", "round"]
    right: NumberOrPlaceholder | None = None
    digits: int = Field(default=2, ge=0, le=10)

    @model_validator(mode="after")
    def _operands(self) -> MathOperationSettings:
        if self.op != "round" and self.right is None:
            raise ValueError(f"op {self.op!r} needs right")
        if self.op == "divide" and self.right == 0:
            raise ValueError("right: division by zero")
        return self


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


def _number(ctx: RuleContext, key: str, raw: Any) -> Decimal:
    """The operand `settings.<key>` (`raw`), rendered, as a Decimal; RuleFailed naming the setting otherwise."""
    value = ctx.render_value(raw)
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


class MathOperation(RuleType[MathOperationSettings]):
    name = "math_operation"
    group = "helpers"
    title = "Math operation"
    description = "Computes a number into a variable: add, subtract, multiply, divide, round."
    settings = MathOperationSettings
    returns = ("value",)
    auxiliary = True
    local = True

    def variable_name(self, settings: MathOperationSettings) -> str:
        return settings.variable

    async def run(self, ctx: RuleContext[MathOperationSettings]) -> dict[str, Any]:
        """`Variables.<variable> = left <op> right` with numbers from fields, constants or variables."""
        settings = ctx.settings
        op = settings.op
        left = _number(ctx, "left", settings.left)
        right = None if op == "round" else _number(ctx, "right", settings.right)
        if op == "divide" and right == 0:
            raise RuleFailed(f"settings.right: division by zero ({settings.right!r} is 0)")
        try:
            value = as_json_number(compute(op, left, right, settings.digits))
        except DecimalException as error:
            raise RuleFailed(f"settings.op: {op} of {left} and {right} has no result ({type(error).__name__})") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise RuleFailed(f"settings.op: {op} of {left} and {right} is too large a number")
        ctx.set_variable(settings.variable, value)
        return {"value": value}


# -- wait ------------------------------------------------------------------------------------------


class WaitSettings(BaseModel):
    """Waits until the item field changes, or until the timeout passes (whichever comes first)."""

    model_config = settings_config({"until_field_changes": "amount", "timeout": "3d"})
    until_field_changes: WatchableField | None = None
    timeout: DurationText | None = None

    @model_validator(mode="after")
    def _something(self) -> WaitSettings:
        if self.until_field_changes is None and self.timeout is None:
            raise ValueError("give until_field_changes, timeout, or both")
        return self




class Wait(RuleType[WaitSettings]):
    name = "wait"
    group = "helpers"
    title = "Wait"
    description = "Waits until an item field changes or a timeout passes; later after-previous rules wait for it."
    settings = WaitSettings
    returns = ("changed", "field")
    local = True

    async def run(self, ctx: RuleContext[WaitSettings]) -> dict[str, Any]:
        """After this rule, the stage entry waits until the watched field changes or the timeout passes; the
        wait's end gives the results `changed` and `field` (None when the time passed)."""
        watched, timeout = ctx.settings.until_field_changes, ctx.settings.timeout
        ctx.wait_for_fields([watched] if watched else [], duration_seconds(ctx, timeout) if timeout else None)
        return {}


# -- webhook ---------------------------------------------------------------------------------------


class WebhookSettings(BaseModel):
    """Calls the URL with the item's data (or `body`). With `wait_for_callback` the rules after it wait
    until the outside system posts its values to the callback URL (sent as `callback_url` in a JSON body
    and in the `X-Stageflow-Callback` header), or until `callback_timeout` passes (then `timed_out` is
    true). The names in `returns` become this rule's results, with `status_code`. A GET sends no body."""

    model_config = settings_config(
        {
            "url": "https://erp.example.com/orders?deal={{Deal.Id}}",
            "method": "POST",
            "headers": {"X-Api-Key": "{{Constants.ErpKey}}"},
            "body": {"title": "{{Deal.Title}}", "amount": "{{Deal.Amount}}"},
            "timeout_seconds": 10,
            "wait_for_callback": True,
            "callback_timeout": "2h",
            "returns": ["order_no"],
        }
    )
    url: Annotated[str, StringConstraints(min_length=1, max_length=2000), AfterValidator(check_url)]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")],
        Annotated[str, StringConstraints(max_length=2000)],
    ] = Field(default_factory=dict, max_length=50)
    body: dict[str, Any] | Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)] | None = None
    """Default: the item's data tree as JSON."""
    timeout_seconds: float = Field(default=10, gt=0, le=60)
    wait_for_callback: bool = False
    callback_timeout: DurationText = "24h"
    returns: list[Identifier] = Field(default_factory=list, max_length=50)

    @field_validator("returns")
    @classmethod
    def _unique(cls, returns: list[str]) -> list[str]:
        if len(set(returns)) != len(returns) or {"status_code", "timed_out"} & set(returns):
            raise ValueError(
                "return names must be unique; status_code (and timed_out with a callback) are always returned"
            )
        return returns




def _body(ctx: RuleContext[WebhookSettings], callback: str | None) -> tuple[Any, str | None, str | None]:
    """(JSON body, text body, its content type) from `settings.body`; the default is the item's data."""
    body = ctx.settings.body
    if isinstance(body, str):
        text = ctx.render(body)
        try:
            json.loads(text)
        except ValueError:
            return None, text, "text/plain; charset=utf-8"
        return None, text, "application/json"
    payload = item_payload(ctx) if body is None else ctx.render_value(body)
    if callback is not None:
        payload.setdefault("callback_url", callback)
    return payload, None, None


class Webhook(RuleType[WebhookSettings]):
    name = "webhook"
    group = "helpers"
    title = "Webhook"
    description = (
        "Calls an outside HTTP endpoint with the item's data; may wait for values posted back to a callback URL."
    )
    settings = WebhookSettings
    returns = ("status_code",)
    returns_from_settings = True

    def result_names(self, settings: WebhookSettings | None = None) -> tuple[str, ...]:
        if settings is None:
            return self.returns
        return ("status_code", *settings.returns, *(("timed_out",) if settings.wait_for_callback else ()))

    async def run(self, ctx: RuleContext[WebhookSettings]) -> dict[str, Any]:
        """Calls `settings.url` with the item's data (or the rendered `body`); results are `status_code` and
        the `returns` values of the JSON answer (or, with `wait_for_callback`, of the values posted back)."""
        settings = ctx.settings
        url = render_url(settings.url, ctx.data)
        headers = render_headers(settings.headers, ctx.data)
        callback = None
        if settings.wait_for_callback:
            callback = await ctx.callback_url(duration_seconds(ctx, settings.callback_timeout))
            headers[CALLBACK_HEADER] = callback
        headers[IDEMPOTENCY_HEADER] = idempotency_key(ctx)
        json_body, content, content_type = (None, None, None) if settings.method == "GET" else _body(ctx, callback)
        if content_type and not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = content_type
        response = await call_endpoint(
            ctx, settings.method, url, headers=headers, json_body=json_body, content=content,
            timeout=float(settings.timeout_seconds), where="settings.url",
        )
        returns = list(settings.returns)
        return {"status_code": response.status_code, **returned_values(response, returns, must_answer=callback is None)}
