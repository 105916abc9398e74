"""What one saved automation changes of another, rule by rule and trigger by trigger.

A rule or a trigger is known by its stage and its name (unique in its stage). A change names what differs of it:
for a rule its `type`, `start`, `delay`, `condition`, `settings` and `position` in the stage; for a trigger its
`type`, `filter`, `condition`, `allow_backwards`, `as_user_id` and `position`. A piece's position changed when
its place among the pieces both versions have changed: a rule below an added or removed one has not moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["rule", "trigger"]
RULE_FIELDS = ("type", "start", "delay", "condition", "settings")
TRIGGER_FIELDS = ("type", "filter", "condition", "allow_backwards", "as_user_id")
FOLLOWED = ("type", "delay", "condition", "settings")
"""What a rule an entry is waiting on takes from a newer version (`in_flight=apply`): its place in the stage and its
start stay as the entry began."""
SPLIT = ("settings", "filter")
"""The fields whose keys are merged one by one: each setting of a rule, each filter of a trigger."""
DEFAULTS: dict[str, Any] = {"start": "on_entry", "delay": None, "condition": None, "settings": {}, "filter": None,
                            "allow_backwards": False, "as_user_id": None}


def _value(piece: Mapping[str, Any], name: str) -> Any:
    """A field of a rule or trigger as compared: a setting (or filter) that is None is as good as absent."""
    value = piece.get(name, DEFAULTS.get(name))
    if name in SPLIT and isinstance(value, Mapping):
        value = {key: inner for key, inner in value.items() if inner is not None}
    return DEFAULTS.get(name) if value in (None, {}) and name in DEFAULTS else value


def piece_changes(old: Mapping[str, Any], new: Mapping[str, Any], kind: Kind) -> list[str]:
    """The fields of a rule (or a trigger) that differ between two versions of it, position apart."""
    names = RULE_FIELDS if kind == "rule" else TRIGGER_FIELDS
    return [name for name in names if _value(old, name) != _value(new, name)]


def _pieces(config: Mapping[str, Any], stage: str, part: str) -> list[Mapping[str, Any]]:
    return list(((config.get("stages") or {}).get(stage) or {}).get(part) or [])


def _stages(old: Mapping[str, Any], new: Mapping[str, Any], order: list[str] | None) -> list[str]:
    seen = [*(order or []), *(new.get("stages") or {}), *(old.get("stages") or {})]
    return list(dict.fromkeys(seen))


def moved_names(before: list[Any], after: list[Any]) -> set[Any]:
    """The names both orders hold whose place among those common names changed: the fewest names that, taken out
    and put back, turn `before` into `after` (an added or removed name alone moves none)."""
    common = set(before) & set(after)
    rank = {name: place for place, name in enumerate(name for name in before if name in common)}
    order = [name for name in after if name in common]
    # The longest run of `order` already in `before`'s order stays; every other common name moved.
    tails: list[int] = []
    back: list[int | None] = [None] * len(order)
    ends: list[int] = []
    for index, name in enumerate(order):
        low, high = 0, len(tails)
        while low < high:
            middle = (low + high) // 2
            if tails[middle] < rank[name]:
                low = middle + 1
            else:
                high = middle
        back[index] = ends[low - 1] if low else None
        if low == len(tails):
            tails.append(rank[name])
            ends.append(index)
        else:
            tails[low], ends[low] = rank[name], index
    kept: set[Any] = set()
    index = ends[-1] if ends else None
    while index is not None:
        kept.add(order[index])
        index = back[index]
    return common - kept


def automation_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], order: list[str] | None = None, *, by_setting: bool = False
) -> list[dict[str, Any]]:
    """Every rule and trigger `new` adds, removes or changes against `old`, stage by stage (in `order`, the
    pipeline's stage order, when given): `{"stage", "kind", "name", "change", "fields"}`. `by_setting`: a changed
    setting (or filter) is named on its own (`settings.text`), not as `settings`, and each change says what each of
    its fields was and became (`"values": {"settings.text": [old, new]}`, None for a field one side has not)."""
    changes: list[dict[str, Any]] = []
    for stage in _stages(old, new, order):
        for part, kind in (("rules", "rule"), ("triggers", "trigger")):
            before = {piece.get("name"): (position, piece) for position, piece in enumerate(_pieces(old, stage, part))}
            after = {piece.get("name"): (position, piece) for position, piece in enumerate(_pieces(new, stage, part))}
            moved = moved_names(list(before), list(after))
            for name, (position, piece) in after.items():
                if name not in before:
                    changes.append({"stage": stage, "kind": kind, "name": name, "change": "added", "fields": []})
                    continue
                old_position, old_piece = before[name]
                changed = field_changes(old_piece, piece, kind) if by_setting else piece_changes(old_piece, piece, kind)
                fields = changed + (["position"] if name in moved else [])
                if not fields:
                    continue
                change = {"stage": stage, "kind": kind, "name": name, "change": "changed", "fields": fields}
                if by_setting:
                    was, now = _fields(old_piece, kind), _fields(piece, kind)
                    change["values"] = {field: [was.get(field), now.get(field)] for field in changed}
                    change["values"] |= {"position": [old_position + 1, position + 1]} if "position" in fields else {}
                changes.append(change)
            for name in before:
                if name not in after:
                    changes.append({"stage": stage, "kind": kind, "name": name, "change": "removed", "fields": []})
    return changes


def piece_of(config: Mapping[str, Any], stage: str, part: str, name: str | None) -> Mapping[str, Any] | None:
    """The rule (`part` "rules") or trigger of `stage` named `name`."""
    return next((piece for piece in _pieces(config, stage, part) if piece.get("name") == name), None) if name else None


def renamed_piece(
    before: Mapping[str, Any], now: Mapping[str, Any], stage: str, part: str, piece: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The rule (or trigger) of `stage` that `piece` of the automation `before` became in `now` under another name:
    the one piece of its type `now` has there that `before` had not (None: it was removed, or it cannot be told)."""
    known = {other.get("name") for other in _pieces(before, stage, part)}
    added = [other for other in _pieces(now, stage, part)
             if other.get("name") not in known and other.get("type") == piece.get("type")]
    return added[0] if len(added) == 1 else None


def rule_of(config: Mapping[str, Any], stage: str, name: str) -> Mapping[str, Any] | None:
    return piece_of(config, stage, "rules", name)


_ABSENT = object()


def _fields(piece: Mapping[str, Any], kind: Kind) -> dict[str, Any]:
    """A rule or trigger as its fields, each setting (`settings.text`) and filter on its own; an empty setting is
    absent."""
    fields: dict[str, Any] = {}
    for name in RULE_FIELDS if kind == "rule" else TRIGGER_FIELDS:
        value = _value(piece, name)
        if name in SPLIT:
            fields.update({f"{name}.{key}": inner for key, inner in (value or {}).items() if inner != ""})
        else:
            fields[name] = value
    return fields


def field_changes(old: Mapping[str, Any], new: Mapping[str, Any], kind: Kind) -> list[str]:
    """The fields of a rule (or a trigger) that differ between two versions of it, each setting and filter on its
    own (`delay`, `settings.text`)."""
    before, after = _fields(old, kind), _fields(new, kind)
    return [name for name in dict.fromkeys([*before, *after]) if before.get(name, _ABSENT) != after.get(name, _ABSENT)]


@dataclass
class Merged:
    """A rule or trigger as one admin edited it, on a version another admin saved meanwhile."""

    piece: dict[str, Any]
    """The edit, with what only the other save changed taken from it."""
    taken: list[str]
    """The fields (`delay`, `settings.text`) only the other save changed: the edit now has them as it saved them."""
    clashes: dict[str, Any]
    """The fields both changed, each differently: the edit keeps its own; the value the other save gave each."""


def merge_piece(base: Mapping[str, Any], theirs: Mapping[str, Any], mine: Mapping[str, Any], kind: Kind) -> Merged:
    """`mine`, edited from `base`, on `theirs`, the same piece as another save left it (perhaps renamed). A field only
    the other save changed is taken from it (its name too); a field both changed differently keeps `mine`. A changed
    type is a clash as a whole: settings of one type mean nothing to another."""
    was, now, typed = _fields(base, kind), _fields(theirs, kind), _fields(mine, kind)
    if now["type"] != was["type"]:
        return Merged(dict(mine), [], {} if now["type"] == typed["type"] else {"type": now["type"]})
    piece = {**mine, **{name: dict(mine.get(name) or {}) for name in SPLIT if name in mine or name in theirs}}
    taken: list[str] = []
    clashes: dict[str, Any] = {}
    if theirs.get("name") != base.get("name") and theirs.get("name") != mine.get("name"):
        if mine.get("name") == base.get("name"):
            piece["name"] = theirs.get("name")
            taken.append("name")
        else:
            clashes["name"] = theirs.get("name")
    for field in dict.fromkeys([*was, *now, *typed]):
        before, after, edited = (fields.get(field, _ABSENT) for fields in (was, now, typed))
        if after == before or after == edited:
            continue
        if edited != before:
            clashes[field] = None if after is _ABSENT else after
            continue
        taken.append(field)
        outer, _, inner = field.partition(".")
        if not inner:
            piece[field] = after
        elif after is _ABSENT:
            piece[outer].pop(inner, None)
        else:
            piece[outer][inner] = after
    for name in SPLIT:
        if name in piece and not piece[name]:
            piece[name] = DEFAULTS[name]
    return Merged(piece, taken, clashes)
