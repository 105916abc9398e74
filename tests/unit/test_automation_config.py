from __future__ import annotations

import copy
from typing import Any

import pytest

from activities.rules import RULE_TYPES
from activities.rules.custom import custom_type
from models.domain.automation import AutomationConfig
from models.domain.delays import Delay, DelayError, parse_delay
from models.domain.rule_types import rule_type_catalogue
from models.domain.triggers import TRIGGER_TYPES, trigger_type_catalogue
from models.domain.validation import AutomationInvalid, ValidationContext, validate_automation

SALES_STAGES = ["NEW", "DOCS", "INVOICE", "WON"]


def context(**changes: Any) -> ValidationContext:
    values: dict[str, Any] = {
        "entity_type": "deal",
        "stage_codes": SALES_STAGES,
        "user_ids": {1, 2, 3},
        "pipelines": {1: ("deal", SALES_STAGES), 2: ("deal", ["NEW", "SHIP"]), 3: ("lead", ["L_NEW", "L_CALL"])},
        "templates": {"invoice", "contract"},
        "pipeline_id": 1,
        "rule_types": RULE_TYPES,
    }
    values.update(changes)
    return ValidationContext(**values)


def invalid(raw: dict, ctx: ValidationContext | None = None) -> list[dict]:
    with pytest.raises(AutomationInvalid) as raised:
        validate_automation(raw, ctx or context())
    return raised.value.errors


def one_rule(rule: dict, *, stage: str = "NEW", **top: Any) -> dict:
    return {**top, "stages": {stage: {"rules": [rule]}}}


def find(errors: list[dict], loc: list) -> dict:
    matches = [error for error in errors if error["loc"] == loc]
    assert matches, f"no error at {loc}; errors: {errors}"
    return matches[0]


API_EXAMPLE = {
    "constants": {"Courier": 3},
    "stages": {
        "NEW": {
            "rules": [
                {"name": "ack", "type": "send_sms", "delay": None,
                 "settings": {"text": "Hello {{Deal.Contact.Name}}, we will call within 30 minutes"}},
                {"name": "late", "type": "notify_supervisor", "delay": "24h",
                 "settings": {"text": "{{Deal.Responsible.Name}} has not moved {{Deal.Title}} ({{Deal.Amount}})"}},
            ],
            "triggers": [],
        },
        "INVOICE": {"rules": [], "triggers": [{"name": "paid", "type": "payment_received", "allow_backwards": False}]},
    },
}


# -- whole configurations -------------------------------------------------------------------------


def test_the_api_example_is_accepted_and_survives_a_round_trip() -> None:
    config = validate_automation(API_EXAMPLE, context())
    late = config.stages["NEW"].rules[1]
    assert late.delay == Delay(after="24h") and late.start == "on_entry"
    assert late.settings["recipient_ids"] is None and late.settings["email"] is False
    stored = config.to_json()
    assert stored["stages"]["NEW"]["rules"][1]["delay"] == "24h"
    assert AutomationConfig.model_validate(stored) == config
    assert validate_automation(stored, context()) == config


def test_an_empty_automation_is_fine() -> None:
    assert validate_automation({}, context()) == AutomationConfig()
    assert validate_automation({"stages": {"NEW": None}}, context()).stage("NEW").rules == []


def test_every_problem_is_reported_at_once() -> None:
    raw = {
        "constants": {"bad name": 1},
        "colour": "red",
        "stages": {
            "NOPE": {"rules": []},
            "NEW": {
                "rules": [
                    {"name": "a", "type": "send_sms", "delay": "soon", "settings": {"text": "{{Deal.Nope}}"}},
                    {"name": "b", "type": "teleport"},
                ],
                "triggers": [{"name": "t", "type": "payment_received", "filter": {"min_amount": -1}}],
            },
        },
    }
    errors = invalid(raw)
    locs = [error["loc"] for error in errors]
    assert ["body", "constants", "bad name"] in locs
    assert ["body", "colour"] in locs
    assert ["body", "stages", "NOPE"] in locs
    assert ["body", "stages", "NEW", "rules", 0, "delay", "after"] in locs
    assert ["body", "stages", "NEW", "rules", 0, "settings", "text"] in locs
    assert ["body", "stages", "NEW", "rules", 1, "type"] in locs
    assert ["body", "stages", "NEW", "triggers", 0, "filter", "min_amount"] in locs
    assert all(error["type"] == "value_error" for error in errors)


def test_unknown_stage_lists_the_pipeline_stages() -> None:
    error = find(invalid({"stages": {"PAID": {}}}), ["body", "stages", "PAID"])
    assert error["msg"] == "stage 'PAID' is not a stage of this pipeline (stages: NEW, DOCS, INVOICE, WON)"


def test_unknown_rule_type_is_named() -> None:
    error = find(invalid(one_rule({"name": "x", "type": "fax"})), ["body", "stages", "NEW", "rules", 0, "type"])
    assert error["msg"].startswith("stage 'NEW', rule 0 'x' (fax): type: unknown rule type 'fax'; known types: create_document")


