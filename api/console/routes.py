"""The automation console at `/ui/`: server-rendered pages on the same checks and workflow calls as the JSON API.

Pipelines as boards of stages with their rules and triggers (edited through forms made from the catalogue's
schemas, saved through the same validation as `PUT /pipelines/{id}/automation`), deals and leads as boards to
drag across stages, each item's page with its story and what is pending, and what-if simulations.
"""

import json
import secrets
from urllib.parse import quote
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Path as PathParam, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlmodel import Session, col, select

from api.console import forms
from api.console.session import (
    COOKIE,
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_SECONDS,
    ConsoleUser,
    SignInNeeded,
    check_csrf,
    current_user,
    end_session,
    make_cookie,
    require_admin,
)
from api.deps import MAX_ID, ClientDep, SessionDep, SettingsDep, caller_for_key
from api.files import document_file
from api.lookups import get_pipeline, stages_of
from api.schemas import ItemCreate
from api.simulation.documents import read_simulated_document
from api.simulation.plan import sample_plan, simulator
from api.simulation.runner import SimulationsBusy
from api.simulation.schemas import SampleItem, ScriptPart
from api.texts import MESSAGE, unstorable
from api.usecases import items
from api.usecases.automation import change_automation, current_automation
from api.usecases.documents import get_document
from api.usecases.rule_types import rule_catalogue, trigger_catalogue
from models.domain.rule_types import GROUPS
from models.domain.wording import condition_words, delay_words, time_after
from models.tables import Contact, CrmActivity, Document, Item, Message, Pipeline, Task, TimelineEntry, User
from workflows.types import entry_workflow_id

ROOT = Path(__file__).resolve().parent.parent.parent
templates = Jinja2Templates(directory=ROOT / "templates" / "console")
STATIC = Path(__file__).resolve().parent / "static"
Part = Literal["rules", "triggers"]
Entity = Literal["deal", "lead"]
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]
Index = Annotated[int, PathParam(ge=0, le=999)]
StageCode = Annotated[str, PathParam(pattern=r"^[A-Z0-9_]{1,50}$")]

router = APIRouter(prefix="/ui", include_in_schema=False)


def console_user(request: Request, session: SessionDep, settings: SettingsDep) -> ConsoleUser:
    user = current_user(request, session, settings)
    if user is None:
        raise SignInNeeded()
    request.state.console_user = user
    return user


UserDep = Annotated[ConsoleUser, Depends(console_user)]


async def changing(request: Request, user: UserDep) -> ConsoleUser:
    """A state-changing call: a session and its CSRF token, and a form of text that can be stored."""
    await check_csrf(request, user)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        bad = [name for name, value in form.multi_items() if isinstance(value, str) and any(unstorable(value))]
        if bad or any(any(unstorable(name)) for name in form.keys()):
            raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                                detail=[{"loc": ["form", name], "msg": MESSAGE, "type": "value_error"} for name in bad])
    return user


ChangeDep = Annotated[ConsoleUser, Depends(changing)]


def page(request: Request, name: str, user: ConsoleUser | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"user": user, "csrf_field": CSRF_FIELD, **context}, status_code=status_code
    )


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


# -- signing in ---------------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str = ""):
    token = secrets.token_hex(16)
    response = page(request, "login.html", None, login_token=token, error=error[:200])
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/ui", max_age=3600)
    return response


@router.post("/login")
def login(
    request: Request, session: SessionDep, settings: SettingsDep,
    api_key: Annotated[str, Form(max_length=500)] = "", login_token: Annotated[str, Form(max_length=100)] = "",
):
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or login_token != expected:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="The sign-in form's token is missing or wrong")
    caller = caller_for_key(settings, session, api_key.strip()) if api_key.strip() else None
    if caller is None:
        response = page(request, "login.html", None, status_code=status.HTTP_401_UNAUTHORIZED,
                        login_token=expected, error="That API key is not valid.")
        return response
    cookie = make_cookie(session, caller.name, caller.role, caller.key_id, caller.key_hash)
    response = back("/ui/pipelines")
    response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", path="/ui", max_age=SESSION_SECONDS,
                        secure=request.url.scheme == "https")
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(user: ChangeDep, session: SessionDep):
    end_session(session, user)
    response = back("/ui/login")
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/")
def home(user: UserDep):
    return back("/ui/pipelines")


