"""Which trigger an event fires: filters by type, then the trigger's condition, scanned in pipeline order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities import conditions
from models.automation import AutomationConfig, TriggerConfig
from workflows.types import ItemEvent

BUILT_IN_EVENTS = {
    "payment_received",
    "task_status",
    "document_opened",
    "document_signed",
    "email_opened",
    "link_clicked",
    "field_changed",
    "responsible_changed",
    "webhook",
}


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _payment(spec: dict, data: dict, _stage: str, _trigger: TriggerConfig) -> bool:
    amount = _number(data.get("amount"))
    low, high = _number(spec.get("min_amount")), _number(spec.get("max_amount"))
    if low is not None and (amount is None or amount < low):
        return False
    if high is not None and (amount is None or amount > high):
        return False
    currency = spec.get("currency")
    return not currency or str(data.get("currency") or "").upper() == str(currency).upper()


def _task(spec: dict, data: dict, _stage: str, _trigger: TriggerConfig) -> bool:
    status = spec.get("status")
    if status and data.get("status") != status:
        return False
    words = spec.get("title_contains") or []
    if isinstance(words, str):
        words = [words]
    title = str(data.get("title") or "").lower()
    if words and not all(str(word).lower() in title for word in words):
        return False
    responsible = spec.get("responsible_id")
    if responsible and data.get("responsible_id") != responsible:
        return False
    created_by_stage = spec.get("created_by_stage")
    return not created_by_stage or data.get("stage") == created_by_stage


def _fields(spec: dict, data: dict, _stage: str, _trigger: TriggerConfig) -> bool:
    wanted = set(spec.get("fields") or [])
    return not wanted or bool(wanted & set(data.get("fields") or []))


def _webhook(_spec: dict, data: dict, stage: str, trigger: TriggerConfig) -> bool:
    return data.get("stage") == stage and data.get("trigger") == trigger.name


def _document(spec: dict, data: dict, _stage: str, _trigger: TriggerConfig) -> bool:
    template = spec.get("template")
    return not template or data.get("template") == template


def _any(_spec: dict, _data: dict, _stage: str, _trigger: TriggerConfig) -> bool:
    return True


FILTERS: dict[str, Callable[[dict, dict, str, TriggerConfig], bool]] = {
    "payment_received": _payment,
    "task_status": _task,
    "field_changed": _fields,
    "webhook": _webhook,
    "document_opened": _document,
    "document_signed": _document,
    "email_opened": _any,
    "link_clicked": _any,
    "responsible_changed": _any,
}


def trigger_accepts(trigger: TriggerConfig, stage: str, event: ItemEvent) -> bool:
    spec = dict(trigger.filter or {})
    if trigger.type == "custom":
        return event.type not in BUILT_IN_EVENTS and spec.get("event") == event.type
    if trigger.type != event.type:
        return False
    return FILTERS.get(trigger.type, _any)(spec, event.data or {}, stage, trigger)


def candidates(order: list[str], current: str) -> list[tuple[str, bool]]:
    """Stages to scan: those after the current one, then the earlier ones (only for backward triggers)."""
    if current not in order:
        return [(code, False) for code in order]
    position = order.index(current)
    return [(code, False) for code in order[position + 1:]] + [(code, True) for code in order[:position]]


def first_match(
    config: AutomationConfig, order: list[str], current: str, event: ItemEvent, data: dict[str, Any]
) -> tuple[str, TriggerConfig] | None:
    for stage, backwards in candidates(order, current):
        automation = config.stages.get(stage)
        if automation is None:
            continue
        for trigger in automation.triggers:
            if backwards and not trigger.allow_backwards:
                continue
            if not trigger_accepts(trigger, stage, event):
                continue
            if trigger.condition is not None and not conditions.evaluate(trigger.condition, data)[0]:
                continue
            return stage, trigger
    return None