def test_rule_names_are_unique_within_a_stage_only() -> None:
    sms = {"type": "send_sms", "settings": {"text": "hi"}}
    raw = {"stages": {"NEW": {"rules": [{"name": "a", **sms}, {"name": "a", **sms}]}, "DOCS": {"rules": [{"name": "a", **sms}]}}}
    errors = invalid(raw)
    assert len(errors) == 1
    assert errors[0]["loc"] == ["body", "stages", "NEW", "rules", 1, "name"]
    assert "another rule of this stage is named 'a' (rule 0)" in errors[0]["msg"]


@pytest.mark.parametrize("name", ["", "a.b", "{{x}}", " padded", None, 5, "x" * 101])
def test_bad_rule_names(name: Any) -> None:
    find(invalid(one_rule({"name": name, "type": "send_sms", "settings": {"text": "hi"}})), ["body", "stages", "NEW", "rules", 0, "name"])


def test_rule_and_trigger_keys_are_checked() -> None:
    errors = invalid({"stages": {"NEW": {
        "rules": [{"name": "a", "type": "send_sms", "settings": {"text": "hi"}, "when": "now", "start": "later"}],
        "triggers": [{"name": "t", "type": "webhook", "allow_backwards": "yes", "as_user_id": 42, "secret": "x"}],
    }}})
    assert "unknown key" in find(errors, ["body", "stages", "NEW", "rules", 0, "when"])["msg"]
    assert "on_entry or after_previous" in find(errors, ["body", "stages", "NEW", "rules", 0, "start"])["msg"]
    find(errors, ["body", "stages", "NEW", "triggers", 0, "allow_backwards"])
    assert "user 42 does not exist" in find(errors, ["body", "stages", "NEW", "triggers", 0, "as_user_id"])["msg"]
    find(errors, ["body", "stages", "NEW", "triggers", 0, "secret"])


def test_at_most_100_rules_per_stage() -> None:
    rules = [{"name": f"r{i}", "type": "send_sms", "settings": {"text": "hi"}} for i in range(101)]
    error = find(invalid({"stages": {"NEW": {"rules": rules}}}), ["body", "stages", "NEW", "rules"])
    assert "at most 100" in error["msg"]
    validate_automation({"stages": {"NEW": {"rules": rules[:100]}}}, context())


def test_texts_are_at_most_10000_characters() -> None:
    error = find(
        invalid(one_rule({"name": "a", "type": "add_timeline_entry", "settings": {"text": "x" * 10_001}})),
        ["body", "stages", "NEW", "rules", 0, "settings", "text"],
    )
    assert "10000 characters" in error["msg"]
    fields = {"name": "doc", "type": "create_document", "settings": {"template": "invoice", "fields": {"Note": "x" * 10_001}}}
    find(invalid(one_rule(fields)), ["body", "stages", "NEW", "rules", 0, "settings", "fields", "Note"])


# -- delays ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("24h", Delay(after="24h")),
        ("+1d12h", Delay(after="1d12h")),
        ({"after": "24h", "business_hours": True}, Delay(after="24h", business_hours=True)),
        ({"field": "close_date", "offset": "-1d"}, Delay(field="close_date", offset="-1d")),
        ({"at": "9:30"}, Delay(at="09:30")),
        ({"at": "14:00", "field": "close_date"}, Delay(at="14:00", field="close_date")),
        ({"after": "1d", "at": "09:00"}, Delay(after="1d", at="09:00")),
        ({"field": "Fields.delivery", "offset": "2w", "business_hours": True},
         Delay(field="Fields.delivery", offset="2w", business_hours=True)),
    ],
)
def test_delay_forms(raw: Any, expected: Delay | None) -> None:
    assert parse_delay(raw) == expected


def test_delays_serialize_in_their_short_form() -> None:
    assert Delay(after="6mo").model_dump(mode="json") == "6mo"
    assert Delay(field="close_date", offset="-1d").model_dump(mode="json") == {"field": "close_date", "offset": "-1d"}
    assert parse_delay(Delay(at="14:00", business_hours=True).model_dump()) == Delay(at="14:00", business_hours=True)


@pytest.mark.parametrize(
    ("raw", "loc", "message"),
    [
        ("5 minutes", ("after",), "not a duration"),
        ("-1d", ("after",), "must not be negative"),
        ({"offset": "-1d"}, (), "give field too"),
        ({"after": "1d", "field": "close_date"}, (), "not after"),
        ({"at": "25:00"}, ("at",), "HH:MM"),
        ({"field": "amount"}, ("field",), "not a date field"),
        ({"field": "close_date", "offset": "yesterday"}, ("offset",), "not a duration"),
        ({}, (), "needs after, field or at"),
        ({"business_hours": True}, (), "needs after, field or at"),
        ({"after": "1h", "when": "now"}, ("when",), "Extra inputs"),
        (5, (), "a delay is null, a duration"),
    ],
)
def test_bad_delays_name_the_part(raw: Any, loc: tuple, message: str) -> None:
    with pytest.raises(DelayError) as raised:
        parse_delay(raw)
    assert any(found == loc and message in text for found, text in raised.value.problems), raised.value.problems


def test_a_bad_delay_in_a_rule_names_stage_rule_and_field() -> None:
    rule = {"name": "late", "type": "send_sms", "delay": {"field": "close_date", "offset": "1 day"}, "settings": {"text": "hi"}}
    error = find(invalid(one_rule(rule)), ["body", "stages", "NEW", "rules", 0, "delay", "offset"])
    assert error["msg"].startswith("stage 'NEW', rule 0 'late' (send_sms): delay.offset: '1 day' is not a duration")