# -- pipelines and their automation ---------------------------------------------------------------------------


def _rule_types(session: Session) -> dict[str, dict[str, Any]]:
    return {kind["name"]: kind for kind in rule_catalogue(session)}


def _trigger_types() -> dict[str, dict[str, Any]]:
    return {kind["name"]: kind for kind in trigger_catalogue()}


@router.get("/pipelines", response_class=HTMLResponse)
def pipelines(request: Request, user: UserDep, session: SessionDep):
    rows = session.exec(select(Pipeline).order_by(Pipeline.id)).all()
    counts = {row.id: len(stages_of(session, row.id)) for row in rows}
    return page(request, "pipelines.html", user, pipelines=rows, counts=counts)


@router.get("/pipelines/{pipeline_id}", response_class=HTMLResponse)
def board(request: Request, pipeline_id: Id, user: UserDep, session: SessionDep, saved: str = ""):
    pipeline = get_pipeline(session, pipeline_id)
    config = current_automation(session, pipeline_id)
    types = _rule_types(session)
    columns = []
    for stage in stages_of(session, pipeline_id):
        automation = config["stages"].get(stage.code) or {"rules": [], "triggers": []}
        rules = [{
            **rule, "index": index, "delay_words": delay_words(rule.get("delay"), rule.get("start", "on_entry")),
            "condition_words": condition_words(rule.get("condition")),
            "group": (types.get(rule["type"]) or {}).get("group_title", "unknown type"),
        } for index, rule in enumerate(automation.get("rules") or [])]
        triggers = [{**trigger, "index": index, "condition_words": condition_words(trigger.get("condition")),
                     "filter_words": _filter_words(trigger.get("filter"))}
                    for index, trigger in enumerate(automation.get("triggers") or [])]
        columns.append({"stage": stage, "rules": rules, "triggers": triggers})
    return page(request, "board.html", user, pipeline=pipeline, columns=columns, saved=saved[:100],
                rule_types=types, trigger_types=_trigger_types())


def _filter_words(filter_: dict[str, Any] | None) -> str:
    """A trigger's filter as `currency EUR, min_amount 100`: what it asks of an event (empty: any event)."""
    shown = []
    for name, value in (filter_ or {}).items():
        if value in (None, [], "", False):
            continue
        text = ", ".join(str(part) for part in value) if isinstance(value, list) else str(value)
        shown.append(f"{name.replace('_', ' ')} {text}")
    return "; ".join(shown)


def _rule_form(session: Session, pipeline: Pipeline, stage: str, index: int | None, rule: dict[str, Any],
               errors: dict[str, str]) -> dict[str, Any]:
    types = _rule_types(session)
    kind = types.get(rule.get("type") or "")
    delay = rule.get("delay")
    delay = {"after": delay} if isinstance(delay, str) else (delay or {})
    fields = forms.schema_fields(kind["settings_schema"], "settings", rule.get("settings")) if kind else []
    for field in fields:
        field.error = errors.get(field.name, "")
    constants = current_automation(session, pipeline.id).get("constants") or {}
    return {
        "part": "rules", "pipeline": pipeline, "stage": stage, "index": index, "piece": rule, "kind": kind,
        "types": types, "groups": GROUPS, "fields": fields, "delay": delay, "errors": errors,
        "condition": json.dumps(rule["condition"], ensure_ascii=False) if rule.get("condition") else "",
        "placeholders": forms.placeholder_paths(pipeline.entity_type, constants),
    }


