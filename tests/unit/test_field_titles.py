"""The labels the console's rule forms and `GET /rule-types` give each setting: words, not code names."""

from __future__ import annotations

from typing import Any

from activities.rules import RULE_TYPES
from api.console.forms import schema_fields
from models.domain.fields import field_title
from models.domain.rule_types import rule_type_catalogue


def test_a_setting_is_labelled_in_words():
    assert [field_title(name) for name in (
        "author_id", "signer_user_id", "recipient_ids", "address_ids", "cc_user_ids", "url", "wait_for_pdf", "text",
        "id", "business_hours")] == [
        "Author", "Signer", "Recipients", "Addresses", "CCs", "URL", "Wait for PDF", "Text", "Id", "Business hours"]


def _titles(schema: Any) -> dict[str, str]:
    """Every property's title in a schema, those of the models it refers to ($defs) too."""
    found: dict[str, str] = {}
    if isinstance(schema, dict):
        for name, prop in (schema.get("properties") or {}).items():
            found[name] = prop.get("title")
        for inner in schema.values():
            found |= _titles(inner)
    elif isinstance(schema, list):
        for inner in schema:
            found |= _titles(inner)
    return found


def test_no_built_in_setting_shows_a_code_name():
    titles: dict[str, str] = {}
    for kind in rule_type_catalogue(RULE_TYPES):
        titles |= _titles(kind["settings_schema"])
    assert titles["author_id"] == "Author" and titles["responsible_id"] == "Responsible" and titles["op"] == "Operation"
    assert (titles["timeout_seconds"], titles["in_days"], titles["business_hours"]) == (
        "Timeout (seconds)", "In days", "Business hours")
    assert not [title for title in titles.values() if "_" in title or title.endswith((" Id", " id", " ids"))]


def test_a_custom_type_without_titles_gets_labels_from_its_names():
    [field] = schema_fields({"properties": {"approver_user_id": {"type": "string"}}}, "settings", None)
    assert field.title == "Approver"
