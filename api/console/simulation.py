"""What-if simulations from the console: a sample item and a short script, the months that follow as a table."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path as PathParam, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from api.console import forms
from api.console.pages import ChangeDep, Id, UserDep, page
from api.console.session import require_admin
from api.console.words import simulation_in_words
from api.deps import SessionDep
from api.lookups import contacts_by_name, get_pipeline, stages_of
from api.simulation.documents import read_simulated_document
from api.simulation.plan import sample_plan, simulator
from api.simulation.runner import SimulationsBusy
from api.simulation.schemas import SampleItem, ScriptPart
from api.usecases.automation import current_automation
from api.usecases.users import users_by_name
from models.domain.fields import field_title
from models.domain.wording import time_after

router = APIRouter()
SAMPLE_LABELS = {"title": "Title", "amount": "Amount", "currency": "Currency", "responsible_id": "Responsible",
                 "contact_id": "Contact", "horizon": "Simulate for", "script": "Script"}


@router.get("/pipelines/{pipeline_id}/simulate", response_class=HTMLResponse)
def simulate_form(request: Request, pipeline_id: Id, user: UserDep, session: SessionDep):
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    return page(request, "simulate.html", user, pipeline=pipeline, stages=stages_of(session, pipeline_id),
                users=users_by_name(session),
                contacts=contacts_by_name(session),
                values={"horizon": "30d", "title": "Sample deal" if pipeline.entity_type == "deal" else "Sample lead"},
                errors={}, answer=None)


@router.post("/pipelines/{pipeline_id}/simulate", response_class=HTMLResponse)
async def simulate(request: Request, pipeline_id: Id, user: ChangeDep, session: SessionDep):
    """The pipeline's saved automation for a sample item and a short script; the months as a timeline."""
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    form = await request.form()
    values = {name: str(form.get(name) or "") for name in
              ("title", "amount", "currency", "responsible_id", "contact_id", "script", "horizon")}
    stages = stages_of(session, pipeline_id)
    context = {"pipeline": pipeline, "stages": stages, "values": values, "answer": None,
               "stage_names": {stage.code: stage.name for stage in stages},
               "users": users_by_name(session),
               "contacts": contacts_by_name(session)}
    errors: dict[str, str] = {}
    lines = [number for number, line in enumerate(values["script"].splitlines(), start=1) if line.split()]

    def refused(loc: list[str], message: str) -> None:
        if len(loc) > 1 and loc[0] == "item":  # the sample item's fields, as the plan names them
            loc = loc[1:]
        name = loc[0] if loc[0] in SAMPLE_LABELS else "form"
        where = SAMPLE_LABELS.get(loc[0], field_title(loc[0]))
        if loc[0] == "script" and len(loc) > 1 and loc[1].isdigit() and int(loc[1]) < len(lines):
            where += f", line {lines[int(loc[1])]}"
        text = f"{where}: {forms.plain(message)}"
        errors[name] = f"{errors[name]}; {text}" if name in errors else text

    script: list = []
    try:
        script = forms.read_script(values["script"])
    except forms.FormProblem as problem:
        errors["script"] = f"Script, {problem}"
    try:
        sample = SampleItem.model_validate({
            key: value for key, value in {
                "title": values["title"], "amount": values["amount"] or None, "currency": values["currency"] or None,
                "responsible_id": values["responsible_id"] or None, "contact_id": values["contact_id"] or None,
            }.items() if value is not None
        })
    except ValidationError as error:
        for problem in error.errors():
            refused([str(piece) for piece in problem["loc"]], problem["msg"])
    try:
        part = ScriptPart.model_validate({"script": script, "horizon": values["horizon"] or "30d"})
    except ValidationError as error:
        for problem in error.errors():
            refused([str(piece) for piece in problem["loc"]], problem["msg"])
    if errors:
        return page(request, "simulate.html", user, status_code=422, errors=errors, **context)
    try:
        plan = sample_plan(session, pipeline, sample, part, current_automation(session, pipeline_id), draft=False)
    except HTTPException as problems:
        for problem in problems.detail:
            loc = [str(p) for p in problem["loc"]]
            refused(loc[1:] if loc[0] == "body" and len(loc) > 1 else loc, str(problem["msg"]))
        return page(request, "simulate.html", user, status_code=422, errors=errors, **context)
    try:
        answer = await simulator(request).run(plan)
    except SimulationsBusy as busy:
        return page(request, "simulate.html", user, status_code=429, errors={"form": str(busy)}, **context)
    start = datetime.fromisoformat(answer["started_at"])
    for entry in answer["timeline"]:
        entry["after"] = time_after(start, datetime.fromisoformat(entry["at"]))
    answer = simulation_in_words(session, answer, pipeline_id, request.state.zone)
    return page(request, "simulate.html", user, errors={}, **{**context, "answer": answer})


@router.get("/simulations/{simulation_id}/documents/{document_id}/{kind}")
def simulated_document(request: Request, simulation_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{16}$")],
                       document_id: Id, kind: Literal["pdf", "docx"], user: UserDep):
    """A document a simulation rendered, for the signed-in admin."""
    require_admin(user)
    return read_simulated_document(simulator(request), simulation_id, kind, document_id=document_id)
