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
    assert changes["hello"]["fields"] == ["position"] and changes["hello"]["values"] == {"position": [1, 2]}
    assert "values" not in automation_changes(old, new)[0]
