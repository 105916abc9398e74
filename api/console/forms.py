"""Forms made from the catalogue's JSON Schemas (a rule type's settings, a trigger type's filter), the values a
posted form gives back, and the problems of a 422 placed next to the fields they name."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from api.deps import MAX_ID
from api.schemas import CURRENCY_PATTERN, EMAIL_PATTERN, PHONE_PATTERN
from models.domain.data_tree import ITEM_TREE, entity_root
from models.domain.fields import USER_REF_DESCRIPTION, field_title

LONG_TEXT = 300
"""Strings that may be longer than this get a text area."""


@dataclass
class FormField:
    name: str
    """The form field's name: `settings.text`, `filter.status`."""
    title: str
    kind: str
    """text, textarea, number, boolean, select, lines (one value per line), json, text_or_json (a setting written as
    text, `+3d`, or as a JSON object)."""
    required: bool = False
    description: str = ""
    options: list[str] = field(default_factory=list)
    value: str = ""
    checked: bool = False
    error: str = ""
    suggest: str = ""
    """The id of a list of values the browser offers as one types (`people`: the CRM's users by name)."""


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without its `null` alternative; a union of several types stays a union."""
    options = [option for option in schema.get("anyOf") or [] if option.get("type") != "null"]
    if len(options) == 1:
        return {**schema, **options[0]}
    return schema


def _names_a_user(schema: dict[str, Any]) -> bool:
    """The setting is a user: an id, or a placeholder that yields one."""
    return _plain(schema).get("description") == USER_REF_DESCRIPTION


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
    items = plain.get("items") or {}
    if kind == "array" and (items.get("type") in ("string", "integer", "number") or _names_a_user(items)):
        return "lines", []
    if "anyOf" in plain and all(option.get("type") in ("string", "number", "integer") for option in plain["anyOf"]):
        return "text", []
    options = [option for option in plain.get("oneOf") or plain.get("anyOf") or [] if option.get("type") != "null"]
    if any(option.get("type") == "string" for option in options) and not any(
        option.get("type") in ("integer", "number", "boolean") for option in options
    ):
        return "text_or_json", []
    return "json", []


def read_json(text: str) -> Any:
    """JSON text's value; ValueError for text that is not JSON (nested too deep to read included)."""
    try:
        return json.loads(text)
    except RecursionError as error:
        raise ValueError("nested too deep") from error


def _text_or_json(text: str) -> Any:
    """A setting that is text or an object: text that reads as a JSON object, array or quoted string is that value;
    any other text (`+3d`, `2027-01-15`, a placeholder `{{Deal.Fields.due}}`, a template that is not JSON) is the
    text itself."""
    if text.startswith(("{", "[", '"')) and not text.startswith("{{"):
        try:
            return read_json(text)
        except ValueError:
            pass
    return text