def _trigger_form(pipeline: Pipeline, stage: str, index: int | None, trigger: dict[str, Any],
                  errors: dict[str, str]) -> dict[str, Any]:
    types = _trigger_types()
    kind = types.get(trigger.get("type") or "")
    fields = forms.schema_fields(kind["filter_schema"], "filter", trigger.get("filter")) if kind else []
    for field in fields:
        field.error = errors.get(field.name, "")
    return {
        "part": "triggers", "pipeline": pipeline, "stage": stage, "index": index, "piece": trigger, "kind": kind,
        "types": types, "fields": fields, "errors": errors,
        "condition": json.dumps(trigger["condition"], ensure_ascii=False) if trigger.get("condition") else "",
    }


def _pieces(config: dict[str, Any], stage: str, part: str) -> list[dict[str, Any]]:
    stages = config.setdefault("stages", {})
    automation = stages.setdefault(stage, {"rules": [], "triggers": []})
    return automation.setdefault(part, [])


def _stage_or_404(session: Session, pipeline_id: int, stage: str) -> str:
    if stage not in [row.code for row in stages_of(session, pipeline_id)]:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"Pipeline {pipeline_id} has no stage {stage}")
    return stage


@router.get("/pipelines/{pipeline_id}/automation/{part}/new", response_class=HTMLResponse)
def new_piece(
    request: Request, pipeline_id: Id, part: Part, user: UserDep, session: SessionDep,
    stage: Annotated[str, Query(pattern=r"^[A-Z0-9_]{1,50}$")], type: Annotated[str, Query(max_length=100)] = "",
):
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    _stage_or_404(session, pipeline_id, stage)
    piece = {"type": type} if type else {}
    context = (_rule_form(session, pipeline, stage, None, piece, {}) if part == "rules"
               else _trigger_form(pipeline, stage, None, piece, {}))
    return page(request, "piece_form.html", user, **context)


@router.get("/pipelines/{pipeline_id}/automation/{part}/{stage}/{index}", response_class=HTMLResponse)
def edit_piece(request: Request, pipeline_id: Id, part: Part, stage: StageCode, index: Index, user: UserDep,
               session: SessionDep):
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    pieces = _pieces(current_automation(session, pipeline_id), _stage_or_404(session, pipeline_id, stage), part)
    if index >= len(pieces):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"Stage {stage} has no {part[:-1]} {index}")
    context = (_rule_form(session, pipeline, stage, index, pieces[index], {}) if part == "rules"
               else _trigger_form(pipeline, stage, index, pieces[index], {}))
    return page(request, "piece_form.html", user, **context)