# -- conditions -----------------------------------------------------------------------------------


def test_conditions_are_checked_against_the_data_tree() -> None:
    rule = {
        "name": "big", "type": "send_sms", "settings": {"text": "hi"},
        "condition": {"all": [
            {"field": "Deal.Amount", "op": ">", "value": "{{Constants.Min}}"},
            {"any": [{"field": "Deal.Amont", "op": "empty"}, {"field": "Deal.Currency", "op": "in", "value": "USD"}]},
        ]},
    }
    errors = invalid(one_rule(rule))
    base = ["body", "stages", "NEW", "rules", 0, "condition"]
    assert "constant 'Min' is not declared" in find(errors, [*base, "all", 0, "value"])["msg"]
    assert "Deal has no field 'Amont'" in find(errors, [*base, "all", 1, "any", 0, "field"])["msg"]
    assert "needs a list" in find(errors, [*base, "all", 1, "any", 1])["msg"]
    rule["condition"] = {"all": [{"field": "Deal.Amount", "op": ">", "value": 1000},
                                 {"field": "Deal.Fields.vip", "op": "not empty"}]}
    config = validate_automation(one_rule(rule), context())
    assert config.stages["NEW"].rules[0].condition.all[1].op == "not empty"


def test_a_comparison_with_an_empty_value_is_refused_on_save_but_equality_with_empty_text_is_not() -> None:
    rule = {"name": "big", "type": "send_sms", "settings": {"text": "hi"}, "condition": {"all": [
        {"field": "Deal.Amount", "op": ">", "value": ""},
        {"field": "Deal.Amount", "op": "between", "value": [5, " "]},
        {"field": "Deal.Title", "op": "contains", "value": ""},
    ]}}
    base = ["body", "stages", "NEW", "rules", 0, "condition", "all"]
    errors = invalid(one_rule(rule))
    assert "is more than (op '>') needs a value to compare with; it is empty" in find(errors, [*base, 0, "value"])["msg"]
    assert "is between (op 'between') needs each of its values" in find(errors, [*base, 1, "value"])["msg"]
    assert "contains (op 'contains') needs a value" in find(errors, [*base, 2, "value"])["msg"]
    trigger = {"name": "paid", "type": "payment_received",
               "condition": {"field": "Deal.Amount", "op": ">=", "value": ""}}
    errors = invalid({"stages": {"NEW": {"triggers": [trigger]}}})
    assert any("needs a value to compare with" in error["msg"] for error in errors)
    # An automation saved before the check is looked through as it was: what it names is all that is asked.
    assert validate_automation(one_rule(rule), context(saving=False)).stages["NEW"].rules[0].condition is not None
    for allowed in ({"field": "Deal.Currency", "op": "!=", "value": ""},
                    {"field": "Deal.Currency", "op": "in", "value": ["", "USD"]}):
        rule["condition"] = allowed
        assert validate_automation(one_rule(rule), context()).stages["NEW"].rules[0].condition is not None


@pytest.mark.parametrize("op", [[">"], {"op": ">"}, 5, None])
def test_an_operator_that_is_not_text_is_a_problem_named_not_a_crash(op: Any) -> None:
    rule = {"name": "big", "type": "send_sms", "settings": {"text": "hi"},
            "condition": {"field": "Deal.Amount", "op": op, "value": ""}}
    errors = invalid(one_rule(rule))
    assert find(errors, ["body", "stages", "NEW", "rules", 0, "condition", "op"])


# -- placeholders ---------------------------------------------------------------------------------


def test_an_unresolvable_placeholder_names_stage_rule_and_field() -> None:
    rule = {"name": "late", "type": "notify_supervisor", "settings": {"text": "{{Deal.Responsible.Nick}} is late"}}
    error = find(invalid(one_rule(rule)), ["body", "stages", "NEW", "rules", 0, "settings", "text"])
    assert error["msg"] == (
        "stage 'NEW', rule 0 'late' (notify_supervisor): settings.text: placeholder {{Deal.Responsible.Nick}} "
        "cannot resolve: Deal.Responsible has no field 'Nick' (fields: Id, Name, Email, Phone, Supervisor)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{Deal}}", "name a field of Deal"),
        ("{{Deal.title}}", "did you mean 'Title'?"),
        ("{{Deal.Contact}}", "is a group"),
        ("{{Deal.Fields}}", "needs a custom field name"),
        ("{{Deal.Amount.Net}}", "single value"),
        ("{{Lead.Title}}", "this pipeline holds deals; write Deal.Title"),
        ("{{Client.Name}}", "unknown name 'Client'"),
        ("{{Constants.Nope}}", "constant 'Nope' is not declared in constants (declared: Courier)"),
        ("{{Constants.Courier.Name}}", "single value"),
        ("{{Variables.Total}}", "variable 'Total' is not declared"),
        ("{{Rule.ghost.value}}", "stage 'NEW' has no rule named 'ghost'"),
        ("{{Rule.ack}}", "write Rule.<rule name>.<value>"),
        ("{{ }}", "dotted path"),
    ],
)
def test_placeholder_problems(text: str, message: str) -> None:
    rule = {"name": "n", "type": "send_sms", "settings": {"text": f"x {text} y"}}
    errors = invalid(one_rule(rule, constants={"Courier": 3}))
    assert message in find(errors, ["body", "stages", "NEW", "rules", 0, "settings", "text"])["msg"]


