"""Forms made from the catalogue's JSON Schemas (a rule type's settings, a trigger type's filter), the values a
posted form gives back, and the problems of a 422 placed next to the fields they name."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from models.domain.data_tree import ITEM_TREE, entity_root

LONG_TEXT = 300
"""Strings that may be longer than this get a text area."""


@dataclass
class FormField:
    name: str
    """The form field's name: `settings.text`, `filter.status`."""
    title: str
    kind: str
    """text, textarea, number, boolean, select, lines (one value per line), json."""
    required: bool = False
    description: str = ""
    options: list[str] = field(default_factory=list)
    value: str = ""
    checked: bool = False
    error: str = ""


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without its `null` alternative; a union of several types stays a union."""
    options = [option for option in schema.get("anyOf") or [] if option.get("type") != "null"]
    if len(options) == 1:
        return {**schema, **options[0]}
    return schema


def _kind(schema: dict[str, Any]) -> tuple[str, list[str]]:
    plain = _plain(schema)
    if "enum" in plain:
        return "select", [str(option) for option in plain["enum"]]
    kind = plain.get("type")
    if kind == "boolean":
        return "boolean", []
    if kind in ("integer", "number"):
        return "number", []
    if kind == "string":
        return ("textarea" if (plain.get("maxLength") or 0) > LONG_TEXT else "text"), []
    if kind == "array" and (plain.get("items") or {}).get("type") in ("string", "integer", "number"):
        return "lines", []
    if "anyOf" in plain and all(option.get("type") in ("string", "number", "integer") for option in plain["anyOf"]):
        return "text", []
    return "json", []


def _shown(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "lines":
        return "\n".join(str(part) for part in value) if isinstance(value, list) else str(value)
    if kind == "json":
        return json.dumps(value, ensure_ascii=False, indent=1)
    return str(value)


def schema_fields(schema: dict[str, Any], prefix: str, values: dict[str, Any] | None) -> list[FormField]:
    """One form field per property of the schema, filled with `values` (else the defaults)."""
    values = values or {}
    required = set(schema.get("required") or [])
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        kind, options = _kind(prop)
        value = values.get(name, prop.get("default"))
        fields.append(FormField(
            name=f"{prefix}.{name}", title=prop.get("title") or name, kind=kind, required=name in required,
            description=prop.get("description") or "", options=options, value=_shown(kind, value),
            checked=bool(value) if kind == "boolean" else False,
        ))
    return fields


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


class FormProblem(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name


def read_schema_fields(schema: dict[str, Any], prefix: str, form: Any) -> dict[str, Any]:
    """The values a posted form gives for the schema's properties; an empty field is left out (its default
    applies). Text that cannot be read (bad JSON) is a FormProblem naming the field."""
    values: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind, _ = _kind(prop)
        key = f"{prefix}.{name}"
        if kind == "boolean":
            values[name] = form.get(key) in ("on", "true", "1")
            continue
        text = (form.get(key) or "").strip()
        if not text:
            continue
        if kind == "number":
            values[name] = _number(text)
        elif kind == "lines":
            item_kind = (_plain(prop).get("items") or {}).get("type")
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            values[name] = [_number(line) for line in lines] if item_kind in ("integer", "number") else lines
        elif kind == "json":
            try:
                values[name] = json.loads(text)
            except ValueError as error:
                raise FormProblem(key, f"is not JSON: {error}") from None
        elif kind == "text" and "anyOf" in _plain(prop):
            values[name] = _number(text)
        else:
            values[name] = text
    return values


def place_problems(problems: list[dict[str, Any]], where: list[Any]) -> dict[str, str]:
    """The 422 problems located at or below `where` (["body", "stages", "NEW", "rules", 0]) by form field name
    (`name`, `delay`, `settings.text`); every other problem under `form`."""
    placed: dict[str, str] = {}
    for problem in problems:
        loc = list(problem.get("loc") or [])
        message = str(problem.get("msg", ""))
        if loc[: len(where)] != where or len(loc) == len(where):
            key = "form"
            message = f"{'.'.join(str(part) for part in loc[1:])}: {message}"
        else:
            rest = [str(part) for part in loc[len(where):]]
            key = ".".join(rest[:2]) if rest[0] in ("settings", "filter") and len(rest) > 1 else rest[0]
        placed[key] = f"{placed[key]}; {message}" if key in placed else message
    return placed


def placeholder_paths(entity: str, constants: dict[str, Any] | None = None) -> list[str]:
    """The placeholders an item's rules can use: its fields, its people, the pipeline's constants."""
    paths: list[str] = []

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for name, inner in node.items():
                walk(f"{prefix}.{name}", inner)
        elif node is None:
            paths.append(prefix)

    walk(entity_root(entity), ITEM_TREE)
    paths += [f"Constants.{name}" for name in (constants or {})]
    return paths
