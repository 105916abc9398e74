"""What a version changed against another, as the console's diff page shows it: each setting on its own, with
what it was and became."""

from __future__ import annotations

from models.domain.versions import automation_changes


def test_a_change_by_setting_says_what_each_field_was_and_became():
    old = {"stages": {"NEW": {"rules": [
        {"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hi"}},
        {"name": "remind", "type": "add_timeline_entry", "delay": "30d", "settings": {"text": "A month", "kind": "note"}},
    ]}}}
    new = {"stages": {"NEW": {"rules": [
        {"name": "remind", "type": "add_timeline_entry", "delay": "7d", "settings": {"text": "A week"}},
        {"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hi"}},
    ]}}}
    changes = {change["name"]: change for change in automation_changes(old, new, by_setting=True)}
    assert changes["remind"]["values"] == {
        "delay": ["30d", "7d"], "settings.text": ["A month", "A week"], "settings.kind": ["note", None],
        "position": [2, 1],
    }
    assert "hello" not in changes, "of two rules that swapped places, one is named moved"
    assert "values" not in automation_changes(old, new)[0]


def _rules(*names: str) -> dict:
    return {"stages": {"NEW": {"rules": [{"name": name, "type": "add_timeline_entry"} for name in names]}}}


def test_rules_below_an_added_or_removed_rule_have_not_moved():
    added = automation_changes(_rules("a", "b", "c"), _rules("new", "a", "b", "c"))
    assert [(change["name"], change["change"]) for change in added] == [("new", "added")]
    removed = automation_changes(_rules("a", "b", "c"), _rules("b", "c"))
    assert [(change["name"], change["change"]) for change in removed] == [("a", "removed")]


def test_a_rule_put_elsewhere_is_the_one_named_moved():
    to_top = automation_changes(_rules("a", "b", "c", "d"), _rules("d", "a", "b", "c"), by_setting=True)
    assert [(change["name"], change["fields"], change["values"]) for change in to_top] == [
        ("d", ["position"], {"position": [4, 1]})]
    two = automation_changes(_rules("a", "b", "c", "d", "e"), _rules("b", "a", "c", "e", "d", "x"))
    assert sorted(change["name"] for change in two if change["change"] == "changed") in (
        ["a", "d"], ["a", "e"], ["b", "d"], ["b", "e"])
    assert all(change["fields"] == ["position"] for change in two if change["change"] == "changed")
