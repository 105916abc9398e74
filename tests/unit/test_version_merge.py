"""A rule or trigger edited on a version another admin replaced: what the other save changed is taken where the edit
left the field alone, and each field both changed is a clash that keeps the edit."""

from __future__ import annotations

from models.domain.versions import automation_changes, merge_piece

BASE = {"name": "remind", "type": "add_timeline_entry", "delay": "30d",
        "settings": {"text": "A month on", "kind": "comment", "author_id": None}}


def test_fields_only_the_other_save_changed_are_taken_and_the_edit_keeps_its_own():
    theirs = {**BASE, "delay": "7d", "settings": {**BASE["settings"], "author_id": 4}}
    mine = {**BASE, "name": "reminder", "settings": {"text": "Anna's text", "kind": "comment"}}
    merged = merge_piece(BASE, theirs, mine, "rule")
    assert merged.piece == {"name": "reminder", "type": "add_timeline_entry", "delay": "7d",
                            "settings": {"text": "Anna's text", "kind": "comment", "author_id": 4}}
    assert merged.taken == ["delay", "settings.author_id"] and merged.clashes == {}


def test_a_field_both_changed_differently_is_a_clash_and_one_both_changed_alike_is_neither():
    theirs = {**BASE, "delay": "7d", "settings": {**BASE["settings"], "text": "Boris"}}
    mine = {**BASE, "delay": "7d", "settings": {**BASE["settings"], "text": "Anna"}}
    merged = merge_piece(BASE, theirs, mine, "rule")
    assert merged.piece == mine and merged.taken == [] and merged.clashes == {"settings.text": "Boris"}


def test_a_setting_the_other_save_removed_is_removed_and_a_condition_it_cleared_is_cleared():
    base = {**BASE, "condition": {"all": [{"field": "Deal.Amount", "op": ">", "value": 5}]},
            "settings": {**BASE["settings"], "kind": "note"}}
    theirs = {**BASE, "condition": None, "settings": {"text": "A month on"}}
    mine = {**base, "delay": "31d"}
    merged = merge_piece(base, theirs, mine, "rule")
    assert merged.piece["condition"] is None and merged.piece["settings"] == {"text": "A month on", "author_id": None}
    assert merged.piece["delay"] == "31d" and merged.taken == ["condition", "settings.kind"]


def test_a_type_the_other_save_changed_is_one_clash_and_nothing_is_mixed():
    theirs = {"name": "remind", "type": "notify_employee", "settings": {"to": "responsible", "text": "Call"}}
    mine = {**BASE, "delay": "1d"}
    merged = merge_piece(BASE, theirs, mine, "rule")
    assert merged.piece == mine and merged.taken == [] and merged.clashes == {"type": "notify_employee"}


def test_a_triggers_filter_merges_key_by_key():
    base = {"name": "paid", "type": "custom", "filter": {"event": "paid"}, "allow_backwards": False}
    theirs = {**base, "filter": {"event": "paid", "source": "stripe"}}
    mine = {**base, "allow_backwards": True}
    merged = merge_piece(base, theirs, mine, "trigger")
    assert merged.piece == {**base, "allow_backwards": True, "filter": {"event": "paid", "source": "stripe"}}
    assert merged.taken == ["filter.source"]


def test_a_setting_that_is_none_is_no_change():
    stored = {"stages": {"NEW": {"rules": [BASE]}}}
    typed = {"stages": {"NEW": {"rules": [{**BASE, "settings": {"text": "A month on", "kind": "comment"}}]}}}
    assert automation_changes(stored, typed) == []


def test_a_name_the_other_save_changed_is_taken_and_one_both_changed_is_a_clash():
    theirs = {**BASE, "name": "reminder"}
    assert merge_piece(BASE, theirs, {**BASE, "delay": "7d"}, "rule").piece["name"] == "reminder"
    merged = merge_piece(BASE, theirs, {**BASE, "name": "nudge"}, "rule")
    assert merged.piece["name"] == "nudge" and merged.clashes == {"name": "reminder"}
