"""The keys that make effects and timeline entries happen once. Every key is built here.

A rule's effect key is `<entry workflow id>/<rule name>` (the workflow id, not the run id, so a reset in the
Temporal UI finds what the first run did); what a rule writes is keyed below it (`<effect key>/<part>`), and
what the engine records about a rule is keyed by its outcome (`<effect key>/done`, `/skipped`, …).
"""

from __future__ import annotations

from workflows.types import item_workflow_id

OUTCOMES = ("scheduled", "rescheduled", "changed", "waiting", "done", "skipped", "cancelled", "wait-ended")


def effect_key(workflow_id: str, rule: str) -> str:
    """The key of one rule's effect in one stage entry."""
    return f"{workflow_id}/{rule}"


def part_key(effect: str, *parts: str | int) -> str:
    """The key of one thing a rule writes (`part_key(effect, "email", 3)`: the e-mail to user 3)."""
    return "/".join((effect, *(str(part) for part in parts)))


def outcome_key(workflow_id: str, rule: str, outcome: str) -> str:
    """The key of the timeline entry recording a rule's outcome (one of `OUTCOMES`)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown rule outcome {outcome!r}")
    return part_key(effect_key(workflow_id, rule), outcome)


def event_key(entity: str, item_id: int, event: str) -> str:
    """The key of the timeline entry that records an event reaching the item (`event`: its id)."""
    return f"{item_workflow_id(entity, item_id)}/event/{event}"


def stage_change_key(entity: str, item_id: int, entry_no: int) -> str:
    """The key of the timeline entry that records the item entering a stage: one per entry, ever."""
    return f"{item_workflow_id(entity, item_id)}/entry-{entry_no}/stage_changed"
