"""Edit variable and math operation: values that flow from rule to rule of one stage entry."""

from __future__ import annotations

from tests.crm import ok, pipeline
from tests.custom.flows import comments, finished, problem_at, result_of, shop_deal


def _after(rule: dict) -> dict:
    return {**rule, "start": "after_previous"}


def _var(name: str, op: str = "set", value=None, rule: str | None = None) -> dict:
    settings = {"name": name, "op": op} if op == "clear" else {"name": name, "op": op, "value": value}
    return _after({"name": rule or f"{op}-{name}", "type": "edit_variable", "settings": settings})


def _math(rule: str, variable: str, left, op: str, right=None, **extra) -> dict:
    settings = {"variable": variable, "left": left, "op": op, **({} if right is None else {"right": right}), **extra}
    return _after({"name": rule, "type": "math_operation", "settings": settings})


def _note(text: str, name: str = "note") -> dict:
    return _after({"name": name, "type": "add_timeline_entry", "settings": {"text": text}})


async def test_variables_flow_through_edit_variable_and_math_into_a_later_text(stack):
    item = await shop_deal(stack.http, {"NEW": {"rules": [
        {"name": "start", "type": "edit_variable", "settings": {"name": "Net", "value": "{{Deal.Amount}}"}},
        _math("gross", "Gross", "{{Variables.Net}}", "multiply", "{{Constants.VatRate}}"),
        _math("rounded", "Gross", "{{Variables.Gross}}", "round", digits=2),
        _math("share", "Share", "{{Variables.Gross}}", "divide", "{{Variables.Parts}}"),
        _math("exact", "Exact", 0.1, "add", 0.2),
        _math("left", "Left", "{{Deal.Fields.budget}}", "subtract", "{{Variables.Gross}}"),
        _var("Notes", "append", " {{Deal.Title}} for {{Deal.Contact.Name}}"),
        _var("Tags", "append", ["vip", "{{Variables.Exact}}"]),
        _var("Old", "clear"),
        _note("Net {{Variables.Net}}, gross {{Variables.Gross}}, share {{Variables.Share}}, exact {{Variables.Exact}}, "
              "left {{Variables.Left}}; notes:{{Variables.Notes}}; tags {{Variables.Tags}}; old '{{Variables.Old}}'"),
    ]}}, automation={"constants": {"VatRate": 1.23},
                     "variables": {"Parts": 4, "Notes": "Seen:", "Tags": ["new"], "Old": "stale"}},
        title="Sofa", amount=100.1, fields={"budget": "200"})

    assert (await finished(stack.http, item["id"], "note"))["kind"] == "rule_done"
    assert await comments(stack.http, item["id"]) == [
        "Net 100.1, gross 123.12, share 30.78, exact 0.3, left 76.88; notes:Seen: Sofa for ; "
        'tags ["new", "vip", 0.3]; old \'\''
    ]
    assert await result_of(stack.http, item["id"], "rounded") == {"value": 123.12}


async def test_division_by_zero_fails_the_rule_and_changes_nothing(stack):
    item = await shop_deal(stack.http, {"NEW": {"rules": [
        {"name": "per-unit", "type": "math_operation",
         "settings": {"variable": "Price", "left": "{{Deal.Amount}}", "op": "divide", "right": "{{Variables.Units}}"}},
        _note("price {{Variables.Price}}"),
        {"name": "report", "type": "add_timeline_entry", "delay": "1s",
         "settings": {"text": "still {{Variables.Price}}"}},
    ]}}, automation={"variables": {"Units": 0, "Price": "unknown"}}, amount=300)

    failed = await finished(stack.http, item["id"], "per-unit")
    assert failed["kind"] == "rule_failed"
    assert "division by zero" in failed["text"] and "settings.right" in failed["text"]
    assert (await finished(stack.http, item["id"], "note"))["kind"] == "rule_skipped"
    assert (await finished(stack.http, item["id"], "report"))["kind"] == "rule_done"
    assert await comments(stack.http, item["id"]) == ["still unknown"]


async def test_a_value_that_is_not_a_number_fails_the_rule_naming_the_setting(stack):
    item = await shop_deal(stack.http, {"NEW": {"rules": [
        {"name": "twice", "type": "math_operation",
         "settings": {"variable": "Double", "left": "{{Deal.Title}}", "op": "multiply", "right": 2}},
        {"name": "empty", "type": "math_operation",
         "settings": {"variable": "Total", "left": "{{Deal.Amount}}", "op": "add", "right": 1}},
    ]}}, title="Sofa")

    twice = await finished(stack.http, item["id"], "twice")
    assert twice["kind"] == "rule_failed"
    assert "settings.left" in twice["text"] and "'Sofa'" in twice["text"] and "not a number" in twice["text"]
    empty = await finished(stack.http, item["id"], "empty")
    assert empty["kind"] == "rule_failed"
    assert "settings.left" in empty["text"] and "empty" in empty["text"]


async def test_bad_variable_settings_are_refused_at_save_time(stack):
    flow = await pipeline(stack.http, ["NEW", "WON"])
    url = f"/pipelines/{flow['id']}/automation"

    no_right = await stack.http.put(url, json={"stages": {"NEW": {"rules": [
        {"name": "sum", "type": "math_operation", "settings": {"variable": "Total", "left": 1, "op": "add"}}]}}})
    assert "needs right" in problem_at(no_right, "settings")["msg"]
    word = await stack.http.put(url, json={"stages": {"NEW": {"rules": [
        {"name": "sum", "type": "math_operation",
         "settings": {"variable": "Total", "left": "ten", "op": "add", "right": 1}}]}}})
    assert "neither a number nor a placeholder" in problem_at(word, "settings", "left")["msg"]
    unset = await stack.http.put(url, json={"stages": {"NEW": {"rules": [
        {"name": "note", "type": "add_timeline_entry", "settings": {"text": "{{Variables.Total}}"}},
        {"name": "sum", "type": "math_operation",
         "settings": {"variable": "Total", "left": 1, "op": "add", "right": 1}}]}}})
    assert "does not come before" in problem_at(unset, "settings", "text")["msg"]
    assert ok(await stack.http.get(url))["stages"] == {}
