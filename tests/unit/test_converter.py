"""stageflow's data converter reads every payload back as Temporal's default converter does: the same objects from
the same payloads (written the same), unknown keys ignored, a missing required field or a wrong shape refused."""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime, timezone

import pytest
from temporalio.converter import DataConverter

from workflows.converter import DATA_CONVERTER
from workflows.types import (
    EntryInput, EntryPlan, ItemEvent, ItemMove, ItemState, RuleCall, RuleOutcome, RulePlan, RulesTogether, WaitSpec,
)

AT = datetime(2026, 12, 6, 9, 30, tzinfo=timezone.utc)


def _plan(index: int, **extra) -> RulePlan:
    return RulePlan(index=index, name=f"rule{index}", type="add_timeline_entry", activity="rule.add_timeline_entry",
                    settings={"text": "Hello {{Deal.Title}}", "nested": {"list": [1, 2.5, None]}}, due=AT, **extra)


VALUES = [
    (EntryInput(item_id=7, entity="deal", pipeline_id=2, stage="NEW", entry_no=3, entered_at=AT,
                parent_workflow_id="deal-7", engine=2,
                plan=EntryPlan(rules=[_plan(0), _plan(1, depends_on=["rule0"], wait_for="rule0", delay="24h")],
                               constants={"Boss": 1}, variables={"x": "y"}, config_version=4)), EntryInput),
    (EntryInput(item_id=7, entity="deal", pipeline_id=2, stage="NEW", entry_no=1, entered_at=AT,
                parent_workflow_id="deal-7"), EntryInput),
    (RulesTogether(calls=[RuleCall(item_id=1, entity="lead", pipeline_id=1, stage="S", entry_no=1,
                                   workflow_id="lead-1/entry-1", rule=_plan(i), at=AT, results={"a": {"b": 1}})
                          for i in range(3)], max_attempts=6), RulesTogether),
    ([RuleOutcome(status="done", result={"id": 4}, events=[ItemEvent(type="payment_received", data={"amount": 5})],
                  moves=[ItemMove(stage="WON", reason="rule", request_id="r1")],
                  wait=WaitSpec(kind="callback", timeout_seconds=30.0), changed=["close_date"]),
      RuleOutcome(status="skipped", reason="condition")], list[RuleOutcome]),
    (ItemState(item_id=3, entry_no=0, entity="deal", pipeline_id=1), ItemState),
]


@pytest.mark.parametrize("value, hint", VALUES, ids=lambda part: type(part).__name__)
def test_payloads_read_back_as_the_default_converter_reads_them(value, hint):
    default = DataConverter.default.payload_converter
    ours = DATA_CONVERTER.payload_converter
    payloads = default.to_payloads([value])
    assert ours.to_payloads([value]) == payloads
    [read] = ours.from_payloads(payloads, [hint])
    assert read == value == default.from_payloads(payloads, [hint])[0]


def test_unknown_keys_are_ignored_and_a_missing_required_field_is_refused():
    payload = DataConverter.default.payload_converter.to_payloads([{"status": "done", "from_a_newer_version": 1}])
    [read] = DATA_CONVERTER.payload_converter.from_payloads(payload, [RuleOutcome])
    assert read == RuleOutcome(status="done")
    missing = DataConverter.default.payload_converter.to_payloads([{"result": {}}])
    with pytest.raises(Exception, match="status"):
        DATA_CONVERTER.payload_converter.from_payloads(missing, [RuleOutcome])
    wrong = DataConverter.default.payload_converter.to_payloads([{"calls": "not a list"}])
    with pytest.raises(Exception):
        DATA_CONVERTER.payload_converter.from_payloads(wrong, [RulesTogether])


