"""Placeholders in rule texts: `{{Deal.Title}}`, `{{Constants.Courier}}`, `{{Rule.invoice.public_url}}`.

Plain substitution of dotted paths into a data tree (never a template language). Pure: used by the
save-time checks in `models.domain.validation` and by the engine when a rule runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

PLACEHOLDER_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
"""`{{ path }}`; group 1 is the path without the surrounding whitespace."""


class UnresolvedPlaceholder(KeyError):
    """A placeholder path that does not exist in the data tree."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{{{{{self.path}}}}}: {self.reason}"


def find_placeholders(text: str) -> list[str]:
    """The distinct placeholder paths in `text`, in order of first appearance."""
    found: list[str] = []
    for match in PLACEHOLDER_RE.finditer(text):
        path = match.group(1)
        if path not in found:
            found.append(path)
    return found


def is_single_placeholder(text: str) -> bool:
    """True when `text` is exactly one placeholder (surrounding whitespace allowed)."""
    return PLACEHOLDER_RE.fullmatch(text.strip()) is not None


def split_path(path: str) -> list[str]:
    """`"Deal.Responsible.Name"` → `["Deal", "Responsible", "Name"]`; raises on an empty segment."""
    segments = [segment.strip() for segment in path.split(".")]
    if not path.strip() or any(not segment for segment in segments):
        raise UnresolvedPlaceholder(path, "a placeholder is a dotted path such as Deal.Title")
    return segments


def resolve(path: str, data: Mapping[str, Any]) -> Any:
    """The value at `path` in `data`.

    A missing key raises `UnresolvedPlaceholder`. An absent relation on the way (e.g. `Deal.Contact`
    is None because the deal has no contact) resolves to None, which renders as an empty string.
    """
    current: Any = data
    walked: list[str] = []
    for segment in split_path(path):
        if current is None:
            return None
        if isinstance(current, Mapping):
            if segment not in current:
                where = ".".join(walked) or "the data"
                raise UnresolvedPlaceholder(path, f"{where} has no {segment!r}")
            current = current[segment]
        elif isinstance(current, Sequence) and not isinstance(current, str):
            if not segment.isdigit() or int(segment) >= len(current):
                raise UnresolvedPlaceholder(path, f"{'.'.join(walked)} has no item {segment!r}")
            current = current[int(segment)]
        else:
            raise UnresolvedPlaceholder(path, f"{'.'.join(walked)} is a single value, it has no {segment!r}")
        walked.append(segment)
    return current


class Money(float):
    """An amount of money (a deal's amount, what it has been paid): a number like any other, which a text shows with
    its cents when it has some (1500.50), whole otherwise (1500), and as it is when finer than cents (1500.125)."""

    def text(self) -> str:
        if self.is_integer():
            return str(int(self))
        if round(self, 2) != self:  # finer than cents: shown as it is, not rounded away
            return format(Decimal(repr(float(self))), "f")
        return f"{self:.2f}"


def money(value: float | None) -> Money | None:
    return None if value is None else Money(value)


def format_value(value: Any) -> str:
    """How a value appears inside a text: None → "", numbers plainly (money with its cents), dates in ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Money):
        return value.text()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=format_value)
    return str(value)


def render(text: str, data: Mapping[str, Any], *, strict: bool = True) -> str:
    """`text` with every placeholder replaced by its formatted value.

    With `strict` (the default) an unresolvable placeholder raises `UnresolvedPlaceholder`;
    otherwise it renders as an empty string.
    """

    def substitute(match: re.Match[str]) -> str:
        try:
            return format_value(resolve(match.group(1), data))
        except UnresolvedPlaceholder:
            if strict:
                raise
            return ""

    return PLACEHOLDER_RE.sub(substitute, text)


def render_value(value: Any, data: Mapping[str, Any], *, strict: bool = True) -> Any:
    """A settings value with placeholders filled in.

    A string that is exactly one placeholder yields the raw value (a number stays a number, a user id
    stays an int); other strings are rendered; dicts and lists are rendered item by item.
    """
    if isinstance(value, str):
        if is_single_placeholder(value):
            try:
                return resolve(PLACEHOLDER_RE.fullmatch(value.strip()).group(1), data)
            except UnresolvedPlaceholder:
                if strict:
                    raise
                return None
        return render(value, data, strict=strict)
    if isinstance(value, Mapping):
        return {key: render_value(inner, data, strict=strict) for key, inner in value.items()}
    if isinstance(value, list):
        return [render_value(inner, data, strict=strict) for inner in value]
    return value


def empty_placeholders(value: Any, data: Mapping[str, Any]) -> list[str]:
    """The placeholders in a settings value (its texts, item by item) that resolve to nothing: no value or empty
    text, so that they render as nothing (`Say hello to {{Deal.Contact.Name}}` for a deal without a contact)."""
    if isinstance(value, Mapping):
        return [path for inner in value.values() for path in empty_placeholders(inner, data)]
    if isinstance(value, list):
        return [path for inner in value for path in empty_placeholders(inner, data)]
    if not isinstance(value, str):
        return []
    empty = []
    for path in find_placeholders(value):
        try:
            found = resolve(path, data)
        except UnresolvedPlaceholder:
            continue
        if found is None or (isinstance(found, str) and not found.strip()):
            empty.append(path)
    return empty


def resolve_user_ref(value: Any, data: Mapping[str, Any]) -> int | None:
    """A user-id setting (an id, or one placeholder such as `{{Constants.Courier}}`) as an int.

    Raises `UnresolvedPlaceholder` when the placeholder is missing or does not hold a user id.
    """
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    match = PLACEHOLDER_RE.fullmatch(text)
    if match is None:
        raise UnresolvedPlaceholder(text, "is neither a user id nor a placeholder")
    held = resolve(match.group(1), data)
    if isinstance(held, float) and held.is_integer():
        held = int(held)
    if isinstance(held, str) and held.strip().isdigit():
        held = int(held.strip())
    if isinstance(held, bool) or not isinstance(held, int) or held < 1:
        raise UnresolvedPlaceholder(match.group(1), f"holds {held!r}, not a user id")
    return held