def test_deep_paths_into_constants_and_custom_fields_resolve() -> None:
    rule = {"name": "n", "type": "send_sms", "settings": {"text": "{{Constants.Shop.City}} {{Deal.Fields.size.label}}"}}
    validate_automation(one_rule(rule, constants={"Shop": {"City": "Kraków"}}), context())


def test_lead_pipelines_use_lead_placeholders() -> None:
    ctx = context(entity_type="lead", stage_codes=["L_NEW", "L_CALL"], pipeline_id=3)
    rule = {"name": "n", "type": "send_sms", "settings": {"text": "Hello {{Lead.Contact.Name}}"}}
    validate_automation(one_rule(rule, stage="L_NEW"), ctx)
    rule["settings"]["text"] = "Hello {{Deal.Contact.Name}}"
    error = find(invalid(one_rule(rule, stage="L_NEW"), ctx), ["body", "stages", "L_NEW", "rules", 0, "settings", "text"])
    assert "this pipeline holds leads; write Lead.Contact.Name" in error["msg"]


def test_rule_results_come_from_earlier_rules_only() -> None:
    rules = [
        {"name": "notify", "type": "notify_employee",
         "settings": {"user_ids": [1], "text": "Deliver to {{Rule.addr.city}}, {{Rule.addr.zipcode}}"}},
        {"name": "addr", "type": "get_requisites", "settings": {"entity": "contact", "address_type": "actual"}},
        {"name": "courier", "type": "notify_employee",
         "settings": {"user_ids": [1], "text": "Deliver to {{Rule.addr.city}} {{Rule.addr.zipcode}}"}},
    ]
    errors = invalid({"stages": {"NEW": {"rules": rules}}})
    first = [error["msg"] for error in errors if error["loc"][4] == 0]
    assert any("rule 'addr' is rule 1 of stage 'NEW'; only rules listed before this one can be read" in msg for msg in first)
    later = find(errors, ["body", "stages", "NEW", "rules", 2, "settings", "text"])["msg"]
    assert "rule 'addr' (get_requisites) returns template, name, tax_id" in later and "not 'zipcode'" in later
    rules[2]["settings"]["text"] = "Deliver to {{Rule.addr.address}}, {{Rule.addr.city}} {{Rule.addr.zip}}"
    validate_automation({"stages": {"NEW": {"rules": rules[1:]}}}, context())


def test_settings_dependent_results() -> None:
    rules = [
        {"name": "erp", "type": "webhook", "settings": {"url": "https://erp.example.com/x", "returns": ["order_no"]}},
        {"name": "reqs", "type": "get_requisites", "settings": {"entity": "company", "fields": ["passport"]}},
        {"name": "tell", "type": "send_sms", "settings": {
            "text": "{{Rule.erp.order_no}} {{Rule.erp.status_code}} {{Rule.reqs.passport}}"}},
    ]
    validate_automation({"stages": {"NEW": {"rules": rules}}}, context())
    rules[2]["settings"]["text"] = "{{Rule.erp.invoice_no}}"
    error = find(invalid({"stages": {"NEW": {"rules": rules}}}), ["body", "stages", "NEW", "rules", 2, "settings", "text"])
    assert "rule 'erp' (webhook) returns status_code, order_no; not 'invoice_no'" in error["msg"]


def test_variables_come_from_defaults_or_earlier_rules() -> None:
    rules = [
        {"name": "show", "type": "send_sms", "settings": {"text": "{{Variables.Total}} {{Variables.Note}}"}},
        {"name": "calc", "type": "math_operation",
         "settings": {"variable": "Total", "left": "{{Deal.Amount}}", "op": "multiply", "right": 1.23}},
        {"name": "again", "type": "send_sms", "settings": {"text": "{{Variables.Total}} {{Variables.Note}}"}},
    ]
    errors = invalid({"variables": {"Note": ""}, "stages": {"NEW": {"rules": rules}}})
    assert len(errors) == 1
    assert "variable 'Total' is set by rule 1 'calc', which does not come before this one" in errors[0]["msg"]
    validate_automation({"variables": {"Note": ""}, "stages": {"NEW": {"rules": rules[1:]}}}, context())


def test_triggers_cannot_read_rule_results() -> None:
    raw = {"stages": {"NEW": {"triggers": [{"name": "t", "type": "payment_received",
                                            "condition": {"field": "Rule.a.b", "op": "empty"}}]}}}
    error = find(invalid(raw), ["body", "stages", "NEW", "triggers", 0, "condition", "field"])
    assert "triggers cannot" in error["msg"]


# -- users, pipelines, stages, templates ----------------------------------------------------------


