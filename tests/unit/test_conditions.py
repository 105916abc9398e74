from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from models.domain.conditions import ConditionInvalid, evaluate, parse_condition
from models.domain.wording import condition_words

DATA = {
    "Deal": {
        "Title": "Sofa for Anna",
        "Amount": 500,
        "Currency": "USD",
        "CloseDate": "2025-06-10",
        "CreatedAt": "2025-05-01T08:30:00+00:00",
        "Fields": {"priority": "10", "tags": ["vip", "Repeat"], "note": "", "weight": 12.5},
        "Contact": {"Name": None, "Email": "anna@example.com"},
    },
    "Constants": {"MinAmount": 1000, "Region": "North"},
    "Variables": {"Total": "1845.50"},
}


def check(condition: dict) -> tuple[bool, str]:
    return evaluate(condition, DATA)


def test_a_false_comparison_says_why() -> None:
    assert check({"field": "Deal.Amount", "op": ">", "value": 1000}) == (False, "Deal.Amount = 500 is not > 1000")


def test_a_true_comparison_says_why_too() -> None:
    assert check({"field": "Deal.Amount", "op": "<=", "value": 500}) == (True, "Deal.Amount = 500 is <= 500")


def test_numbers_compare_numerically_even_as_text() -> None:
    assert check({"field": "Deal.Fields.priority", "op": ">", "value": 9})[0]  # "10" > 9, not "10" < "9"
    assert check({"field": "Deal.Fields.priority", "op": ">", "value": "9"})[0]
    assert check({"field": "Variables.Total", "op": "=", "value": 1845.5})[0]
    assert check({"field": "Deal.Fields.weight", "op": "between", "value": [12, 13]})[0]


def test_dates_compare_as_dates() -> None:
    assert check({"field": "Deal.CloseDate", "op": "<", "value": "2025-07-01"})[0]
    assert not check({"field": "Deal.CloseDate", "op": ">", "value": "2025-06-10"})[0]
    assert check({"field": "Deal.CreatedAt", "op": ">=", "value": "2025-05-01"})[0]
    assert check({"field": "Deal.CreatedAt", "op": "<", "value": "2025-05-01T10:30:00+02:00"})[0] is False
    data = {"Deal": {"CloseDate": date(2025, 6, 10), "At": datetime(2025, 6, 10, 9, tzinfo=timezone.utc)}}
    assert evaluate({"field": "Deal.CloseDate", "op": "=", "value": "2025-06-10"}, data)[0]
    assert evaluate({"field": "Deal.At", "op": "between", "value": ["2025-06-10", "2025-06-11"]}, data)[0]


def test_text_equality_ignores_case() -> None:
    assert check({"field": "Deal.Currency", "op": "=", "value": "usd"})[0]
    assert check({"field": "Deal.Currency", "op": "!=", "value": "EUR"})[0]


def test_in_and_not_in() -> None:
    assert check({"field": "Deal.Currency", "op": "in", "value": ["EUR", "USD"]})[0]
    passed, reason = check({"field": "Deal.Currency", "op": "not in", "value": ["USD", "PLN"]})
    assert not passed and reason == 'Deal.Currency = "USD" is not not in ["USD", "PLN"]'
    assert check({"field": "Deal.Fields.tags", "op": "in", "value": ["repeat"]})[0]


def test_contains_on_text_and_lists() -> None:
    assert check({"field": "Deal.Title", "op": "contains", "value": "SOFA"})[0]
    assert check({"field": "Deal.Fields.tags", "op": "contains", "value": "VIP"})[0]
    assert check({"field": "Deal.Fields.tags", "op": "not contains", "value": "new"})[0]
    assert not check({"field": "Deal.Contact.Name", "op": "contains", "value": "a"})[0]
    assert check({"field": "Deal.Contact.Name", "op": "not contains", "value": "a"})[0]


def test_empty_and_not_empty() -> None:
    assert check({"field": "Deal.Fields.note", "op": "empty"}) == (True, "Deal.Fields.note is empty")
    assert check({"field": "Deal.Contact.Name", "op": "empty"})[0]
    assert check({"field": "Deal.Fields.missing", "op": "empty"})[0]
    assert check({"field": "Deal.Contact.Email", "op": "not empty"})[0]
    assert check({"field": "Deal.Fields.note", "op": "not empty"}) == (False, "Deal.Fields.note is empty")


