"""A rule's settings as the console's form shows them, posted back unchanged, are the same settings: for every
example of every built-in rule type, and for the text-or-object settings typed as an admin types them."""

from __future__ import annotations

import pytest

from activities.rules import RULE_TYPES
from api.console.forms import read_schema_fields, schema_fields

EXAMPLES = [
    (name, index, example)
    for name, kind in RULE_TYPES.items()
    for index, example in enumerate(kind.settings.model_json_schema().get("examples") or [])
]


def posted(schema: dict, values: dict) -> dict[str, str]:
    """What a browser posts for the form filled with `values`: each field's text, a checked box as "on"."""
    form: dict[str, str] = {}
    for field in schema_fields(schema, "settings", values):
        if field.kind == "boolean":
            if field.checked:
                form[field.name] = "on"
        else:
            form[field.name] = field.value
    return form


def read_back(rule_type: str, values: dict) -> tuple[dict, dict]:
    schema = RULE_TYPES[rule_type].settings.model_json_schema()
    problems: dict[str, str] = {}
    return read_schema_fields(schema, "settings", posted(schema, values), problems), problems


def test_every_rule_type_has_an_example_to_round_trip():
    assert {name for name, _, _ in EXAMPLES} == set(RULE_TYPES)


@pytest.mark.parametrize(("rule_type", "index", "example"), EXAMPLES, ids=[f"{n}-{i}" for n, i, _ in EXAMPLES])
def test_an_example_shown_and_posted_back_is_the_same_settings(rule_type, index, example):
    settings = RULE_TYPES[rule_type].settings
    values, problems = read_back(rule_type, example)
    assert problems == {}
    assert settings.model_validate(values) == settings.model_validate(example)


@pytest.mark.parametrize("deadline", [
    "+3d", "2027-01-15", "2027-01-15T14:00", "{{Deal.Fields.due}}", {"in_days": 1, "at": "14:00"},
    {"field": "close_date", "offset": "-1d"},
])
def test_a_deadline_round_trips_as_text_or_object(deadline):
    values, problems = read_back("create_task", {"title": "Call", "deadline": deadline})
    assert problems == {} and values["deadline"] == deadline


def test_a_deadline_typed_as_an_admin_types_it():
    schema = RULE_TYPES["create_task"].settings.model_json_schema()
    for typed, read in [("+3d", "+3d"), ('"+3d"', "+3d"), ("{{Deal.Fields.due}}", "{{Deal.Fields.due}}"),
                        ('{"in_days": 2}', {"in_days": 2})]:
        problems: dict[str, str] = {}
        values = read_schema_fields(schema, "settings", {"settings.title": "Call", "settings.deadline": typed}, problems)
        assert (values["deadline"], problems) == (read, {}), typed
    for broken in ("{oops", "[" * 5000):
        problems = {}
        values = read_schema_fields(schema, "settings", {"settings.title": "Call", "settings.deadline": broken}, problems)
        assert "deadline" not in values and problems["settings.deadline"].startswith("Deadline: reads as JSON"), broken


@pytest.mark.parametrize("body", ['{"title": "{{Deal.Title}}"}', '{"amount": {{Deal.Amount}}}', "plain text",
                                  {"title": "{{Deal.Title}}"}])
def test_a_webhook_body_keeps_being_text_or_an_object(body):
    values, problems = read_back("webhook", {"url": "https://example.com/hook", "body": body})
    assert problems == {} and values["body"] == body and type(values["body"]) is type(body)


@pytest.mark.parametrize("value", [5, 2.5, True, None, "{{Rule.addr.city}}", "Gdańsk", ["a", 1]])
def test_a_variables_value_keeps_its_type(value):
    values, problems = read_back("edit_variable", {"name": "City", "op": "set", "value": value})
    assert problems == {}
    assert values.get("value") == value and type(values.get("value")) is type(value)


def test_json_nested_too_deep_is_a_problem_at_its_field():
    schema = RULE_TYPES["webhook"].settings.model_json_schema()
    problems: dict[str, str] = {}
    values = read_schema_fields(schema, "settings", {"settings.url": "https://example.com/h",
                                                     "settings.headers": "[" * 5000}, problems)
    assert "headers" not in values and "nested too deep" in problems["settings.headers"]


def test_a_json_setting_that_is_not_json_says_how_to_write_text():
    problems: dict[str, str] = {}
    values = read_schema_fields(RULE_TYPES["edit_variable"].settings.model_json_schema(), "settings",
                                {"settings.name": "City", "settings.value": "Gdańsk"}, problems)
    assert "value" not in values
    assert problems["settings.value"].startswith("Value: is not JSON") and "text in double quotes" in problems["settings.value"]


@pytest.mark.parametrize("body", ["{broken", '[1, 2', '{"title": "Sofa",}'])
def test_a_webhook_body_that_starts_as_json_and_is_broken_is_a_problem_not_text(body):
    problems: dict[str, str] = {}
    values = read_schema_fields(RULE_TYPES["webhook"].settings.model_json_schema(), "settings",
                                {"settings.url": "https://example.com/h", "settings.body": body}, problems)
    assert "body" not in values
    assert problems["settings.body"].startswith("Body: reads as JSON that is broken")


def test_people_typed_by_name_become_their_ids_and_every_unknown_name_is_said():
    schema = RULE_TYPES["notify_employee"].settings.model_json_schema()
    people = {"marek manager": [3], "ola nowak": [4, 5]}
    problems: dict[str, str] = {}
    values = read_schema_fields(schema, "settings", {"settings.user_ids": "Marek Manager\n7\n{{Constants.Boss}}"},
                                problems, people)
    assert values["user_ids"] == [3, 7, "{{Constants.Boss}}"] and problems == {}
    read_schema_fields(schema, "settings", {"settings.user_ids": "Nobody\nOla Nowak"}, problems, people)
    assert problems["settings.user_ids"] == (
        "Users: no person is named 'Nobody': pick one from the list, or give an id; "
        "Users: 2 people are named 'Ola Nowak': pick one from the list (it fills in the id)")