def test_user_ids_must_exist_directly_or_through_a_constant() -> None:
    rule = {"name": "tell", "type": "notify_employee",
            "settings": {"user_ids": [1, 99, "{{Constants.Courier}}", "{{Constants.Name}}"], "text": "hi"}}
    errors = invalid(one_rule(rule, constants={"Courier": 42, "Name": "Ann"}))
    base = ["body", "stages", "NEW", "rules", 0, "settings", "user_ids"]
    assert find(errors, [*base, 1])["msg"].endswith("settings.user_ids.1: user 99 does not exist")
    assert "{{Constants.Courier}} is user 42, who does not exist" in find(errors, [*base, 2])["msg"]
    assert "constant Name holds 'Ann', not a user id" in find(errors, [*base, 3])["msg"]
    assert len(errors) == 3
    rule["settings"]["user_ids"] = [1, "{{Constants.Courier}}", "{{Deal.Responsible.Supervisor.Id}}"]
    validate_automation(one_rule(rule, constants={"Courier": 3}), context())


def test_copy_deal_targets() -> None:
    def copy(settings: dict, stage: str = "WON") -> list[dict]:
        return invalid(one_rule({"name": "copy", "type": "copy_deal", "settings": settings}, stage=stage))

    loc = ["body", "stages", "WON", "rules", 0, "settings"]
    assert "pipeline 9 does not exist" in find(copy({"pipeline_id": 9}), [*loc, "pipeline_id"])["msg"]
    assert "pipeline 3 holds leads, not deals" in find(copy({"pipeline_id": 3}), [*loc, "pipeline_id"])["msg"]
    assert "stage 'WON' is not a stage of pipeline 2 (stages: NEW, SHIP)" in find(
        copy({"pipeline_id": 2, "stage": "WON"}), [*loc, "stage"]
    )["msg"]
    assert "copied again" in find(copy({"stage": "WON"}), [*loc, "stage"])["msg"]
    assert "copied again" in find(copy({}, stage="NEW"), ["body", "stages", "NEW", "rules", 0, "settings", "stage"])["msg"]
    validate_automation(one_rule({"name": "copy", "type": "copy_deal", "settings": {"pipeline_id": 2}}, stage="WON"), context())
    validate_automation(one_rule({"name": "copy", "type": "copy_deal", "settings": {"stage": "NEW"}}, stage="WON"), context())


def test_copy_deal_is_for_deal_pipelines() -> None:
    ctx = context(entity_type="lead", stage_codes=["L_NEW", "L_CALL"], pipeline_id=3)
    errors = invalid(one_rule({"name": "c", "type": "copy_deal", "settings": {}}, stage="L_NEW"), ctx)
    assert "copy_deal works on deal pipelines only" in find(errors, ["body", "stages", "L_NEW", "rules", 0, "type"])["msg"]


def test_repeat_leads_go_to_a_lead_pipeline() -> None:
    rule = {"name": "again", "type": "create_repeat_lead", "delay": "6mo", "settings": {"title": "Renewal {{Deal.Title}}"}}
    config = validate_automation(one_rule(rule, stage="WON"), context())
    assert config.stages["WON"].rules[0].delay.after == "6mo"
    rule["settings"]["stage"] = "L_CALL"
    validate_automation(one_rule(rule, stage="WON"), context())
    rule["settings"]["stage"] = "NEW"
    error = find(invalid(one_rule(rule, stage="WON")), ["body", "stages", "WON", "rules", 0, "settings", "stage"])
    assert "stage 'NEW' is not a stage of lead pipeline 3" in error["msg"]
    rule["settings"] = {"title": "x"}
    only_deals = context(pipelines={1: ("deal", SALES_STAGES)})
    error = find(invalid(one_rule(rule, stage="WON"), only_deals), ["body", "stages", "WON", "rules", 0, "settings", "pipeline_id"])
    assert "there is no lead pipeline" in error["msg"]


def test_change_stage_targets_another_stage_of_this_pipeline() -> None:
    loc = ["body", "stages", "NEW", "rules", 0, "settings", "stage"]
    errors = invalid(one_rule({"name": "m", "type": "change_stage", "settings": {"stage": "SHIP"}}))
    assert "stage 'SHIP' is not a stage of this pipeline" in find(errors, loc)["msg"]
    errors = invalid(one_rule({"name": "m", "type": "change_stage", "settings": {"stage": "NEW"}}))
    assert "already in stage 'NEW'" in find(errors, loc)["msg"]


def test_complete_tasks_stages_exist() -> None:
    rule = {"name": "done", "type": "complete_tasks", "settings": {"pipeline_id": 2, "stages": ["SHIP", "DOCS"]}}
    error = find(invalid(one_rule(rule, stage="WON")), ["body", "stages", "WON", "rules", 0, "settings", "stages", 1])
    assert "stage 'DOCS' is not a stage of pipeline 2" in error["msg"]


def test_document_templates_must_exist() -> None:
    rule = {"name": "doc", "type": "create_document", "settings": {"template": "receipt"}}
    error = find(invalid(one_rule(rule)), ["body", "stages", "NEW", "rules", 0, "settings", "template"])
    assert "document template 'receipt' does not exist (templates: contract, invoice)" in error["msg"]