def _shown(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "lines":
        return "\n".join(str(part) for part in value) if isinstance(value, list) else str(value)
    as_typed = isinstance(value, str) and _text_or_json(value) == value
    if kind == "json" or (kind == "text_or_json" and not as_typed):
        return json.dumps(value, ensure_ascii=False, indent=1)
    return str(value)


def named_people(users: Any) -> dict[int, str]:
    """Each person's name by id, for those whose name no one else has (and that does not read as an id or a
    placeholder): a user setting shows the name, and reads back as the same id."""
    by_name = people_by_name(users)
    return {person.id: person.name for person in users if len(by_name[person.name.casefold()]) == 1
            and not person.name.strip().isdigit() and "{{" not in person.name}


def _by_name(prop: dict[str, Any], kind: str, value: Any, names: Mapping[int, str]) -> Any:
    """A user setting's id (or ids, one per line) as the person's name, where the name says who it is."""
    if kind == "text" and _names_a_user(prop) and isinstance(value, int):
        return names.get(value, value)
    if kind == "lines" and _names_a_user(_plain(prop).get("items") or {}) and isinstance(value, list):
        return [names.get(part, part) if isinstance(part, int) else part for part in value]
    return value


def schema_fields(schema: dict[str, Any], prefix: str, values: dict[str, Any] | None,
                  typed: Any = None, names: Mapping[int, str] | None = None) -> list[FormField]:
    """One form field per property of the schema, filled with `values` (else the defaults; a person by name, from
    `names`), or, when a posted form comes back, with exactly what was `typed` into it."""
    values = values or {}
    required = set(schema.get("required") or [])
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        kind, options = _kind(prop)
        key = f"{prefix}.{name}"
        if typed is not None:
            shown, checked = str(typed.get(key) or ""), typed.get(key) in ("on", "true", "1")
        else:
            value = values.get(name, prop.get("default"))
            shown = _shown(kind, _by_name(prop, kind, value, names or {}))
            checked = bool(value) if kind == "boolean" else False
        fields.append(FormField(
            name=key, title=prop.get("title") or field_title(name), kind=kind, required=name in required,
            description=prop.get("description") or "", options=options, value=shown, checked=checked,
            suggest="people" if kind == "text" and _names_a_user(prop) else "",
        ))
    return fields


def schema_labels(schema: dict[str, Any], prefix: str) -> dict[str, str]:
    """The label each of the schema's form fields shows: `settings.text` → `Text`."""
    properties = schema.get("properties") or {}
    return {f"{prefix}.{name}": prop.get("title") or field_title(name) for name, prop in properties.items()}


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


def _person(text: str, people: Mapping[str, list[int]] | None, label: str, key: str,
            problems: dict[str, str]) -> Any:
    """A user field as typed: an id or a placeholder as it is, else the name of one person, as their id."""
    if people is None or text.isdigit() or "{{" in text:
        return _number(text)
    ids = people.get(text.casefold(), [])
    if len(ids) == 1:
        return ids[0]
    said = (f"{label}: {len(ids)} people are named {text!r}: pick one from the list (it fills in the id)"
            if ids else f"{label}: no person is named {text!r}: pick one from the list, or give an id")
    problems[key] = f"{problems[key]}; {said}" if key in problems else said
    return None


def people_by_name(users: Any) -> dict[str, list[int]]:
    """The ids of the people of each name (case aside): what a user field typed as a name may mean."""
    found: dict[str, list[int]] = {}
    for person in users:
        found.setdefault(person.name.casefold(), []).append(person.id)
    return found


def read_schema_fields(schema: dict[str, Any], prefix: str, form: Any, problems: dict[str, str],
                       people: Mapping[str, list[int]] | None = None) -> dict[str, Any]:
    """The values a posted form gives for the schema's properties; an empty field is left out (its default
    applies). Text that cannot be read (bad JSON, a name no one of `people` has) is left out too, its problem added
    to `problems` under the field's name."""
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
            items = _plain(prop).get("items") or {}
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if _names_a_user(items):
                label = prop.get("title") or field_title(name)
                values[name] = [_person(line, people, label, key, problems) for line in lines]
                if key in problems:
                    del values[name]
            elif items.get("type") in ("integer", "number"):
                values[name] = [_number(line) for line in lines]
            else:
                values[name] = lines
        elif kind == "text_or_json":
            values[name] = _text_or_json(text)
            if values[name] == text and text.startswith(("{", "[")) and "{{" not in text:
                try:
                    read_json(text)
                except ValueError as error:
                    del values[name]
                    problems[key] = (f"{prop.get('title') or name}: reads as JSON that is broken ({error}); correct "
                                     "the JSON, or write text that does not start with { or [")
        elif kind == "json":
            try:
                values[name] = read_json(text)
            except ValueError as error:
                problems[key] = (f"{prop.get('title') or name}: is not JSON ({error}); write it as JSON, "
                                 'text in double quotes ("Gdańsk")')
        elif kind == "text" and _names_a_user(prop):
            value = _person(text, people, prop.get("title") or field_title(name), key, problems)
            if key not in problems:
                values[name] = value
        elif kind == "text" and "anyOf" in _plain(prop):
            values[name] = _number(text)
        else:
            values[name] = text
    return values


PLAIN_MESSAGES = {
    "Field required": "is required: fill it in",
    "String should have at least 1 character": "is empty: fill it in",
    f"String should match pattern '{EMAIL_PATTERN}'": "is not an e-mail address such as name@example.com",
    f"String should match pattern '{PHONE_PATTERN}'": "is not a phone number such as +48 601 234 567",
    f"String should match pattern '{CURRENCY_PATTERN}'": "is not three letters such as EUR",
    "Input should be a valid number, unable to parse string as a number": "is not a number such as 1500.50",
    "Input should be a finite number": "is not a number such as 1500.50",
}
"""Pydantic's words where a person would say it otherwise."""

LIMIT_WORDS = {"ge": "{} or more", "gt": "more than {}", "le": "{} or less", "lt": "less than {}"}

CONDITION_PARTS = {"field": "field", "op": "operator", "value": "value"}


def form_id(text: str) -> int | None:
    """An id typed or carried in a form or a query (`7`), or None for any other text."""
    return int(text) if re.fullmatch(r"[0-9]{1,10}", text) and 0 < int(text) <= MAX_ID else None


def typed_values(form: Any, fields: tuple[str, ...]) -> tuple[dict[str, str], dict[str, Any]]:
    """A form's fields as typed (trimmed), and the body they make: the fields that are not empty."""
    values = {name: str(form.get(name) or "").strip() for name in fields}
    return values, {name: value for name, value in values.items() if value}


def refusal_in_form(error: ValidationError | HTTPException, labels: dict[str, str]) -> tuple[int, dict[str, str]]:
    """A refused body as a form shows it: the status to answer with, each problem under its field's label."""
    code = error.status_code if isinstance(error, HTTPException) else 422
    return code, place_problems(refusal_problems(error), ["body"], labels)


def refusal_problems(error: ValidationError | HTTPException) -> list[dict[str, Any]]:
    """The problems of a refused body, each located as the API locates it (`["body", "name"]`)."""
    if isinstance(error, ValidationError):
        return [{**problem, "loc": ["body", *problem.get("loc", ())]} for problem in error.errors()]
    if isinstance(error.detail, list):
        return error.detail
    return [{"loc": [], "msg": str(error.detail)}]


def plain(message: str) -> str:
    """A check's message without the prefixes meant for programs."""
    message = message.removeprefix("Value error, ")
    return PLAIN_MESSAGES.get(message, message)


def decimal_text(text: str) -> str:
    """A number as typed, with a decimal comma read as a point (`12,50` → `12.50`, `7,5` → `7.5`); a comma before
    three digits (`1,500`) may group thousands, so it is left to be refused as not a number."""
    return text.strip().replace(",", ".") if re.fullmatch(r"\s*-?[0-9]+,[0-9]{1,2}\s*", text) else text


def problem_words(problem: dict[str, Any]) -> str:
    """A refused value's problem as a person would say it: a number's limit (`must be 0 or more`), else `plain`."""
    context = problem.get("ctx") or {}
    for limit, words in LIMIT_WORDS.items():
        if limit in context and isinstance(context[limit], (int, float)):
            return "must be " + words.format(f"{context[limit]:g}")
    return plain(str(problem.get("msg", "")))


def _sub_words(name: str, rest: list[str]) -> str:
    """Where inside a field a problem is: `row 2, operator` for a condition's `any.1.op`."""
    if name == "condition":
        rows = [str(int(part) + 1) for part in rest if part.isdigit()]
        last = CONDITION_PARTS.get(rest[-1]) if rest else None
        return ", ".join(part for part in (f"row {'.'.join(rows)}" if rows else "", last or "") if part)
    if name == "delay" and rest:
        return {"after": "wait", "field": "date field", "offset": "before or after by", "at": "clock time"}.get(
            rest[0], rest[0])
    return ""


def place_problems(problems: list[dict[str, Any]], where: list[Any], labels: dict[str, str]) -> dict[str, str]:
    """The 422 problems located at or below `where` (["body", "stages", "NEW", "rules", 0]) by form field name
    (`name`, `delay`, `settings.text`), each as the field's label in the form and what is wrong (the API's
    own location prefix left out); every other problem under `form`, as the API words it."""
    placed: dict[str, str] = {}
    for problem in problems:
        loc = [str(part) for part in problem.get("loc") or []]
        message = str(problem.get("msg", ""))
        where_text = [str(part) for part in where]
        if loc[: len(where)] != where_text or len(loc) == len(where):
            key = "form"
            message = f"{'.'.join(loc[1:])}: {message}" if loc[1:] else message
        else:
            rest = loc[len(where):]
            split = 2 if rest[0] in ("settings", "filter") and len(rest) > 1 else 1
            key = ".".join(rest[:split])
            inner = rest[split:]
            located = f": {'.'.join(rest)}: "
            if located in message:
                message = message.split(located, 1)[1]
            if key not in labels:
                key = "form"
                message = f"{'.'.join(rest)}: {plain(message)}"
            else:
                detail = _sub_words(key, inner)
                message = f"{labels[key]}{f', {detail}' if detail else ''}: {plain(message)}"
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


# -- the delay editor: one kind of delay at a time ---------------------------------------------------------------

DELAY_KINDS = {"now": "at once", "after": "after a time", "date": "before or after a date field",
               "clock": "at a clock time"}
DELAY_INPUTS = ("after", "field", "side", "offset", "at")
DRAFT_HORIZON = "90d"
"""How long a draft's simulation runs unless the admin says otherwise."""
DATE_FIELDS = ("close_date", "created_at")
"""The item's own date fields; custom ones are written `Fields.<name>`."""


def delay_inputs(delay: Any) -> dict[str, Any]:
    """A stored delay as the editor's inputs: its kind, and the values of that kind."""
    delay = {"after": delay} if isinstance(delay, str) else dict(delay or {})
    offset = str(delay.get("offset") or "")
    kind = "date" if delay.get("field") else "after" if delay.get("after") else "clock" if delay.get("at") else "now"
    return {"kind": kind, "after": delay.get("after") or "", "field": delay.get("field") or "",
            "side": "before" if offset.startswith("-") else "after", "offset": offset.lstrip("+-"),
            "at": delay.get("at") or "", "business_hours": bool(delay.get("business_hours"))}


def typed_delay_inputs(form: Any) -> dict[str, Any]:
    """The editor's inputs as posted; a form without a kind (a script's post) has the kind its values give."""
    inputs: dict[str, Any] = {name: str(form.get(f"delay_{name}") or "").strip()[:100] for name in DELAY_INPUTS}
    inputs["business_hours"] = form.get("delay_business_hours") in ("on", "true", "1")
    kind = str(form.get("delay_kind") or "")
    if not kind:
        kind = "date" if inputs["field"] else "after" if inputs["after"] else "clock" if inputs["at"] else "now"
    inputs["kind"] = kind
    return inputs


def read_delay(inputs: dict[str, Any], problems: dict[str, str]) -> Any:
    """The delay the editor's inputs describe, in the form the API takes (`"24h"` or an object); what is missing
    for the chosen kind is added to `problems` under `delay`."""
    kind = inputs["kind"]
    if kind not in DELAY_KINDS:
        problems["delay"] = f"Delay: choose one of {', '.join(DELAY_KINDS.values())}"
        return None
    if kind == "now":
        return None
    delay: dict[str, Any] = {}
    if kind == "after":
        if not inputs["after"]:
            problems["delay"] = "Delay, wait: write how long to wait, such as 30m, 24h, 3d or 6mo"
        delay["after"] = inputs["after"]
    elif kind == "date":
        if not inputs["field"]:
            problems["delay"] = "Delay, date field: name the date field, such as close_date or Fields.delivery_date"
        delay["field"] = inputs["field"]
        if inputs["offset"]:
            delay["offset"] = ("-" if inputs["side"] == "before" else "") + inputs["offset"].lstrip("+-")
    elif not inputs["at"]:
        problems["delay"] = "Delay, clock time: write the time of day, such as 09:00"
    if inputs["at"]:
        delay["at"] = inputs["at"]
    if inputs["business_hours"]:
        delay["business_hours"] = True
    return delay["after"] if list(delay) == ["after"] else delay


# -- a simulation's script, one step per line -------------------------------------------------------------------

SCRIPT_ACTIONS = {"move", "payment", "event"}


def read_script(text: str) -> list[dict[str, Any]]:
    """`+2d move PREPARE_DOCUMENTS`, `+4d payment 1200`, `+5d event document_opened`: one step per line."""
    steps = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if len(words) != 3 or words[1] not in SCRIPT_ACTIONS:
            raise FormProblem("script", f"line {number}: write +<time> move <STAGE>, +<time> payment "
                                              f"<amount> or +<time> event <type>")
        at, action, value = words
        if action == "payment":
            try:
                steps.append({"at": at, "payment": {"amount": float(value)}})
            except ValueError:
                raise FormProblem("script", f"line {number}: {value!r} is not an amount") from None
        elif action == "event":
            steps.append({"at": at, "event": {"type": value}})
        else:
            steps.append({"at": at, "move": value})
    return steps
