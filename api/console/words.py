"""The engine's timeline texts as people read them: stage names for codes, rule types by title, times in the
company's zone to the minute. The item page's timeline and every simulation table speak alike."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from api.console.pages import when
from api.lookups import stage_names
from api.usecases.rule_types import rule_catalogue
from api.usecases.users import users_by_name

ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?")
TYPE_NAME = re.compile(r"\(([a-z][a-z0-9_]*)\)")


def engine_words(text: str, zone: str, titles: Mapping[str, str]) -> str:
    """Times in the company's zone to the minute, rule types by title."""
    text = ISO_MOMENT.sub(lambda found: when(found.group(0), zone), text)
    return TYPE_NAME.sub(lambda found: f"({titles.get(found.group(1), found.group(1))})", text)


def entry_words(kind: str, text: str, data: Mapping[str, Any] | None, names: Mapping[str, str], zone: str,
                titles: Mapping[str, str]) -> str:
    """One timeline entry's text in words; a stage change names its stages."""
    if kind == "stage_changed":
        before, after = (data or {}).get("from"), (data or {}).get("to")
        text = text.replace(f"{before or '—'} → {after}",
                            f"{names.get(before, before) or '—'} → {names.get(after, after)}", 1)
    return engine_words(text, zone, titles)


def words_for(session: Session, pipeline_id: int) -> tuple[dict[str, str], dict[str, str]]:
    """The pipeline's stage names by code and every rule type's title by name."""
    return stage_names(session, pipeline_id), rule_titles(session)


def rule_titles(session: Session) -> dict[str, str]:
    """Every rule type's title by name."""
    return {kind["name"]: kind["title"] for kind in rule_catalogue(session)}


def simulation_in_words(session: Session, answer: dict[str, Any], pipeline_id: int, zone: str) -> dict[str, Any]:
    """A simulation's answer with each timeline entry's text in words, as the item page shows its timeline, and the
    people its notifications go to by name."""
    names, titles = words_for(session, pipeline_id)
    for entry in answer.get("timeline") or []:
        entry["text"] = entry_words(entry.get("kind", ""), entry.get("text", ""), entry.get("data"), names, zone,
                                    titles)
    people = {person.id: person.name for person in users_by_name(session)}
    for note in (answer.get("effects") or {}).get("notifications") or []:
        note["user"] = people.get(note.get("user_id"), f"user {note.get('user_id')}")
    return answer