def test_email_attachments_name_earlier_document_rules() -> None:
    rules = [
        {"name": "ack", "type": "send_sms", "settings": {"text": "hi"}},
        {"name": "mail", "type": "send_email", "settings": {
            "subject": "Invoice", "body": "See {{Rule.invoice.public_url}}", "attachments": ["ack", "invoice"]}},
        {"name": "invoice", "type": "create_document", "settings": {"template": "invoice", "public_link": True}},
    ]
    errors = invalid({"stages": {"DOCS": {"rules": rules}}})
    base = ["body", "stages", "DOCS", "rules", 1, "settings"]
    assert "rule 'ack' is a send_sms rule; it creates no document" in find(errors, [*base, "attachments", 0])["msg"]
    assert "'invoice' is not an earlier rule of stage 'DOCS'" in find(errors, [*base, "attachments", 1])["msg"]
    assert "only rules listed before this one" in find(errors, [*base, "body"])["msg"]
    ordered = [rules[2], {**rules[1], "start": "after_previous", "settings": {**rules[1]["settings"], "attachments": ["invoice"]}}]
    config = validate_automation({"stages": {"DOCS": {"rules": ordered}}}, context())
    assert config.stages["DOCS"].rules[1].start == "after_previous"


# -- every rule type ------------------------------------------------------------------------------


def _example(kind: str) -> dict:
    return copy.deepcopy(RULE_TYPES[kind].settings.model_config["json_schema_extra"]["examples"][0])


def _stage_with(kind: str, settings: dict) -> dict:
    """NEW holds helper rules the examples refer to, then the rule under test, named "subject"."""
    helpers = [
        {"name": "addr", "type": "get_requisites", "settings": {"entity": "contact", "address_type": "actual"}},
        {"name": "invoice", "type": "create_document", "settings": {"template": "invoice", "public_link": True}},
        {"name": "calc", "type": "math_operation", "settings": {"variable": "Total", "left": 1, "op": "add", "right": 2}},
        {"name": "city", "type": "edit_variable", "settings": {"name": "City", "value": "Gdańsk"}},
    ]
    return {
        "constants": {"Courier": 3, "ErpKey": "secret"},
        "stages": {"NEW": {"rules": [*helpers, {"name": "subject", "type": kind, "settings": settings}]}},
    }


@pytest.mark.parametrize("kind", sorted(RULE_TYPES))
def test_every_rule_type_accepts_its_example(kind: str) -> None:
    config = validate_automation(_stage_with(kind, _example(kind)), context())
    rule = config.stages["NEW"].rules[-1]
    assert rule.type == kind
    assert rule.typed_settings(RULE_TYPES) == RULE_TYPES[kind].settings.model_validate(_example(kind))


BAD_SETTINGS: dict[str, tuple[dict, list, str]] = {
    "create_document": ({"template": "invoice", "colour": "red"}, ["colour"], "Extra inputs are not permitted"),
    "send_for_signature": ({"template": "contract", "signer_user_id": 1, "client_channel": "fax"}, ["client_channel"], "'email' or 'sms'"),
    "change_requisites": ({"entity": "person", "template": "organization", "fields": {"tax_id": "1"}}, ["entity"], "'contact' or 'company'"),
    "get_requisites": ({"entity": "contact", "address_type": "home"}, ["address_type"], "'legal', 'actual' or 'other'"),
    "notify_supervisor": ({"text": ""}, ["text"], "at least 1 character"),
    "add_timeline_entry": ({"text": "x", "kind": "rule_done"}, ["kind"], "recorded by the engine"),
    "create_task": ({"title": "x", "deadline": "tomorrow"}, ["deadline"], "relative time (+3d)"),
    "complete_tasks": ({"stages": ["NOPE"]}, ["stages", 0], "'NOPE' is not a stage of this pipeline"),
    "schedule_activity": ({"description": "x", "kind": "lunch"}, ["kind"], "'call', 'meeting' or 'other'"),
    "notify_employee": ({"user_ids": [], "text": "x"}, ["user_ids"], "at least 1 item"),
    "create_repeat_lead": ({"title": "x", "pipeline_id": 2}, ["pipeline_id"], "holds deals, not leads"),
    "copy_deal": ({"pipeline_id": 2, "stage": "WON"}, ["stage"], "not a stage of pipeline 2"),
    "send_email": ({"subject": "s", "body": "b", "to": "not-an-address"}, ["to"], "not an e-mail address"),
    "send_sms": ({"text": "x", "to": "call me"}, ["to"], "not a phone number"),
    "send_channel_message": ({"channel": "telegram", "text": "x", "template": "order_ready"}, ["template"],
                             "only WhatsApp"),
    "call_client": ({"text": "Hello", "to": "call me"}, ["to"], "not a phone number"),
    "change_responsible": ({"user_id": 99}, ["user_id"], "user 99 does not exist"),
    "change_stage": ({"stage": "NEW"}, ["stage"], "already in stage 'NEW'"),
    "update_fields": ({"fields": {"colour": "red"}}, ["fields"], "'colour' cannot be set"),
    "edit_variable": ({"name": "Bad Name", "value": 1}, ["name"], "should match pattern"),
    "math_operation": ({"variable": "T", "left": 1, "op": "power", "right": 2}, ["op"], "'add', 'subtract'"),
    "wait": ({"timeout": "-1d"}, ["timeout"], "must not be negative"),
    "webhook": ({"url": "ftp://files.example.com"}, ["url"], "not an http(s) URL"),
}


