"""What the engine's smallest pieces cost in CPU, without Temporal: a keyed timeline entry written, an effect record
written, one user looked up five times in one transaction (as five rules run together each check their author), and
the payloads of one stage entry of five rules read back (its input, a `rules.together` call, their
outcomes), with stageflow's data converter beside Temporal's default one.

Run: .venv/bin/python bench/steps.py [--count 2000]
Prints one line per measure (CPU milliseconds per call).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlmodel import Session, SQLModel
from temporalio.converter import DataConverter

from models.db import make_engine, session_scope
from models.store import add_timeline, insert_once
from models.tables import Effect, User, utcnow
from workflows.converter import DATA_CONVERTER
from workflows.types import EntryInput, EntryPlan, RuleCall, RuleOutcome, RulePlan, RulesTogether

AT = datetime(2026, 12, 6, 9, 30, tzinfo=timezone.utc)


def cpu_ms(work: Callable[[int], Any], count: int) -> float:
    """CPU milliseconds per call of `work(i)`, i from 0 to count - 1."""
    start = time.process_time()
    for index in range(count):
        work(index)
    return (time.process_time() - start) / count * 1000


def inserts(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'steps.db'}")

        @event.listens_for(engine, "connect")
        def _no_item_rows_needed(connection, _record) -> None:
            connection.execute("PRAGMA foreign_keys=OFF")

        SQLModel.metadata.create_all(engine)
        measured = {}
        with Session(engine) as session:
            measured["keyed timeline entry"] = cpu_ms(lambda i: add_timeline(
                session, 1, "rule_done", "Rule hello (add_timeline_entry) done", at=AT, key=f"deal-1/entry-1/r{i}/done",
                rule_name=f"r{i}", entry_no=1, result={"entry_id": i},
            ), count)
            measured["effect record"] = cpu_ms(lambda i: insert_once(session, Effect.__table__, {
                "key": f"deal-1/entry-1/r{i}", "item_id": 1, "rule_type": "add_timeline_entry", "status": "done",
                "result": {"result": {"entry_id": i}}, "created_at": utcnow(),
            }, "key", "key"), count)
            session.add(User(id=1, name="Anna", email="anna@example.com"))
            session.commit()

        def five_lookups(_index: int) -> None:
            with session_scope(engine) as session:
                for _ in range(5):
                    assert session.get(User, 1) is not None

        measured["one user looked up five times in a transaction"] = cpu_ms(five_lookups, count)
        engine.dispose()
    return measured


def _rule(index: int) -> RulePlan:
    return RulePlan(index=index, name=f"rule{index}", type="add_timeline_entry", activity="rule.add_timeline_entry",
                    settings={"text": "Hello {{Deal.Title}}", "kind": "note"}, due=AT, local=True, version=3)


def payloads(count: int) -> dict[str, float]:
    rules = [_rule(index) for index in range(5)]
    entry = EntryInput(item_id=7, entity="deal", pipeline_id=2, stage="NEW", entry_no=3, entered_at=AT,
                       parent_workflow_id="deal-7", engine=2,
                       plan=EntryPlan(rules=rules, constants={"Boss": 1}, config_version=3))
    together = RulesTogether(calls=[RuleCall(item_id=7, entity="deal", pipeline_id=2, stage="NEW", entry_no=3,
                                             workflow_id="deal-7/entry-3", rule=rule, at=AT) for rule in rules],
                             max_attempts=5)
    outcomes = [RuleOutcome(status="done", result={"entry_id": 9, "text": "Hello", "author_id": 1, "kind": "note"})] * 5
    measured = {}
    for name, value, hint in (("entry input", entry, EntryInput), ("rules.together call", together, RulesTogether),
                              ("five outcomes", outcomes, list[RuleOutcome])):
        written = DATA_CONVERTER.payload_converter.to_payloads([value])
        for label, converter in (("stageflow", DATA_CONVERTER), ("Temporal default", DataConverter.default)):
            measured[f"read {name} ({label})"] = cpu_ms(
                lambda _i: converter.payload_converter.from_payloads(written, [hint]), count
            )
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="calls per measure (default 2000)")
    args = parser.parse_args()
    for name, value in {**inserts(args.count), **payloads(args.count)}.items():
        print(f"{name}: {value:.3f} ms CPU")


if __name__ == "__main__":
    main()
