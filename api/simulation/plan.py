"""A simulation request checked against the real database and turned into a plan: the script as offsets from the
start, the horizon; the service's simulator, and the documents its runs rendered."""

from datetime import datetime, timezone
from typing import Any

from fastapi import Request, Response
from sqlmodel import Session

from api.changes import check_references
from api.errors import Problems, not_found
from api.simulation.runner import Simulator, Step
from api.simulation.schemas import MAX_HORIZON, ScriptPart, horizon_end, horizon_too_long, moment_after
from models.tables import Document

DOCX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def simulator(request: Request) -> Simulator:
    app = request.app
    if getattr(app.state, "simulator", None) is None:
        app.state.simulator = Simulator(app.state.settings, app.state.engine)
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


def document_download(simulator: Simulator, simulation_id: str, document_id: int, kind: str) -> Response:
    """A document a simulation rendered (its PDF or DOCX), while the simulation is kept."""
    engine = simulator.scratch(simulation_id)
    if engine is None:
        raise not_found("Simulation", simulation_id)
    try:
        with Session(engine) as session:
            document = session.get(Document, document_id)
            content = getattr(document, kind) if document is not None else None
            number = document.number if document is not None else ""
    finally:
        engine.dispose()
    if content is None:
        raise not_found("Document", document_id)
    media = "application/pdf" if kind == "pdf" else DOCX_MEDIA_TYPE
    return Response(content, media_type=media, headers={"Content-Disposition": f'inline; filename="{number}.{kind}"'})