def test_every_rule_type_has_a_bad_example() -> None:
    assert set(BAD_SETTINGS) == set(RULE_TYPES)


@pytest.mark.parametrize("kind", sorted(BAD_SETTINGS))
def test_every_rule_type_rejects_bad_settings_naming_the_field(kind: str) -> None:
    settings, sub, message = BAD_SETTINGS[kind]
    errors = invalid(_stage_with(kind, settings))
    error = find(errors, ["body", "stages", "NEW", "rules", 4, "settings", *sub])
    assert error["msg"].startswith(f"stage 'NEW', rule 4 'subject' ({kind}): settings.{'.'.join(map(str, sub))}: ")
    assert message in error["msg"]


@pytest.mark.parametrize(
    ("kind", "settings", "sub", "message"),
    [
        ("send_for_signature", {"template": "contract"}, [], "signer_user_id or signer_name"),
        ("change_requisites", {"entity": "company", "template": "organization", "fields": {"address.city": "X"}}, [], "need address_type"),
        ("change_requisites", {"entity": "company", "template": "organization", "fields": {"Tax ID": "X"}}, ["fields"], "not a requisite field"),
        ("create_task", {"title": "x", "deadline": {"field": "close_date", "offset": "soon"}}, ["deadline", "offset"], "not a duration"),
        ("create_task", {"title": "x", "observers": [1, 7]}, ["observers", 1], "user 7 does not exist"),
        ("schedule_activity", {"description": "x", "when": {"in_days": -1}}, ["when", "in_days"], "greater than or equal to 0"),
        ("schedule_activity", {"description": "x", "when": 5}, ["when"], '"+3d"'),
        ("update_fields", {"fields": {"amount": "a lot"}}, ["fields"], "amount: 'a lot' is not a number"),
        ("update_fields", {"fields": {"close_date": "soon"}}, ["fields"], "not a date"),
        ("edit_variable", {"name": "X", "op": "set"}, [], "needs a value"),
        ("math_operation", {"variable": "T", "left": 1, "op": "divide", "right": 0}, [], "division by zero"),
        ("math_operation", {"variable": "T", "left": "many", "op": "round"}, ["left"], "neither a number nor a placeholder"),
        ("wait", {}, [], "until_field_changes, timeout, or both"),
        ("wait", {"until_field_changes": "colour"}, ["until_field_changes"], "not an item field"),
        ("webhook", {"url": "https://x.example.com", "returns": ["status_code"]}, ["returns"], "always returned"),
        ("webhook", {"url": "https://x.example.com", "timeout_seconds": 600}, ["timeout_seconds"], "less than or equal to 60"),
        ("send_email", {"subject": "s", "body": "b", "include_public_link": True}, ["include_public_link"], "attachments"),
    ],
)
def test_more_bad_settings(kind: str, settings: dict, sub: list, message: str) -> None:
    errors = invalid(_stage_with(kind, settings))
    error = find(errors, ["body", "stages", "NEW", "rules", 4, "settings", *sub])
    assert message in error["msg"], error["msg"]


def test_placeholders_are_checked_in_every_settings_string() -> None:
    settings = _example("webhook")
    settings["headers"]["X-Trace"] = "{{Deal.Trace}}"
    error = find(invalid(_stage_with("webhook", settings)), ["body", "stages", "NEW", "rules", 4, "settings", "headers", "X-Trace"])
    assert "settings.headers.X-Trace: placeholder {{Deal.Trace}} cannot resolve" in error["msg"]


# -- triggers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(TRIGGER_TYPES))
def test_every_trigger_type_accepts_its_example(kind: str) -> None:
    example = TRIGGER_TYPES[kind].filter.model_config["json_schema_extra"]["examples"][0]
    raw = {"stages": {"INVOICE": {"triggers": [{"name": "t", "type": kind, "filter": example, "as_user_id": 2}]}}}
    trigger = validate_automation(raw, context()).stages["INVOICE"].triggers[0]
    assert trigger.type == kind and trigger.as_user_id == 2


@pytest.mark.parametrize(
    ("trigger", "sub", "message"),
    [
        ({"type": "sms_received"}, ["type"], "unknown trigger type 'sms_received'"),
        ({"type": "custom"}, ["filter", "event"], "Field required"),
        ({"type": "custom", "filter": {"event": "payment_received"}}, ["filter", "event"], "built-in event"),
        ({"type": "payment_received", "filter": {"min_amount": 10, "max_amount": 5}}, ["filter"], "min_amount is above max_amount"),
        ({"type": "payment_received", "filter": {"currency": "dollars"}}, ["filter", "currency"], "pattern"),
        ({"type": "task_status", "filter": {"status": "done"}}, ["filter", "status"], "'completed'"),
        ({"type": "task_status", "filter": {"created_by_stage": "SHIP"}}, ["filter", "created_by_stage"], "not a stage of this pipeline"),
        ({"type": "task_status", "filter": {"responsible_id": 8}}, ["filter", "responsible_id"], "user 8 does not exist"),
        ({"type": "document_signed", "filter": {"template": "nda"}}, ["filter", "template"], "'nda' does not exist"),
        ({"type": "field_changed", "filter": {"fields": []}}, ["filter", "fields"], "at least 1 item"),
        ({"type": "email_opened", "filter": {"subject": "x"}}, ["filter", "subject"], "Extra inputs"),
        ({"type": "webhook", "condition": {"field": "Deal.Amount", "op": ">"}}, ["condition"], "needs a value"),
    ],
)
def test_bad_triggers_name_the_field(trigger: dict, sub: list, message: str) -> None:
    raw = {"stages": {"INVOICE": {"triggers": [{"name": "paid", **trigger}]}}}
    error = find(invalid(raw), ["body", "stages", "INVOICE", "triggers", 0, *sub])
    assert error["msg"].startswith("stage 'INVOICE', trigger 0 'paid'")
    assert message in error["msg"], error["msg"]


