"""Pipelines in the console: the list, a new pipeline with its stages, and the stages page where an admin renames
the pipeline and adds, renames, reorders and removes stages, each through the use case of the API's route."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import Session, col, select

from api.console import forms
from api.console.pages import STAGE_KINDS, ChangeDep, Id, StageCode, UserDep, back, page
from api.console.session import ConsoleUser, require_admin
from api.deps import ClientDep, SessionDep, SettingsDep
from api.lookups import get_pipeline, stages_of
from api.schemas import PipelineCreate, PipelineUpdate, StageAdd, StageUpdate
from api.usecases import pipelines as usecase
from api.usecases.automation import current_automation
from models.tables import Item, Pipeline

router = APIRouter()
NEW_STAGES = 3
"""Rows for stages a new pipeline's form starts with."""
PIPELINE_LABELS = {"name": "Name", "entity_type": "Holds", "stages": "Stages"}
STAGE_LABELS = {"code": "Code", "name": "Name", "semantic": "Kind", "position": "Place",
                "move_items_to": "Move its items to"}


def stage_code(name: str) -> str:
    """A stage's code made from its name: `Prepare documents` → `PREPARE_DOCUMENTS`."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Z0-9]+", "_", plain.upper()).strip("_")[:50]


def _errors(error: ValidationError | HTTPException, labels: dict[str, str], row_key: str = "") -> dict[str, str]:
    """A refusal's problems by form field, each with the field's label: `stages.1.code` on the second stage row."""
    problems = error.errors() if isinstance(error, ValidationError) else (
        error.detail if isinstance(error.detail, list) else [{"loc": [], "msg": str(error.detail)}])
    placed: dict[str, str] = {}
    for problem in problems:
        loc = [str(part) for part in problem.get("loc") or [] if part not in ("body", "query", "path")]
        message = forms.plain(str(problem.get("msg", "")))
        if len(loc) >= 2 and loc[0] == "stages" and loc[1].isdigit():
            key, words = f"stage-{loc[1]}", f"Stage {int(loc[1]) + 1}" + (
                f", {STAGE_LABELS.get(loc[2], loc[2]).lower()}" if len(loc) > 2 else "")
        elif loc and loc[0] in labels:
            key, words = (f"{row_key}{loc[0]}" if row_key else loc[0]), labels[loc[0]]
        else:
            key, words = row_key.rstrip(".") or "form", ""
        text = f"{words}: {message}" if words else message
        placed[key] = f"{placed[key]}; {text}" if key in placed else text
    return placed


# -- the list and a new pipeline ---------------------------------------------------------------------------------


def _list(request: Request, user: ConsoleUser, session: Session, values: dict[str, Any], errors: dict[str, str],
          status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    rows = session.exec(select(Pipeline).order_by(Pipeline.id)).all()
    counts = {row.id: len(stages_of(session, row.id)) for row in rows}
    return page(request, "pipelines.html", user, status_code=status_code, pipelines=rows, counts=counts,
                values=values, errors=errors, semantics=STAGE_KINDS)


@router.get("/pipelines", response_class=HTMLResponse)
def pipelines(request: Request, user: UserDep, session: SessionDep):
    kinds = ["process"] * (NEW_STAGES - 1) + ["success"]
    blank = {"name": "", "entity_type": "deal",
             "stages": [{"name": "", "code": "", "semantic": kind} for kind in kinds]}
    return _list(request, user, session, blank, {})


@router.post("/pipelines", response_class=HTMLResponse)
async def create_pipeline(request: Request, user: ChangeDep, session: SessionDep):
    """A new pipeline with the stages typed, in their order (a stage without a code gets one made from its name)."""
    require_admin(user)
    form = await request.form()
    names, codes = form.getlist("stage_name"), form.getlist("stage_code")
    kinds = form.getlist("stage_kind")
    kinds += ["process"] * (len(names) - len(kinds))
    rows = [{"name": str(name).strip(), "code": str(code).strip(), "semantic": str(kind)}
            for name, code, kind in zip(names, codes, kinds, strict=False)]
    values = {"name": str(form.get("name") or ""), "entity_type": str(form.get("entity_type") or ""),
              "stages": rows or [{"name": "", "code": "", "semantic": "process"}]}
    given = [row for row in rows if row["name"] or row["code"]]
    try:
        body = PipelineCreate.model_validate({
            "name": values["name"], "entity_type": values["entity_type"],
            "stages": [{"name": row["name"], "code": row["code"] or stage_code(row["name"]),
                        "semantic": row["semantic"]} for row in given],
        })
    except ValidationError as error:
        errors = _errors(error, PIPELINE_LABELS)
        if given != rows:  # the rows left empty are not sent: number the problems by the rows shown
            shown = {f"stage-{index}": f"stage-{rows.index(row)}" for index, row in enumerate(given)}
            errors = {shown.get(key, key): text for key, text in errors.items()}
        return _list(request, user, session, values, errors, status.HTTP_422_UNPROCESSABLE_CONTENT)
    created = usecase.create_pipeline(session, body)
    return back(f"/ui/pipelines/{created.id}/stages?saved=created")


# -- the stages page ---------------------------------------------------------------------------------------------


def _stages_page(request: Request, user: ConsoleUser, session: Session, pipeline: Pipeline, *, errors: dict[str, str],
                 typed: dict[str, str] | None = None, saved: str = "",
                 status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    stages = stages_of(session, pipeline.id)
    counts = dict(session.exec(
        select(Item.stage, func.count()).where(Item.pipeline_id == pipeline.id, col(Item.archived_at).is_(None))
        .group_by(Item.stage)).all())
    automation = current_automation(session, pipeline.id).get("stages") or {}
    questions = {stage.code: _removal_question(pipeline, stage, counts.get(stage.code, 0), automation.get(stage.code))
                 for stage in stages}
    return page(request, "stages.html", user, status_code=status_code, pipeline=pipeline, stages=stages,
                counts=counts, questions=questions, semantics=STAGE_KINDS, errors=errors, typed=typed or {},
                saved=saved[:100])


def _removal_question(pipeline: Pipeline, stage: Any, count: int, parts: dict[str, Any] | None) -> str:
    """What the browser asks before a stage is removed: the items that move, the rules and triggers that leave."""
    question = f"Remove the stage {stage.name}?"
    if count:
        question += (f" Its {count} {pipeline.entity_type}{'' if count == 1 else 's'} "
                     f"move{'s' if count == 1 else ''} to the stage you chose.")
    names = [str(piece.get("name")) for part in ("rules", "triggers") for piece in (parts or {}).get(part) or []]
    if names:
        question += (f" Its rules and triggers ({', '.join(names)}) leave the automation as a new version; restoring "
                     "an older version needs the stage added again first.")
    return question


@router.get("/pipelines/{pipeline_id}/stages", response_class=HTMLResponse)
def stages(request: Request, pipeline_id: Id, user: UserDep, session: SessionDep, saved: str = ""):
    require_admin(user)
    return _stages_page(request, user, session, get_pipeline(session, pipeline_id), errors={}, saved=saved)


def _refused(request: Request, user: ConsoleUser, session: Session, pipeline: Pipeline,
             error: ValidationError | HTTPException, labels: dict[str, str], row_key: str,
             typed: dict[str, str]) -> HTMLResponse:
    code = error.status_code if isinstance(error, HTTPException) else status.HTTP_422_UNPROCESSABLE_CONTENT
    if code not in (status.HTTP_409_CONFLICT, status.HTTP_422_UNPROCESSABLE_CONTENT, status.HTTP_404_NOT_FOUND):
        raise error
    return _stages_page(request, user, session, pipeline, errors=_errors(error, labels, row_key), typed=typed,
                        status_code=code)


@router.post("/pipelines/{pipeline_id}/rename", response_class=HTMLResponse)
def rename_pipeline(request: Request, pipeline_id: Id, user: ChangeDep, session: SessionDep,
                    name: Annotated[str, Form(max_length=1000)] = ""):
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    try:
        body = PipelineUpdate.model_validate({"name": name})
    except ValidationError as error:
        return _refused(request, user, session, pipeline, error, {"name": "Pipeline name"}, "pipeline.",
                        {"pipeline.name": name})
    usecase.rename_pipeline(session, pipeline, body.name)
    return back(f"/ui/pipelines/{pipeline_id}/stages?saved=renamed")


@router.post("/pipelines/{pipeline_id}/stages", response_class=HTMLResponse)
def add_stage(request: Request, pipeline_id: Id, user: ChangeDep, session: SessionDep,
              name: Annotated[str, Form(max_length=1000)] = "", code: Annotated[str, Form(max_length=1000)] = "",
              semantic: Annotated[str, Form(max_length=20)] = "process",
              after: Annotated[str, Form(max_length=60)] = ""):
    """A new stage after the stage `after` names (first when `after` is `-`, last when empty)."""
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    typed = {"add.name": name, "add.code": code, "add.semantic": semantic, "add.after": after}
    codes = [stage.code for stage in stages_of(session, pipeline_id)]
    position = 0 if after == "-" else codes.index(after) + 1 if after in codes else None
    try:
        body = StageAdd.model_validate({"name": name, "code": code.strip() or stage_code(name), "semantic": semantic,
                                        "position": position})
        usecase.add_stage(session, pipeline, body)
    except (ValidationError, HTTPException) as error:
        return _refused(request, user, session, pipeline, error, STAGE_LABELS, "add.", typed)
    return back(f"/ui/pipelines/{pipeline_id}/stages?saved={quote(f'{body.name} added')}")


@router.post("/pipelines/{pipeline_id}/stages/{code}", response_class=HTMLResponse)
def change_stage(request: Request, pipeline_id: Id, code: StageCode, user: ChangeDep, session: SessionDep,
                 name: Annotated[str, Form(max_length=1000)] = "", semantic: Annotated[str, Form(max_length=20)] = "",
                 move: Annotated[str, Form(max_length=10)] = ""):
    """A stage renamed or given another kind (`name`, `semantic`), or moved one place (`move` up or down)."""
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    typed = {f"{code}.name": name, f"{code}.semantic": semantic}
    codes = [stage.code for stage in stages_of(session, pipeline_id)]
    changes: dict[str, Any] = {}
    if move in ("up", "down") and code in codes:
        changes["position"] = max(codes.index(code) + (-1 if move == "up" else 1), 0)
    else:
        changes = {"name": name, "semantic": semantic or None}
        changes = {key: value for key, value in changes.items() if value is not None}
    before = {stage.code: (stage.name, stage.semantic) for stage in stages_of(session, pipeline_id)}.get(code)
    try:
        changed = usecase.change_stage(session, pipeline, code, StageUpdate.model_validate(changes))
    except (ValidationError, HTTPException) as error:
        return _refused(request, user, session, pipeline, error, STAGE_LABELS, f"{code}.", typed)
    if "position" in changes:
        said = f"{changed.name} moved one place {'earlier' if move == 'up' else 'later'}"
    elif before is not None and before[0] != changed.name:
        said = f"{before[0]} renamed {changed.name}"
    elif before is not None and before[1] != changed.semantic:
        said = f"{changed.name} now counts as {STAGE_KINDS.get(changed.semantic, changed.semantic)}"
    else:
        said = f"{changed.name} unchanged"
    return back(f"/ui/pipelines/{pipeline_id}/stages?saved={quote(said)}")


@router.post("/pipelines/{pipeline_id}/stages/{code}/remove", response_class=HTMLResponse)
async def remove_stage(request: Request, pipeline_id: Id, code: StageCode, user: ChangeDep, session: SessionDep,
                       client: ClientDep, settings: SettingsDep,
                       move_items_to: Annotated[str, Form(max_length=60)] = ""):
    """The stage removed, the items in it moved to `move_items_to` first as a user's move would."""
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    name = next((stage.name for stage in stages_of(session, pipeline_id) if stage.code == code), code)
    try:
        await usecase.remove_stage(session, client, settings, pipeline, code, move_items_to or None,
                                   saved_by=user.name)
    except HTTPException as error:
        return _refused(request, user, session, pipeline, error, {**STAGE_LABELS, "code": "Stage"}, f"{code}.",
                        {f"{code}.move_items_to": move_items_to})
    return back(f"/ui/pipelines/{pipeline_id}/stages?saved={quote(f'{name} removed')}")