def _json_field(form: Any, name: str) -> Any:
    text = (form.get(name) or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise forms.FormProblem(name, f"is not JSON: {error}") from None


def _read_rule(session: Session, form: Any) -> dict[str, Any]:
    kind = _rule_types(session).get(form.get("type") or "")
    rule: dict[str, Any] = {"name": (form.get("name") or "").strip(), "type": form.get("type") or "",
                            "start": form.get("start") or "on_entry"}
    delay = {key: (form.get(f"delay_{key}") or "").strip() for key in ("after", "field", "offset", "at")}
    delay = {key: value for key, value in delay.items() if value}
    if form.get("delay_business_hours") == "on":
        delay["business_hours"] = True
    rule["delay"] = (delay["after"] if list(delay) == ["after"] else delay) if delay else None
    rule["condition"] = _json_field(form, "condition")
    rule["settings"] = forms.read_schema_fields(kind["settings_schema"], "settings", form) if kind else {}
    return rule


def _read_trigger(form: Any) -> dict[str, Any]:
    kind = _trigger_types().get(form.get("type") or "")
    trigger: dict[str, Any] = {"name": (form.get("name") or "").strip(), "type": form.get("type") or "",
                               "allow_backwards": form.get("allow_backwards") == "on"}
    values = forms.read_schema_fields(kind["filter_schema"], "filter", form) if kind else {}
    trigger["filter"] = {key: value for key, value in values.items() if value not in (False, [], None)} or None
    trigger["condition"] = _json_field(form, "condition")
    return trigger


@router.post("/pipelines/{pipeline_id}/automation/{part}", response_class=HTMLResponse)
async def save_piece(request: Request, pipeline_id: Id, part: Part, user: ChangeDep, session: SessionDep,
                     settings: SettingsDep):
    """A rule or trigger added or changed: the whole automation is checked and saved, or nothing is."""
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    form = await request.form()
    stage = _stage_or_404(session, pipeline_id, str(form.get("stage") or ""))
    raw_index = str(form.get("index") or "")
    config = current_automation(session, pipeline_id)
    pieces = _pieces(config, stage, part)
    index = int(raw_index) if raw_index.isdigit() and int(raw_index) < len(pieces) else None
    try:
        piece = _read_rule(session, form) if part == "rules" else _read_trigger(form)
    except forms.FormProblem as problem:
        piece = {"name": form.get("name"), "type": form.get("type")}
        errors = {problem.field_name: str(problem)}
        return _form_again(request, user, session, pipeline, stage, index, part, piece, errors)
    position = index if index is not None else len(pieces)
    if index is None:
        pieces.append(piece)
    else:
        pieces[index] = piece
    try:
        change_automation(session, settings, pipeline, config)
    except HTTPException as refused:
        if refused.status_code != status.HTTP_422_UNPROCESSABLE_CONTENT:
            raise
        errors = forms.place_problems(refused.detail, ["body", "stages", stage, part, position])
        return _form_again(request, user, session, pipeline, stage, index, part, piece, errors)
    return back(f"/ui/pipelines/{pipeline_id}?saved={part[:-1]}+{piece['name']}")


def _form_again(request: Request, user: ConsoleUser, session: Session, pipeline: Pipeline, stage: str,
                index: int | None, part: str, piece: dict[str, Any], errors: dict[str, str]) -> HTMLResponse:
    context = (_rule_form(session, pipeline, stage, index, piece, errors) if part == "rules"
               else _trigger_form(pipeline, stage, index, piece, errors))
    return page(request, "piece_form.html", user, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, **context)


@router.post("/pipelines/{pipeline_id}/automation/{part}/{stage}/{index}/delete")
async def delete_piece(request: Request, pipeline_id: Id, part: Part, stage: StageCode, index: Index,
                       user: ChangeDep, session: SessionDep, settings: SettingsDep):
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    config = current_automation(session, pipeline_id)
    pieces = _pieces(config, _stage_or_404(session, pipeline_id, stage), part)
    if index >= len(pieces):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"Stage {stage} has no {part[:-1]} {index}")
    removed = pieces.pop(index)
    try:
        change_automation(session, settings, pipeline, config)
    except HTTPException as refused:
        return _refusal(request, user, pipeline_id, refused)
    return back(f"/ui/pipelines/{pipeline_id}?saved=deleted+{removed['name']}")


