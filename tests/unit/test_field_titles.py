"""The labels the console's rule forms and `GET /rule-types` give each setting: words, not code names."""

from __future__ import annotations

from activities.rules import RULE_TYPES
from api.console.forms import schema_fields
from models.domain.fields import field_title
from models.domain.rule_types import rule_type_catalogue


def test_a_setting_is_labelled_in_words():
    assert [field_title(name) for name in (
        "author_id", "signer_user_id", "recipient_ids", "timeout_seconds", "url", "wait_for_pdf", "text", "id")] == [
        "Author", "Signer", "Recipients", "Timeout (seconds)", "URL", "Wait for PDF", "Text", "Id"]


def test_no_built_in_setting_shows_a_code_name():
    titles = {name: prop["title"] for kind in rule_type_catalogue(RULE_TYPES)
              for name, prop in kind["settings_schema"]["properties"].items()}
    assert titles["author_id"] == "Author" and titles["responsible_id"] == "Responsible" and titles["op"] == "Operation"
    assert not [title for title in titles.values() if "_" in title or title.endswith((" Id", " id", " ids"))]


def test_a_custom_type_without_titles_gets_labels_from_its_names():
    [field] = schema_fields({"properties": {"approver_user_id": {"type": "string"}}}, "settings", None)
    assert field.title == "Approver"
