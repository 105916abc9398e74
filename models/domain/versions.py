"""What one saved automation changes of another, rule by rule and trigger by trigger.

A rule or a trigger is known by its stage and its name (unique in its stage). A change names what differs of it:
for a rule its `type`, `start`, `delay`, `condition`, `settings` and `position` in the stage; for a trigger its
`type`, `filter`, `condition`, `allow_backwards`, `as_user_id` and `position`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Kind = Literal["rule", "trigger"]
RULE_FIELDS = ("type", "start", "delay", "condition", "settings")
TRIGGER_FIELDS = ("type", "filter", "condition", "allow_backwards", "as_user_id")
FOLLOWED = ("type", "delay", "condition", "settings")
"""What a rule an entry is waiting on takes from a newer version (`in_flight=apply`): its place in the stage and its
start stay as the entry began."""
DEFAULTS: dict[str, Any] = {"start": "on_entry", "delay": None, "condition": None, "settings": {}, "filter": None,
                            "allow_backwards": False, "as_user_id": None}


def _value(piece: Mapping[str, Any], name: str) -> Any:
    value = piece.get(name, DEFAULTS.get(name))
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


def automation_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], order: list[str] | None = None
) -> list[dict[str, Any]]:
    """Every rule and trigger `new` adds, removes or changes against `old`, stage by stage (in `order`, the
    pipeline's stage order, when given): `{"stage", "kind", "name", "change", "fields"}`."""
    changes: list[dict[str, Any]] = []
    for stage in _stages(old, new, order):
        for part, kind in (("rules", "rule"), ("triggers", "trigger")):
            before = {piece.get("name"): (position, piece) for position, piece in enumerate(_pieces(old, stage, part))}
            after = {piece.get("name"): (position, piece) for position, piece in enumerate(_pieces(new, stage, part))}
            for name, (position, piece) in after.items():
                if name not in before:
                    changes.append({"stage": stage, "kind": kind, "name": name, "change": "added", "fields": []})
                    continue
                old_position, old_piece = before[name]
                fields = piece_changes(old_piece, piece, kind) + (["position"] if position != old_position else [])
                if fields:
                    changes.append({"stage": stage, "kind": kind, "name": name, "change": "changed", "fields": fields})
            for name in before:
                if name not in after:
                    changes.append({"stage": stage, "kind": kind, "name": name, "change": "removed", "fields": []})
    return changes


def rule_of(config: Mapping[str, Any], stage: str, name: str) -> Mapping[str, Any] | None:
    return next((rule for rule in _pieces(config, stage, "rules") if rule.get("name") == name), None)
