"""A simulation request checked against the real database and turned into a plan: the script as offsets from the
start, the horizon; and the service's simulator. The JSON routes and the console both plan through here."""

from datetime import datetime, timezone
from typing import Any

from fastapi import Request
from sqlmodel import Session

from api.usecases.items import check_references
from api.errors import Problems
from api.lookups import stages_of
from api.simulation.runner import Plan, Simulator, Step
from api.simulation.schemas import (
    MAX_HORIZON,
    SampleItem,
    ScriptPart,
    horizon_end,
    horizon_too_long,
    moment_after,
)
from models.tables import Pipeline


def simulator(request: Request) -> Simulator:
    app = request.app
    if getattr(app.state, "simulator", None) is None:
        app.state.simulator = Simulator(app.state.settings, app.state.engine, getattr(app.state, "metrics", None))
    return app.state.simulator


def _rule_names(config: dict[str, Any]) -> set[str]:
    return {
        str(rule.get("name"))
        for stage in (config.get("stages") or {}).values()
        for rule in (stage or {}).get("rules") or []
    }


def plan_steps(
    session: Session, problems: Problems, body: ScriptPart, stage_codes: list[str], config: dict[str, Any]
) -> tuple[list[Step], Any]:
    """The script as offsets from the start, checked against the pipeline; and the horizon as a timedelta."""
    now = datetime.now(timezone.utc)
    if horizon_too_long(body.horizon):
        problems.add(("body", "horizon"), f"{body.horizon!r} is longer than {MAX_HORIZON}, the longest simulation")
        return [], None
    end = horizon_end(body.horizon, now)
    rules = _rule_names(config)
    steps: list[Step] = []
    for index, step in enumerate(body.script):
        where = ("body", "script", index)
        moment = moment_after(step.at, now)
        if moment < now:
            problems.add((*where, "at"), f"{step.at} is before the start of the simulation ({now.isoformat()})")
        elif moment > end:
            problems.add((*where, "at"), f"{step.at} is after the horizon ({body.horizon}, {end.isoformat()})")
        if step.move is not None and step.move not in stage_codes:
            problems.add((*where, "move"), f"the pipeline has no stage {step.move} (its stages: {', '.join(stage_codes)})")
        if step.task is not None and step.task.rule not in rules:
            problems.add((*where, "task", "rule"), f"the automation has no rule {step.task.rule!r}")
        if step.patch is not None:
            check_references(session, problems, step.patch.model_dump(exclude_unset=True), where=(*where, "patch"))
        steps.append(Step(offset=moment - now, step=step, index=index))
    for name in body.webhooks:
        if name not in rules:
            problems.add(("body", "webhooks", name), f"the automation has no rule {name!r}")
    steps.sort(key=lambda step: (step.offset, step.index))
    return steps, end - now


def sample_plan(
    session: Session, pipeline: Pipeline, item: SampleItem, part: ScriptPart, config: dict[str, Any], *, draft: bool
) -> Plan:
    """The simulation of a sample item in `pipeline` under `config` (the saved automation, or a checked draft);
    a 422 naming every field at fault otherwise."""
    problems = Problems()
    codes = [stage.code for stage in stages_of(session, pipeline.id)]
    if not codes:
        problems.add(("body", "pipeline_id"), f"pipeline {pipeline.id} has no stages")
    stage = item.stage or (codes[0] if codes else None)
    if stage is not None and stage not in codes:
        problems.add(("body", "item", "stage"), f"pipeline {pipeline.id} has no stage {stage} (its stages: {', '.join(codes)})")
    check_references(session, problems, item.model_dump(), where=("body", "item"))
    steps, horizon = plan_steps(session, problems, part, codes, config)
    problems.raise_if_any()
    sample = item.model_dump(exclude={"stage"})
    return Plan(
        pipeline_id=pipeline.id, entity=pipeline.entity_type, stage=stage, steps=steps, horizon=horizon,
        webhooks=part.webhooks, draft=config if draft else None, sample=sample,
        contact_ids=[sample.get("contact_id")], company_ids=[sample.get("company_id")],
    )