ODD_VALUES = [
    ({"status": "done", "reason": 5}, RuleOutcome),  # a number where text belongs
    ({"status": "done", "wait": {"kind": "fields", "timeout_seconds": 30, "fields": "ab"}}, RuleOutcome),
    ({"status": "done", "wait": {"kind": "fields", "timeout_seconds": "soon"}}, RuleOutcome),
    ({"status": "done", "events": [{"type": "x"}, "not an event"]}, RuleOutcome),
    ({"status": "done", "events": {"type": "x"}}, RuleOutcome),
    ({"status": "done", "result": ["a", "list"]}, RuleOutcome),
    ({"status": "done", "changed": None}, RuleOutcome),
    ({"index": True, "name": "r", "type": "t", "activity": "a", "timeout_seconds": 7, "auxiliary": 1}, RulePlan),
    ({"index": 1.0, "name": "r", "type": "t", "activity": "a", "due": "2026-12-06T09:30:00+00:00"}, RulePlan),
    ({"index": 1, "name": "r", "type": "t", "activity": "a", "due": "tomorrow"}, RulePlan),
    ({"index": 1, "name": "r", "type": "t", "activity": "a", "depends_on": [1, 2]}, RulePlan),
    ([{"status": "done"}, {"status": "skipped", "reason": "no"}], list[RuleOutcome]),
    ([{"status": "done"}, {"reason": "no status"}], list[RuleOutcome]),
    ({"status": "done"}, list[RuleOutcome]),
    ({"calls": [], "max_attempts": None}, RulesTogether),
]


@pytest.mark.parametrize("raw, hint", ODD_VALUES, ids=[str(index) for index in range(len(ODD_VALUES))])
def test_odd_payloads_read_as_the_default_converter_reads_them_or_are_refused_alike(raw, hint):
    """Values of other types than a field's, which the default converter coerces or refuses, get the same answer."""
    default = DataConverter.default.payload_converter
    payloads = default.to_payloads([raw])
    try:
        expected = default.from_payloads(payloads, [hint])
    except Exception as error:  # noqa: BLE001 - the default's refusal is what ours must match
        with pytest.raises(type(error)):
            DATA_CONVERTER.payload_converter.from_payloads(payloads, [hint])
        return
    assert DATA_CONVERTER.payload_converter.from_payloads(payloads, [hint]) == expected


@dataclasses.dataclass
class _Counted:
    name: str
    count: int = dataclasses.field(default=0, init=False)


def test_a_field_init_does_not_take_is_set_after_the_object_is_built():
    payload = DataConverter.default.payload_converter.to_payloads([{"name": "a", "count": 3}])
    [read] = DATA_CONVERTER.payload_converter.from_payloads(payload, [_Counted])
    assert (read.name, read.count) == ("a", 3)
    assert read == DataConverter.default.payload_converter.from_payloads(payload, [_Counted])[0]


def test_a_dataclass_field_types_are_resolved_once_per_process(monkeypatch):
    import temporalio.converter._payload_converter as temporal_json
    from workflows import converter

    value, hint = VALUES[0]
    payloads = DataConverter.default.payload_converter.to_payloads([value])
    calls = []
    resolve = converter.typing.get_type_hints
    monkeypatch.setattr(converter.typing, "get_type_hints", lambda cls: calls.append(cls) or resolve(cls))
    monkeypatch.setattr(temporal_json, "get_type_hints", lambda cls: pytest.fail(f"{cls} resolved per payload"))
    converter._fields.cache_clear()
    for _ in range(3):
        assert DATA_CONVERTER.payload_converter.from_payloads(payloads, [hint]) == [value]
    assert sorted(cls.__name__ for cls in calls) == ["EntryInput", "EntryPlan", "RulePlan"]


def test_a_field_init_does_not_take_is_written_as_the_default_converter_writes_it():
    counted = _Counted("a")
    counted.count = 4
    assert DATA_CONVERTER.payload_converter.to_payloads([counted]) == \
        DataConverter.default.payload_converter.to_payloads([counted])


if typing.TYPE_CHECKING:
    from workflows.types import ItemMove as _OnlyWhenChecking


@dataclasses.dataclass
class _Unresolvable:
    move: _OnlyWhenChecking | None
    note: str = "x"


def test_a_dataclass_whose_types_do_not_resolve_is_written_as_the_default_converter_writes_it():
    value = {"inside": _Unresolvable(move=None)}
    assert DATA_CONVERTER.payload_converter.to_payloads([value]) == \
        DataConverter.default.payload_converter.to_payloads([value])