@router.post("/pipelines/{pipeline_id}/automation/{part}/{stage}/order")
async def reorder(request: Request, pipeline_id: Id, part: Part, stage: StageCode, user: ChangeDep,
                  session: SessionDep, settings: SettingsDep, order: Annotated[str, Form(max_length=4000)] = ""):
    """The stage's rules (or triggers) in a new order: `order` lists their current positions, comma-separated."""
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    config = current_automation(session, pipeline_id)
    pieces = _pieces(config, _stage_or_404(session, pipeline_id, stage), part)
    try:
        positions = [int(part_) for part_ in order.split(",") if part_.strip()]
    except ValueError:
        positions = []
    if sorted(positions) != list(range(len(pieces))):
        return JSONResponse({"detail": f"order must list the positions 0 to {len(pieces) - 1} once each"},
                            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    pieces[:] = [pieces[position] for position in positions]
    try:
        change_automation(session, settings, pipeline, config)
    except HTTPException as refused:
        return JSONResponse({"detail": refused.detail}, status_code=refused.status_code)
    return JSONResponse({"order": [piece["name"] for piece in pieces]})


def _refusal(request: Request, user: ConsoleUser, pipeline_id: int, refused: HTTPException) -> HTMLResponse:
    problems = refused.detail if isinstance(refused.detail, list) else [{"loc": [], "msg": str(refused.detail)}]
    return page(request, "refused.html", user, status_code=refused.status_code, pipeline_id=pipeline_id,
                problems=problems)


# -- deals and leads ------------------------------------------------------------------------------------------


@router.get("/pipelines/{pipeline_id}/items", response_class=HTMLResponse)
def items_board(request: Request, pipeline_id: Id, user: UserDep, session: SessionDep, error: str = ""):
    pipeline = get_pipeline(session, pipeline_id)
    cards = session.exec(select(Item).where(Item.pipeline_id == pipeline_id).order_by(col(Item.id).desc())
                         .limit(500)).all()
    columns = [{"stage": stage, "cards": [item for item in cards if item.stage == stage.code]}
               for stage in stages_of(session, pipeline_id)]
    users = session.exec(select(User).order_by(User.name)).all()
    contacts = session.exec(select(Contact).order_by(Contact.name).limit(500)).all()
    return page(request, "items.html", user, pipeline=pipeline, columns=columns, users=users, contacts=contacts,
                error=error[:300], form_key=secrets.token_urlsafe(18))


def _refusal_text(refused: HTTPException) -> str:
    """A refusal's `detail` as one line for a page: each problem's message, with its field."""
    if not isinstance(refused.detail, list):
        return str(refused.detail)
    return "; ".join(f"{'.'.join(str(part) for part in problem.get('loc', [])[1:])}: {problem.get('msg', '')}"
                     .lstrip(": ") for problem in refused.detail)


@router.post("/pipelines/{pipeline_id}/items")
async def create_item(
    request: Request, pipeline_id: Id, user: ChangeDep, session: SessionDep, client: ClientDep, settings: SettingsDep,
    title: Annotated[str, Form(max_length=200)] = "", responsible_id: Annotated[str, Form(max_length=20)] = "",
    contact_id: Annotated[str, Form(max_length=20)] = "", amount: Annotated[str, Form(max_length=30)] = "",
    currency: Annotated[str, Form(max_length=3)] = "",
    idempotency_key: Annotated[str, Form(max_length=200, pattern=r"^[\x21-\x7e]*$")] = "",
):
    """A new item from the board's form: created by the same use case as `POST /deals`, with the same checks and the
    form's own `Idempotency-Key` (a form sent twice makes one item)."""
    pipeline = get_pipeline(session, pipeline_id)
    values = {"title": title, "pipeline_id": pipeline_id, "responsible_id": responsible_id or None,
              "contact_id": contact_id or None, "amount": amount or None, "currency": currency.upper() or None}
    try:
        body = ItemCreate.model_validate({key: value for key, value in values.items() if value is not None})
    except ValidationError as error:
        shown = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        return back(f"/ui/pipelines/{pipeline_id}/items?error={quote(shown[:250])}")
    try:
        item = await items.create_item(session, client, settings, pipeline.entity_type, body,
                                       idempotency_key=idempotency_key or None)
    except HTTPException as refused:
        if refused.status_code >= 500:
            raise
        return back(f"/ui/pipelines/{pipeline_id}/items?error={quote(_refusal_text(refused)[:250])}")
    return back(f"/ui/items/{item.entity_type}/{item.id}")


@router.post("/items/{entity}/{item_id}/move")
async def move(entity: Entity, item_id: Id, user: ChangeDep, session: SessionDep, client: ClientDep,
               settings: SettingsDep, stage: Annotated[str, Form(pattern=r"^[A-Z0-9_]{1,50}$")]):
    """A drag on the board: the item's move through its workflow; a refusal comes back with its reason."""
    item = items.get_item(session, entity, item_id)
    try:
        moved = await items.move_item(session, client, settings, item, stage)
    except HTTPException as refused:
        return JSONResponse({"moved": False, "detail": _refusal_text(refused)}, status_code=refused.status_code)
    return JSONResponse({"moved": True, "stage": moved["stage"]})


@router.get("/items/{entity}/{item_id}", response_class=HTMLResponse)
def item_page(request: Request, entity: Entity, item_id: Id, user: UserDep, session: SessionDep, settings: SettingsDep,
              kind: Annotated[str, Query(max_length=100)] = ""):
    item = items.get_item(session, entity, item_id)
    kinds = sorted(set(session.exec(select(TimelineEntry.kind).where(TimelineEntry.item_id == item.id)).all()))
    timeline = _timeline(session, item, kind)
    entries = [{"no": no, "stage": entry.data.get("to"), "at": entry.at,
                "link": settings.workflow_ui_link(entry_workflow_id(item.entity_type, item.id, no))}
               for no, entry in sorted(
                   {e.entry_no: e for e in session.exec(select(TimelineEntry).where(
                       TimelineEntry.item_id == item.id, TimelineEntry.kind == "stage_changed")).all()
                    if e.entry_no}.items())]
    by_item = {"item_id": item.id}
    return page(
        request, "item.html", user, item=item, timeline=timeline, kinds=kinds, kind=kind, entries=entries,
        pipeline=session.get(Pipeline, item.pipeline_id),
        responsible=session.get(User, item.responsible_id),
        contact=session.get(Contact, item.contact_id) if item.contact_id else None,
        tasks=session.exec(select(Task).filter_by(**by_item).order_by(Task.id)).all(),
        activities=session.exec(select(CrmActivity).filter_by(**by_item).order_by(CrmActivity.id)).all(),
        messages=session.exec(select(Message).filter_by(**by_item).order_by(Message.id)).all(),
        documents=session.exec(select(Document.id, Document.number, Document.title, Document.template,
                                      Document.status).where(Document.item_id == item.id)).all(),
        item_link=settings.workflow_ui_link(f"{item.entity_type}-{item.id}"),
    )


@router.get("/items/{entity}/{item_id}/timeline", response_class=HTMLResponse)
def item_timeline(request: Request, entity: Entity, item_id: Id, user: UserDep, session: SessionDep,
                  kind: Annotated[str, Query(max_length=100)] = ""):
    """The item's timeline, newest first (the page refreshes it)."""
    item = items.get_item(session, entity, item_id)
    return page(request, "timeline.html", user, timeline=_timeline(session, item, kind))


def _timeline(session: Session, item: Item, kind: str) -> list[TimelineEntry]:
    statement = select(TimelineEntry).where(TimelineEntry.item_id == item.id)
    if kind:
        statement = statement.where(TimelineEntry.kind == kind)
    return list(session.exec(statement.order_by(col(TimelineEntry.at).desc(), col(TimelineEntry.id).desc())
                             .limit(500)).all())


@router.get("/items/{entity}/{item_id}/pending", response_class=HTMLResponse)
async def pending(request: Request, entity: Entity, item_id: Id, user: UserDep, session: SessionDep,
                  client: ClientDep, settings: SettingsDep):
    """What the item's stage entry is waiting for, asked of the workflow now (the page polls this)."""
    item = items.get_item(session, entity, item_id)
    try:
        rules = await items.pending_rules(client, settings, item)
        problem = ""
    except Exception as error:  # the workflow service is away: the page says so and asks again later
        rules, problem = [], f"the workflow service did not answer: {type(error).__name__}"
    return page(request, "pending.html", user, rules=rules, problem=problem,
                now=datetime.now(timezone.utc).strftime("%H:%M:%S"))


@router.get("/documents/{document_id}/{kind}")
def download_document(document_id: Id, kind: Literal["pdf", "docx"], user: UserDep, session: SessionDep):
    return document_file(get_document(session, document_id), kind, inline=True)


# -- simulation -----------------------------------------------------------------------------------------------

ACTIONS = {"move", "payment", "event"}


def _script(text: str) -> list[dict[str, Any]]:
    """`+2d move PREPARE_DOCUMENTS`, `+4d payment 1200`, `+5d event document_opened`: one step per line."""
    steps = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if len(words) != 3 or words[1] not in ACTIONS:
            raise forms.FormProblem("script", f"line {number}: write +<time> move <STAGE>, +<time> payment "
                                              f"<amount> or +<time> event <type>")
        at, action, value = words
        if action == "payment":
            try:
                steps.append({"at": at, "payment": {"amount": float(value)}})
            except ValueError:
                raise forms.FormProblem("script", f"line {number}: {value!r} is not an amount") from None
        elif action == "event":
            steps.append({"at": at, "event": {"type": value}})
        else:
            steps.append({"at": at, "move": value})
    return steps


@router.get("/pipelines/{pipeline_id}/simulate", response_class=HTMLResponse)
def simulate_form(request: Request, pipeline_id: Id, user: UserDep, session: SessionDep):
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    return page(request, "simulate.html", user, pipeline=pipeline, stages=stages_of(session, pipeline_id),
                users=session.exec(select(User).order_by(User.name)).all(),
                contacts=session.exec(select(Contact).order_by(Contact.name).limit(500)).all(),
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
    context = {"pipeline": pipeline, "stages": stages_of(session, pipeline_id), "values": values, "answer": None,
               "users": session.exec(select(User).order_by(User.name)).all(),
               "contacts": session.exec(select(Contact).order_by(Contact.name).limit(500)).all()}
    errors: dict[str, str] = {}
    try:
        script = _script(values["script"])
        sample = SampleItem.model_validate({
            key: value for key, value in {
                "title": values["title"], "amount": values["amount"] or None, "currency": values["currency"] or None,
                "responsible_id": values["responsible_id"] or None, "contact_id": values["contact_id"] or None,
            }.items() if value is not None
        })
        part = ScriptPart.model_validate({"script": script, "horizon": values["horizon"] or "30d"})
    except forms.FormProblem as problem:
        errors[problem.field_name] = str(problem)
    except ValidationError as error:
        for problem in error.errors():
            loc = [str(p) for p in problem["loc"]]
            errors["script" if loc[0] == "script" else loc[0]] = f"{'.'.join(loc)}: {problem['msg']}"
    if errors:
        return page(request, "simulate.html", user, status_code=422, errors=errors, **context)
    try:
        plan = sample_plan(session, pipeline, sample, part, current_automation(session, pipeline_id), draft=False)
    except HTTPException as refused:
        for problem in refused.detail:
            loc = [str(p) for p in problem["loc"]]
            errors["script" if "script" in loc else loc[-1]] = f"{'.'.join(loc[1:])}: {problem['msg']}"
        return page(request, "simulate.html", user, status_code=422, errors=errors, **context)
    try:
        answer = await simulator(request).run(plan)
    except SimulationsBusy as busy:
        return page(request, "simulate.html", user, status_code=429, errors={"form": str(busy)}, **context)
    start = datetime.fromisoformat(answer["started_at"])
    for entry in answer["timeline"]:
        entry["after"] = time_after(start, datetime.fromisoformat(entry["at"]))
    return page(request, "simulate.html", user, errors={}, **{**context, "answer": answer})


@router.get("/simulations/{simulation_id}/documents/{document_id}/{kind}")
def simulated_document(request: Request, simulation_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{16}$")],
                       document_id: Id, kind: Literal["pdf", "docx"], user: UserDep):
    """A document a simulation rendered, for the signed-in admin."""
    require_admin(user)
    return read_simulated_document(simulator(request), simulation_id, kind, document_id=document_id)