def test_an_empty_field_is_never_greater_or_between() -> None:
    passed, reason = check({"field": "Deal.Fields.missing", "op": ">", "value": 0})
    assert not passed and reason == "Deal.Fields.missing is empty is not > 0"
    assert not check({"field": "Deal.Fields.missing", "op": "between", "value": [0, 1]})[0]


def test_values_take_placeholders() -> None:
    passed, reason = check({"field": "Deal.Amount", "op": ">=", "value": "{{Constants.MinAmount}}"})
    assert not passed and reason == "Deal.Amount = 500 is not >= 1000"
    assert check({"field": "Deal.Title", "op": "contains", "value": "for {{Deal.Title}}"})[0] is False
    passed, reason = check({"field": "Deal.Amount", "op": "=", "value": "{{Constants.Nope}}"})
    assert not passed and "Constants has no 'Nope'" in reason


def test_groups_nest() -> None:
    condition = {
        "all": [
            {"field": "Deal.Currency", "op": "=", "value": "USD"},
            {"any": [{"field": "Deal.Amount", "op": ">", "value": 1000}, {"field": "Deal.Fields.tags", "op": "contains", "value": "vip"}]},
        ]
    }
    assert check(condition) == (True, 'Deal.Currency = "USD" is = "USD" and Deal.Fields.tags = ["vip", "Repeat"] is contains "vip"')
    condition["all"][1]["any"][1]["value"] = "gold"
    passed, reason = check(condition)
    assert not passed
    assert reason.startswith("none holds: Deal.Amount = 500 is not > 1000; ")


def test_models_and_no_condition() -> None:
    model = parse_condition({"field": "Deal.Amount", "op": "between", "value": [100, 600]})
    assert evaluate(model, DATA)[0]
    assert evaluate(None, DATA) == (True, "no condition")


@pytest.mark.parametrize(
    ("raw", "loc", "message"),
    [
        ({"field": "Deal.Amount", "op": "~", "value": 1}, ("op",), "unknown operator"),
        ({"field": "Deal.Amount", "op": "empty", "value": 1}, (), "takes no value"),
        ({"field": "Deal.Amount", "op": "in", "value": "USD"}, (), "needs a list"),
        ({"field": "Deal.Amount", "op": "between", "value": [3]}, (), "[low, high]"),
        ({"field": "Deal.Amount", "op": "between", "value": [5, 1]}, (), "low 5 is above high 1"),
        ({"field": "Deal.Amount", "op": ">"}, (), "needs a value"),
        ({"field": "Deal.Amount", "op": "=", "value": {"a": 1}}, (), "single value"),
        ({"all": [{"field": "Deal.Amount", "op": ">", "value": 1}], "any": []}, (), "exactly one key"),
        ({"all": []}, ("all",), "non-empty list"),
        ({"any": [{"field": "", "op": "="}]}, ("any", 0, "field"), "not a field path"),
        ({"any": [{"field": "Deal.Amount", "op": ">", "value": 1, "extra": 2}]}, ("any", 0, "extra"), "Extra inputs"),
        ([1, 2], (), "a condition is"),
    ],
)
def test_malformed_conditions_are_refused_with_the_place(raw: object, loc: tuple, message: str) -> None:
    with pytest.raises(ConditionInvalid) as raised:
        parse_condition(raw)
    assert any(found == loc and message in text for found, text in raised.value.problems), raised.value.problems


def test_operator_spellings_are_normalized() -> None:
    leaf = parse_condition({"field": "{{ Deal.Amount }}", "op": "NOT_IN", "value": [1]})
    assert (leaf.field, leaf.op) == ("Deal.Amount", "not in")
    assert parse_condition({"field": "Deal.Amount", "op": "==", "value": 1}).op == "="


def test_nesting_is_limited() -> None:
    condition: dict = {"field": "Deal.Amount", "op": ">", "value": 1}
    for _ in range(9):
        condition = {"all": [condition]}
    with pytest.raises(ConditionInvalid, match="nest at most"):
        parse_condition(condition)


def test_a_condition_reads_in_words_as_the_builder_offers_them():
    condition = {"all": [
        {"field": "Deal.Amount", "op": ">=", "value": 1000},
        {"field": "Deal.Amount", "op": "between", "value": [1, 2]},
        {"any": [{"field": "Deal.Currency", "op": "in", "value": ["EUR", "PLN"]},
                 {"field": "Deal.Fields.vip", "op": "not empty"}]},
    ]}
    assert condition_words(condition) == (
        "Deal.Amount is at least 1000 and Deal.Amount is between 1 and 2 and "
        "(Deal.Currency is one of EUR, PLN or Deal.Fields.vip is not empty)")