def test_trigger_names_are_unique_within_a_stage() -> None:
    raw = {"stages": {"INVOICE": {"triggers": [{"name": "paid", "type": "payment_received"},
                                               {"name": "paid", "type": "webhook"}]}}}
    assert "another trigger of this stage is named 'paid'" in find(invalid(raw), ["body", "stages", "INVOICE", "triggers", 1, "name"])["msg"]


def test_task_status_words_may_be_one_word() -> None:
    raw = {"stages": {"INVOICE": {"triggers": [{"name": "t", "type": "task_status",
                                                "filter": {"status": "completed", "title_contains": "invoice"}}]}}}
    trigger = validate_automation(raw, context()).stages["INVOICE"].triggers[0]
    assert trigger.filter["title_contains"] == ["invoice"]


# -- catalogues and app rule types ----------------------------------------------------------------


def test_rule_catalogue_has_every_type_with_schema_and_example() -> None:
    catalogue = rule_type_catalogue(RULE_TYPES)
    assert [entry["name"] for entry in catalogue] == list(RULE_TYPES)
    for entry in catalogue:
        schema = entry["settings_schema"]
        assert schema["type"] == "object" and schema["examples"], entry["name"]
        assert schema.get("additionalProperties") is False, entry["name"]
    by_name = {entry["name"]: entry for entry in catalogue}
    assert by_name["get_requisites"]["auxiliary"] and "city" in by_name["get_requisites"]["returns"]
    assert by_name["webhook"]["returns_from_settings"]
    assert by_name["copy_deal"]["entities"] == ["deal"]
    assert "signer_user_id" in by_name["send_for_signature"]["user_fields"]


def test_trigger_catalogue() -> None:
    catalogue = trigger_type_catalogue()
    assert {entry["name"] for entry in catalogue} == {
        "payment_received", "task_status", "document_opened", "document_signed", "email_opened", "link_clicked",
        "field_changed", "channel_reply", "call_finished", "responsible_changed", "webhook", "custom",
    }
    custom = next(entry for entry in catalogue if entry["name"] == "custom")
    assert custom["filter_schema"]["required"] == ["event"]


def test_app_rule_types() -> None:
    kind = custom_type(
        "crm_score",
        settings_schema={
            "type": "object",
            "properties": {"model": {"type": "string", "enum": ["fast", "exact"]}, "threshold": {"type": "number", "minimum": 0},
                           "note": {"type": "string", "default": "Score {{Deal.Title}}"}, "reviewer": {"type": "integer"}},
            "required": ["model"],
        },
        handler_url="https://scoring.example.com/run",
        returns=["score"],
        user_fields=["reviewer"],
    )
    ctx = context(rule_types={**RULE_TYPES, "crm_score": kind})
    rules = [
        {"name": "score", "type": "crm_score", "settings": {"model": "fast", "reviewer": 2}},
        {"name": "say", "type": "send_sms", "settings": {"text": "Score {{Rule.score.score}}"}},
    ]
    validate_automation({"stages": {"NEW": {"rules": rules}}}, ctx)
    rules[0]["settings"] = {"model": "slow", "reviewer": 5, "x": 1}
    errors = invalid({"stages": {"NEW": {"rules": rules}}}, ctx)
    base = ["body", "stages", "NEW", "rules", 0, "settings"]
    find(errors, [*base, "model"])
    find(errors, [*base, "x"])
    assert [entry["name"] for entry in rule_type_catalogue(RULE_TYPES, {"crm_score": kind})][-1] == "crm_score"


@pytest.mark.parametrize(
    ("name", "schema", "message"),
    [
        ("send_sms", {}, "built-in"),
        ("Bad-Name", {}, "lower-case"),
        ("ok", {"type": "array"}, "settings are an object"),
        ("ok", {"properties": {"a": {"type": "date"}}}, "'date' is not supported"),
        ("ok", {"properties": {"a b": {"type": "string"}}}, "identifiers"),
        ("ok", {"properties": {}, "required": ["a"]}, "not among the properties"),
    ],
)
def test_bad_app_rule_types(name: str, schema: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        custom_type(name, settings_schema=schema, handler_url="https://x.example.com", reserved=RULE_TYPES)


def test_a_too_long_setting_is_named_once() -> None:
    rule = {"name": "note", "type": "add_timeline_entry", "settings": {"text": "x" * 10_001}}
    errors = invalid(one_rule(rule))
    at = [error for error in errors if error["loc"] == ["body", "stages", "NEW", "rules", 0, "settings", "text"]]
    assert len(at) == 1 and "10000" in at[0]["msg"]
