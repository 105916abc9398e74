"""Save-time problems as (location, message) pairs, and pydantic's errors turned into them."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

Problem = tuple[tuple[str | int, ...], str]
"""A save-time problem: the location inside the settings (or filter, delay, condition) and the message."""

UNION_TAGS = frozenset({"<text>", "<field>", "<in_days>"})
"""Tags of the union branches in settings types (`fields.Moment`): parts of a pydantic location, not keys."""


class ProblemsError(ValueError):
    """Something that cannot be understood; `problems` are (location, message) pairs."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(located(loc, msg) for loc, msg in problems))
        self.problems = problems


def located(loc: Sequence[str | int], msg: str) -> str:
    return f"{'.'.join(str(part) for part in loc)}: {msg}" if loc else msg


_INTERNAL_LOC = frozenset({"str", "int", "float", "bool", "none", "list", "dict", "decimal", "date", "datetime"})


def clean_loc(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """Drops the parts of a pydantic location that name union branches rather than keys."""
    return tuple(
        part for part in loc
        if not (isinstance(part, str) and (part in UNION_TAGS or part in _INTERNAL_LOC or "[" in part))
    )


def problems_of(error: ValidationError) -> list[Problem]:
    merged: dict[tuple[str | int, ...], list[str]] = {}
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        messages = merged.setdefault(clean_loc(item["loc"]), [])
        if message not in messages:
            messages.append(message)
    return [(loc, " or ".join(messages)) for loc, messages in merged.items()]

