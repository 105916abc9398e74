"""Custom rule types: the rule types apps register (`POST /rule-types`), built from the JSON schema of their settings.

A registered type's rules run through one activity, `rule.custom` (`CustomRules`): it reads the type's
registration, checks the stored settings against its schema, and POSTs the rule, its rendered settings and the
item's data to the type's handler URL (`activities.outbound`); the results are the type's declared `returns`
from the JSON answer.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from collections.abc import Collection, Mapping, Sequence
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model
from sqlmodel import Session, select

from activities.outbound import IDEMPOTENCY_HEADER, call_endpoint, idempotency_key, item_payload, returned_values
from activities.rule import RuleContext, RuleFailed
from models.domain.fields import MAX_TEXT_LENGTH, settings_config
from models.domain.problems import located, problems_of
from models.domain.rule_types import RuleType
from models.store import get_by
from models.tables import CustomRuleType

CUSTOM_TIMEOUT_SECONDS = 30.0


class CustomType(RuleType[BaseModel]):
    """One custom rule type: its settings model comes from its schema, its effect from its handler URL."""

    group = "custom"

    def __init__(
        self, *, name: str, title: str, description: str, settings: type[BaseModel], returns: tuple[str, ...],
        user_fields: tuple[str, ...], handler_url: str,
    ) -> None:
        self.name, self.title, self.description, self.settings = name, title, description, settings
        self.returns, self.user_fields, self.handler_url = returns, user_fields, handler_url

    @classmethod
    def from_row(cls, row: Any, reserved: Collection[str] = ()) -> CustomType:
        """The type a registration describes (a `CustomRuleType` row, or the body that registers one). Built once
        per registration: every rule of the type and every catalogue read reuses it."""
        if row.name in reserved:
            raise ValueError(f"name: {row.name!r} is a built-in rule type")
        return _built(row.name, json.dumps(row.settings_schema or {}, sort_keys=True), row.handler_url,
                      tuple(row.returns or ()), row.title or "")

    async def run(self, ctx: RuleContext[BaseModel]) -> dict[str, Any]:
        body = {**item_payload(ctx), "settings": ctx.render_value(ctx.settings.model_dump(mode="json"))}
        response = await call_endpoint(
            ctx, "POST", self.handler_url, headers={IDEMPOTENCY_HEADER: idempotency_key(ctx)}, json_body=body,
            timeout=CUSTOM_TIMEOUT_SECONDS, where=f"handler_url of rule type {self.name}",
        )
        return returned_values(response, list(self.returns), must_answer=True)


@lru_cache(maxsize=256)
def _built(name: str, schema: str, handler_url: str, returns: tuple[str, ...], title: str) -> CustomType:
    return custom_type(name, settings_schema=json.loads(schema), handler_url=handler_url, returns=returns,
                         title=title)


def custom_rule_types(session: Session) -> dict[str, CustomType]:
    """The custom rule types, by name, in the order they were registered."""
    rows = session.exec(select(CustomRuleType).order_by(CustomRuleType.id)).all()
    return {row.name: CustomType.from_row(row) for row in rows}


class StoredSettings(BaseModel):
    """The settings of a rule of a custom rule type as stored; `CustomRules` checks them against the type's own schema."""

    model_config = ConfigDict(extra="allow")


class CustomRules(RuleType[StoredSettings]):
    """The activity `rule.custom`: runs a rule of any custom rule type, as its registration says now."""

    name = "custom"
    group = "custom"
    title = "App rule"
    description = "Runs a rule of a type an app registered (POST /rule-types) by calling the type's handler URL."
    settings = StoredSettings

    async def run(self, ctx: RuleContext[StoredSettings]) -> dict[str, Any]:
        def load(session: Session) -> CustomType | None:
            row = get_by(session, CustomRuleType, name=ctx.rule_type)
            return None if row is None else CustomType.from_row(row)

        kind = await ctx.db(load)
        if kind is None:
            raise RuleFailed(f"type: rule type {ctx.rule_type!r} is not registered (POST /rule-types)")
        try:
            settings = kind.settings.model_validate(ctx.settings.model_dump())
        except ValidationError as error:
            raise RuleFailed("; ".join(located(("settings", *loc), msg) for loc, msg in problems_of(error))) from None
        ctx.settings = settings
        return await kind.run(ctx)


