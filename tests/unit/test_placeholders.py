from __future__ import annotations

import json
from datetime import date, datetime, timezone
from types import SimpleNamespace
from decimal import Decimal

import pytest

from models.domain.data_tree import item_tree
from models.domain.placeholders import (
    PLACEHOLDER_RE,
    UnresolvedPlaceholder,
    find_placeholders,
    format_value,
    money,
    render,
    render_value,
    resolve,
    resolve_user_ref,
)

DATA = {
    "Deal": {
        "Id": 7,
        "Title": "Sofa for Anna",
        "Amount": 1500.0,
        "CloseDate": "2025-06-10",
        "Fields": {"colour": "green", "sizes": ["S", "M"]},
        "Responsible": {"Name": "Bob", "Supervisor": {"Name": "Carol"}},
        "Contact": None,
    },
    "Constants": {"Courier": 3, "Shop": {"City": "Kraków"}},
    "Variables": {"Total": Decimal("1845.00")},
    "Rule": {"addr": {"city": "Gdańsk"}},
}


def test_find_placeholders_in_order_without_duplicates() -> None:
    text = "Hi {{ Deal.Contact.Name }}, {{Deal.Title}} ({{Deal.Title}}) to {{Rule.addr.city}}"
    assert find_placeholders(text) == ["Deal.Contact.Name", "Deal.Title", "Rule.addr.city"]


def test_text_without_complete_placeholders_has_none() -> None:
    assert find_placeholders("{Deal.Title} {{Deal.Title ") == []
    assert PLACEHOLDER_RE.search('{"a": {"b": 1}}') is None


def test_resolve_walks_the_tree() -> None:
    assert resolve("Deal.Responsible.Supervisor.Name", DATA) == "Carol"
    assert resolve(" Deal . Fields . sizes . 1 ", DATA) == "M"
    assert resolve("Constants.Shop.City", DATA) == "Kraków"


def test_an_absent_relation_resolves_to_none() -> None:
    assert resolve("Deal.Contact.Name", DATA) is None
    assert render("Dear {{Deal.Contact.Name}}!", DATA) == "Dear !"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("Deal.Nope", "Deal has no 'Nope'"),
        ("Deal.Title.Length", "Deal.Title is a single value"),
        ("Rule.addr.zip", "Rule.addr has no 'zip'"),
        ("Deal.Fields.sizes.5", "has no item '5'"),
        ("Deal..Title", "dotted path"),
        ("", "dotted path"),
    ],
)
def test_a_missing_path_raises_naming_it(path: str, reason: str) -> None:
    with pytest.raises(UnresolvedPlaceholder) as raised:
        resolve(path, DATA)
    assert reason in str(raised.value)
    assert isinstance(raised.value, KeyError) and raised.value.path == path


def test_render_formats_values_plainly() -> None:
    text = "{{Deal.Id}}|{{Deal.Amount}}|{{Variables.Total}}|{{Deal.CloseDate}}|{{Rule.addr.city}}"
    assert render(text, DATA) == "7|1500|1845.00|2025-06-10|Gdańsk"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, ""),
        (True, "true"),
        (12, "12"),
        (1500.0, "1500"),
        (1500.5, "1500.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e20, "100000000000000000000"),
        (Decimal("10.50"), "10.50"),
        (money(1500.5), "1500.50"),
        (money(1500.0), "1500"),
        (money(0.1 + 0.2), "0.30000000000000004"),
        (money(1500.125), "1500.125"),
        (money(12.3), "12.30"),
        (date(2025, 1, 2), "2025-01-02"),
        (datetime(2025, 1, 2, 3, 4, tzinfo=timezone.utc), "2025-01-02T03:04:00+00:00"),
        (["a", 1], '["a", 1]'),
    ],
)
def test_format_value(value: object, shown: str) -> None:
    assert format_value(value) == shown


def test_money_is_a_number_for_conditions_and_shows_its_cents_in_texts() -> None:
    tree = item_tree(SimpleNamespace(id=7, title="Sofa", amount=1500.5, currency="EUR", paid=0.0, stage="NEW",
                                     pipeline_id=1, close_date=None, created_at=None, fields={}),
                     pipeline_name="Sales", stage_name="New", responsible=None, supervisor=None, contact=None,
                     company=None)
    assert render("total {{Deal.Amount}} {{Deal.Currency}}, paid {{Deal.Paid}}", {"Deal": tree}) == \
        "total 1500.50 EUR, paid 0"
    assert tree["Amount"] > 1500 and tree["Amount"] == 1500.5 and json.dumps(tree["Amount"]) == "1500.5"


def test_render_strict_and_lenient() -> None:
    with pytest.raises(UnresolvedPlaceholder, match="Deal has no 'Tittle'"):
        render("{{Deal.Tittle}}", DATA)
    assert render("[{{Deal.Tittle}}]", DATA, strict=False) == "[]"


def test_render_value_keeps_the_type_of_a_lone_placeholder() -> None:
    assert render_value("{{Constants.Courier}}", DATA) == 3
    assert render_value(" {{ Deal.Amount }} ", DATA) == 1500.0
    assert render_value({"to": ["{{Constants.Courier}}", "x {{Deal.Id}}"], "n": 5}, DATA) == {"to": [3, "x 7"], "n": 5}


def test_user_ids_may_come_from_a_placeholder() -> None:
    assert resolve_user_ref(5, DATA) == 5
    assert resolve_user_ref("{{ Constants.Courier }}", DATA) == 3
    assert resolve_user_ref(None, DATA) is None
    with pytest.raises(UnresolvedPlaceholder, match="holds 'Bob', not a user id"):
        resolve_user_ref("{{Deal.Responsible.Name}}", DATA)
    with pytest.raises(UnresolvedPlaceholder, match="Constants has no 'Nobody'"):
        resolve_user_ref("{{Constants.Nobody}}", DATA)