_JSON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "object": dict[str, Any]}


def _property_type(prop: str, spec: Mapping[str, Any]) -> Any:
    kind = spec.get("type", "string")
    if kind == "string":
        if "enum" in spec:
            values = spec["enum"]
            if not values or not all(isinstance(value, str) for value in values):
                raise ValueError(f"settings_schema.properties.{prop}.enum: give a list of strings")
            return Literal[tuple(values)]
        return Annotated[
            str,
            StringConstraints(
                min_length=int(spec.get("minLength", 0)),
                max_length=min(int(spec.get("maxLength", MAX_TEXT_LENGTH)), MAX_TEXT_LENGTH),
            ),
        ]
    if kind in ("integer", "number"):
        bounds = {key: spec[name] for key, name in (("ge", "minimum"), ("le", "maximum")) if name in spec}
        return Annotated[_JSON_TYPES[kind], Field(**bounds)]
    if kind == "array":
        items = spec.get("items") or {}
        inner = _property_type(f"{prop}.items", items) if items else Any
        return list[inner]
    if kind in _JSON_TYPES:
        return _JSON_TYPES[kind]
    raise ValueError(
        f"settings_schema.properties.{prop}.type: {kind!r} is not supported; use string, integer, number, "
        "boolean, array or object"
    )


def custom_type(
    name: str,
    *,
    settings_schema: Mapping[str, Any],
    handler_url: str,
    returns: Sequence[str] = (),
    title: str = "",
    description: str = "",
    user_fields: Sequence[str] = (),
    reserved: Collection[str] = (),
) -> CustomType:
    """A rule type an app registers (`POST /rule-types`): its settings model is built from a JSON schema
    of an object with simple properties (string, integer, number, boolean, array, object). Raises
    ValueError naming the part of the schema at fault; `reserved` are the built-in type names."""
    if name in reserved:
        raise ValueError(f"name: {name!r} is a built-in rule type")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,99}", name):
        raise ValueError(f"name: {name!r} must be lower-case letters, digits and underscores")
    if settings_schema.get("type", "object") != "object":
        raise ValueError("settings_schema.type: the settings are an object")
    properties = settings_schema.get("properties") or {}
    required = set(settings_schema.get("required") or [])
    unknown = required - set(properties)
    if unknown:
        raise ValueError(f"settings_schema.required: {', '.join(sorted(unknown))} not among the properties")
    fields: dict[str, Any] = {}
    example: dict[str, Any] = {}
    for prop, spec in properties.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", prop):
            raise ValueError(f"settings_schema.properties.{prop}: property names are identifiers")
        if not isinstance(spec, Mapping):
            raise ValueError(f"settings_schema.properties.{prop}: give an object such as {{\"type\": \"string\"}}")
        kind = _property_type(prop, spec)
        if prop in required:
            fields[prop] = (kind, Field(description=spec.get("description")))
        else:
            fields[prop] = (Optional[kind], Field(default=spec.get("default"), description=spec.get("description")))
        if "default" in spec or "examples" in spec:
            example[prop] = (spec.get("examples") or [spec.get("default")])[0]
    for key in user_fields:
        if key not in properties:
            raise ValueError(f"user_fields: {key!r} is not a settings property")
    model = create_model(
        f"CustomSettings_{name}", __config__=settings_config(example) if example else ConfigDict(extra="forbid"), **fields
    )
    for result in returns:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", result):
            raise ValueError(f"returns: {result!r} is not an identifier")
    return CustomType(
        name=name,
        title=title or name,
        description=description,
        settings=model,
        returns=tuple(returns),
        user_fields=tuple(user_fields),
        handler_url=handler_url,
    )
