"""A pipeline's automation in the console: the board of its stages with their rules and triggers, each edited through
a form made from the catalogue's schemas and saved through the same checks as `PUT /pipelines/{id}/automation`."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError
from sqlmodel import Session

from api.console import forms
from api.console.pages import ChangeDep, Id, Part, PieceName, StageCode, UserDep, back, page, refusal, shown
from api.console.session import CSRF_FIELD, ConsoleUser, require_admin
from api.console.words import simulation_in_words
from api.deps import ClientDep, SessionDep, SettingsDep
from api.lookups import get_pipeline, stage_names, stages_of
from api.simulation.plan import sample_plan, simulator
from api.simulation.runner import SimulationsBusy
from api.simulation.schemas import SampleItem, ScriptPart
from api.usecases import versions
from api.usecases.automation import Saved, checked_automation, current_automation, publish
from api.usecases.rule_types import rule_catalogue, trigger_catalogue
from api.usecases.users import users_by_name
from models.domain.conditions import CONDITION_OPS
from models.domain.fields import field_title
from models.domain.rule_types import GROUPS
from models.domain.versions import automation_changes, merge_piece, piece_of, renamed_piece
from models.domain.wording import OP_WORDS, condition_words, delay_words, time_after
from models.tables import AutomationVersion, Pipeline

router = APIRouter()
SAMPLE_INPUTS = ("responsible_id", "amount", "currency", "horizon", "script")
"""The draft simulation's sample item, as the rule form names its inputs (`sample_amount`)."""

def _rule_types(session: Session) -> dict[str, dict[str, Any]]:
    return {kind["name"]: kind for kind in rule_catalogue(session)}


def _trigger_types() -> dict[str, dict[str, Any]]:
    return {kind["name"]: kind for kind in trigger_catalogue()}


@router.get("/pipelines/{pipeline_id}", response_class=HTMLResponse)
def board(request: Request, pipeline_id: Id, user: UserDep, session: SessionDep, saved: str = ""):
    pipeline = get_pipeline(session, pipeline_id)
    config = current_automation(session, pipeline_id)
    version, record = versions.current_version(session, pipeline_id)
    types = _rule_types(session)
    columns = []
    for stage in stages_of(session, pipeline_id):
        automation = config["stages"].get(stage.code) or {"rules": [], "triggers": []}
        rules = [{
            **rule, "delay_words": delay_words(rule.get("delay"), rule.get("start", "on_entry")),
            "condition_words": condition_words(rule.get("condition")),
            "group": (types.get(rule["type"]) or {}).get("group_title", "unknown type"),
        } for rule in automation.get("rules") or []]
        triggers = [{**trigger, "condition_words": condition_words(trigger.get("condition")),
                     "filter_words": _filter_words(trigger.get("filter"))}
                    for trigger in automation.get("triggers") or []]
        columns.append({"stage": stage, "rules": rules, "triggers": triggers})
    return page(request, "board.html", user, pipeline=pipeline, columns=columns, saved=saved[:100],
                rule_types=types, trigger_types=_trigger_types(), version=version, record=record)


def _filter_words(filter_: dict[str, Any] | None) -> str:
    """A trigger's filter as `currency EUR, min_amount 100`: what it asks of an event (empty: any event)."""
    shown = []
    for name, value in (filter_ or {}).items():
        if value in (None, [], "", False):
            continue
        text = ", ".join(str(part) for part in value) if isinstance(value, list) else str(value)
        shown.append(f"{name.replace('_', ' ')} {text}")
    return "; ".join(shown)


RULE_LABELS = {"name": "Name", "type": "Type", "start": "Starts", "delay": "Delay", "condition": "Condition"}
TRIGGER_LABELS = {"name": "Name", "type": "Type", "filter": "Filter", "allow_backwards": "May move back",
                  "condition": "Condition"}


CHANGE_LABELS = {**RULE_LABELS, **TRIGGER_LABELS, "position": "Place", "as_user_id": "Moves as"}


def change_label(field: str) -> str:
    """A changed field of a rule or trigger as the comparison names it: `settings.author_id` → `Author`."""
    part, _, key = field.partition(".")
    if key and part in ("settings", "filter"):
        return field_title(key)
    return CHANGE_LABELS.get(field, field_title(field))


def _condition_text(piece: dict[str, Any], typed: Any) -> str:
    if typed is not None:
        return str(typed.get("condition") or "")
    return json.dumps(piece["condition"], ensure_ascii=False) if piece.get("condition") else ""


def _builder(pipeline: Pipeline, constants: dict[str, Any]) -> dict[str, Any]:
    """What the condition builder offers: the item's fields, its people and the constants; the operators in words."""
    return {"condition_fields": forms.placeholder_paths(pipeline.entity_type, constants),
            "condition_ops": [[op, OP_WORDS[op]] for op in CONDITION_OPS]}


def _rule_form(session: Session, pipeline: Pipeline, stage: str, original: str | None, rule: dict[str, Any],
               errors: dict[str, str], typed: Any) -> dict[str, Any]:
    types = _rule_types(session)
    kind = types.get(rule.get("type") or "")
    users = users_by_name(session)
    fields = (forms.schema_fields(kind["settings_schema"], "settings", rule.get("settings"), typed,
                                  forms.named_people(users)) if kind else [])
    for field in fields:
        field.error = errors.get(field.name, "")
    constants = current_automation(session, pipeline.id).get("constants") or {}
    return {
        "part": "rules", "pipeline": pipeline, "stage": stage, "original": original, "piece": rule, "kind": kind,
        "types": types, "groups": GROUPS, "fields": fields, "errors": errors,
        "delay": forms.typed_delay_inputs(typed) if typed is not None else forms.delay_inputs(rule.get("delay")),
        "delay_kinds": forms.DELAY_KINDS, "date_fields": forms.DATE_FIELDS,
        "condition": _condition_text(rule, typed), **_builder(pipeline, constants),
        "placeholders": forms.placeholder_paths(pipeline.entity_type, constants),
        "users": users,
    }


def _trigger_form(session: Session, pipeline: Pipeline, stage: str, original: str | None, trigger: dict[str, Any],
                  errors: dict[str, str], typed: Any) -> dict[str, Any]:
    types = _trigger_types()
    kind = types.get(trigger.get("type") or "")
    fields = (forms.schema_fields(kind["filter_schema"], "filter", trigger.get("filter"), typed,
                                  forms.named_people(users_by_name(session))) if kind else [])
    for field in fields:
        field.error = errors.get(field.name, "")
    constants = current_automation(session, pipeline.id).get("constants") or {}
    return {
        "part": "triggers", "pipeline": pipeline, "stage": stage, "original": original, "piece": trigger, "kind": kind,
        "types": types, "fields": fields, "errors": errors, "condition": _condition_text(trigger, typed),
        **_builder(pipeline, constants), "users": users_by_name(session),
    }


def _pieces(config: dict[str, Any], stage: str, part: str) -> list[dict[str, Any]]:
    stages = config.setdefault("stages", {})
    automation = stages.setdefault(stage, {"rules": [], "triggers": []})
    return automation.setdefault(part, [])


def _stage_or_404(session: Session, pipeline_id: int, stage: str) -> str:
    if stage not in [row.code for row in stages_of(session, pipeline_id)]:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"Pipeline {pipeline_id} has no stage {stage}")
    return stage


def _form(session: Session, pipeline: Pipeline, part: str, stage: str, original: str | None, piece: dict[str, Any],
          errors: dict[str, str], base_version: int, note: str = "", typed: Any = None) -> dict[str, Any]:
    """The rule or trigger form: filled from `piece`, or, when a posted form comes back, with what was `typed`."""
    context = (_rule_form(session, pipeline, stage, original, piece, errors, typed) if part == "rules"
               else _trigger_form(session, pipeline, stage, original, piece, errors, typed))
    shown = {"name", "start", "delay", "condition", "sample", *(field.name for field in context["fields"])}
    elsewhere = [text for key, text in errors.items() if key not in shown and key != "form"]
    if elsewhere:
        context["errors"] = {**errors, "form": "; ".join([*filter(None, [errors.get("form")]), *elsewhere])}
    sample = {"horizon": forms.DRAFT_HORIZON}
    if typed is not None:
        sample |= {name: str(typed.get(f"sample_{name}") or "")[:5000] for name in SAMPLE_INPUTS
                   if typed.get(f"sample_{name}")}
    stage_name = next((row.name for row in stages_of(session, pipeline.id) if row.code == stage), stage)
    return {**context, "base_version": base_version, "note": note, "sample": sample, "stage_name": stage_name}


def _named(pieces: list[dict[str, Any]], name: str) -> int | None:
    return next((position for position, piece in enumerate(pieces) if piece.get("name") == name), None)


@router.get("/pipelines/{pipeline_id}/automation/{part}/new", response_class=HTMLResponse)
def new_piece(
    request: Request, pipeline_id: Id, part: Part, user: UserDep, session: SessionDep,
    stage: Annotated[str, Query(pattern=r"^[A-Z0-9_]{1,50}$")], type: Annotated[str, Query(max_length=100)] = "",
):
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    _stage_or_404(session, pipeline_id, stage)
    version, _ = versions.current_version(session, pipeline_id)
    piece = {"type": type} if type else {}
    return page(request, "piece_form.html", user, **_form(session, pipeline, part, stage, None, piece, {}, version))


@router.get("/pipelines/{pipeline_id}/automation/{part}/{stage}/{name}", response_class=HTMLResponse)
def edit_piece(request: Request, pipeline_id: Id, part: Part, stage: StageCode, name: PieceName, user: UserDep,
               session: SessionDep):
    """A rule or trigger, by its stage and its name (not its place, which a colleague's change may move); a member
    sees it as saved, read-only."""
    pipeline = get_pipeline(session, pipeline_id)
    version, _ = versions.current_version(session, pipeline_id)
    pieces = _pieces(current_automation(session, pipeline_id), _stage_or_404(session, pipeline_id, stage), part)
    position = _named(pieces, name)
    if position is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"Stage {stage} has no {part[:-1]} {name}")
    return page(request, "piece_form.html", user,
                **_form(session, pipeline, part, stage, name, pieces[position], {}, version))


def _condition(form: Any, problems: dict[str, str]) -> Any:
    text = (form.get("condition") or "").strip()
    if not text:
        return None
    try:
        return forms.read_json(text)
    except ValueError as error:
        problems["condition"] = f"Condition: cannot be read ({error}); correct the JSON or build it again with the rows"
        return None


def _read_rule(session: Session, form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The rule a posted form describes, and what cannot even be read in it (by form field)."""
    problems: dict[str, str] = {}
    kind = _rule_types(session).get(form.get("type") or "")
    rule: dict[str, Any] = {"name": (form.get("name") or "").strip(), "type": form.get("type") or "",
                            "start": form.get("start") or "on_entry"}
    rule["delay"] = forms.read_delay(forms.typed_delay_inputs(form), problems)
    rule["condition"] = _condition(form, problems)
    people = forms.people_by_name(users_by_name(session))
    rule["settings"] = (forms.read_schema_fields(kind["settings_schema"], "settings", form, problems, people)
                        if kind else {})
    return rule, problems


def _read_trigger(session: Session, form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    problems: dict[str, str] = {}
    kind = _trigger_types().get(form.get("type") or "")
    trigger: dict[str, Any] = {"name": (form.get("name") or "").strip(), "type": form.get("type") or "",
                               "allow_backwards": form.get("allow_backwards") == "on"}
    people = forms.people_by_name(users_by_name(session))
    values = forms.read_schema_fields(kind["filter_schema"], "filter", form, problems, people) if kind else {}
    trigger["filter"] = {key: value for key, value in values.items() if value not in (False, [], None)} or None
    trigger["condition"] = _condition(form, problems)
    return trigger, problems


def _labels(session: Session, part: str, piece: dict[str, Any]) -> dict[str, str]:
    """Each form field's label, by the name the API's problems locate it with."""
    if part == "rules":
        kind = _rule_types(session).get(piece.get("type") or "")
        return {**RULE_LABELS, **(forms.schema_labels(kind["settings_schema"], "settings") if kind else {})}
    kind = _trigger_types().get(piece.get("type") or "")
    return {**TRIGGER_LABELS, **(forms.schema_labels(kind["filter_schema"], "filter") if kind else {})}


def _base_version(form: Any) -> int | None:
    """The version the form was made from; a save based on an older one is refused, nothing lost."""
    return forms.form_id(str(form.get("base_version") or ""))


def _in_flight(form: Any) -> str | None:
    chosen = form.get("in_flight")
    return chosen if chosen in ("keep", "apply") else None


async def _publish(
    request: Request, user: ConsoleUser, session: Session, client: Any, settings: Any, pipeline: Pipeline,
    config: dict[str, Any], form: Any, action: str,
) -> Saved | HTMLResponse:
    """Saves `config` as the next version on the version the form was made from. When the change touches items
    waiting now and the admin has not chosen yet, the answer is the page that shows them and asks: keep them on
    their version, or apply this one. Refusals (422, 409) are raised for the caller to show."""
    in_flight = _in_flight(form)
    expected = _base_version(form)
    if in_flight is None:
        draft = checked_automation(session, pipeline, settings, config)
        preview = versions.preview(session, pipeline.id, draft)
        # A form made from an older version is refused by the save below (409, with what the other save changed)
        # before anyone is asked about the items waiting on it.
        if preview["waiting"] and expected in (None, preview["base_version"]):
            fields = [(name, value) for name, value in form.multi_items()
                      if isinstance(value, str) and name not in (CSRF_FIELD, "in_flight")]
            return page(request, "confirm_publish.html", user, pipeline=pipeline, preview=preview, fields=fields,
                        action=action, next_version=preview["base_version"] + 1,
                        stage_names=stage_names(session, pipeline.id))
        in_flight = "keep"
    return await publish(session, client, settings, pipeline, config, saved_by=user.name,
                         note=str(form.get("note") or "")[:500].strip(), expected=expected,
                         in_flight=in_flight)


def _put(config: dict[str, Any], stage: str, part: str, original: str | None, piece: dict[str, Any]) -> int:
    """`piece` in the automation in the place of the one named `original` (else at the end of its stage); its place."""
    pieces = _pieces(config, stage, part)
    position = _named(pieces, original) if original else None
    if position is None:
        pieces.append(piece)
        return len(pieces) - 1
    pieces[position] = piece
    return position


@dataclass
class PostedPiece:
    """A rule or trigger form as posted, read: the piece it describes, in the automation saved now."""

    pipeline: Pipeline
    stage: str
    original: str | None
    base: int
    note: str
    saved: dict[str, Any]
    """The automation as saved when the form was posted."""
    config: dict[str, Any]
    """`saved` with the piece put in its place."""
    piece: dict[str, Any]
    position: int
    problems: dict[str, str]
    form: Any


async def _posted(request: Request, session: Session, pipeline_id: int, part: str) -> PostedPiece:
    pipeline = get_pipeline(session, pipeline_id)
    form = await request.form()
    stage = _stage_or_404(session, pipeline_id, str(form.get("stage") or ""))
    original = str(form.get("original") or "") or None
    saved = current_automation(session, pipeline_id)
    config = copy.deepcopy(saved)
    piece, problems = _read_rule(session, form) if part == "rules" else _read_trigger(session, form)
    return PostedPiece(pipeline=pipeline, stage=stage, original=original, base=_base_version(form) or 0,
                       note=str(form.get("note") or "")[:500], saved=saved, config=config, piece=piece,
                       position=_put(config, stage, part, original, piece), problems=problems, form=form)


def _form_again(request: Request, user: ConsoleUser, session: Session, posted: PostedPiece, part: str,
                errors: dict[str, str], *, base_version: int | None = None,
                status_code: int = status.HTTP_422_UNPROCESSABLE_CONTENT, **extra: Any) -> HTMLResponse:
    """The form again with all that was typed into it, the problems next to their fields."""
    base = posted.base if base_version is None else base_version
    context = _form(session, posted.pipeline, part, posted.stage, posted.original, posted.piece, errors, base,
                    posted.note, typed=posted.form)
    return page(request, "piece_form.html", user, status_code=status_code, **{**context, **extra})


def _refused_here(session: Session, posted: PostedPiece, part: str, refused: HTTPException) -> dict[str, str]:
    """A 422 of the automation's checks as the form's problems, by field."""
    if not isinstance(refused.detail, list):
        return {"form": str(refused.detail)}
    return forms.place_problems(refused.detail, ["body", "stages", posted.stage, part, posted.position],
                                _labels(session, part, posted.piece))


@router.post("/pipelines/{pipeline_id}/automation/{part}", response_class=HTMLResponse)
async def save_piece(request: Request, pipeline_id: Id, part: Part, user: ChangeDep, session: SessionDep,
                     client: ClientDep, settings: SettingsDep):
    """A rule or trigger added or changed (the form names the one it changes by its name): the whole automation is
    checked and saved as the next version, or nothing is. A form made from a version someone else has replaced
    since comes back with what was typed and the news of that save, ready to be saved on the new version."""
    require_admin(user)
    posted = await _posted(request, session, pipeline_id, part)
    if posted.problems:
        return _form_again(request, user, session, posted, part, _all_problems(session, settings, posted, part))
    saved_what = f"{part[:-1]} {posted.piece['name']}"
    try:
        # Compared as it would be stored: a setting left at its default is no change.
        draft = checked_automation(session, posted.pipeline, settings, posted.config)
    except HTTPException as refused:
        if refused.status_code != status.HTTP_422_UNPROCESSABLE_CONTENT:
            raise
        return _form_again(request, user, session, posted, part, _refused_here(session, posted, part, refused))
    if not automation_changes(posted.saved, draft):
        return back(f"/ui/pipelines/{pipeline_id}?saved={quote(f'{saved_what} unchanged, no new version')}")
    try:
        saved = await _publish(request, user, session, client, settings, posted.pipeline, posted.config, posted.form,
                               f"/ui/pipelines/{pipeline_id}/automation/{part}")
    except HTTPException as refused:
        if refused.status_code == status.HTTP_409_CONFLICT:
            return _saved_meanwhile(request, user, session, posted, part, str(refused.detail))
        if refused.status_code != status.HTTP_422_UNPROCESSABLE_CONTENT:
            raise
        return _form_again(request, user, session, posted, part, _refused_here(session, posted, part, refused))
    if isinstance(saved, HTMLResponse):
        return saved
    return back(f"/ui/pipelines/{pipeline_id}?saved={quote(saved_what)}")


def _all_problems(session: Session, settings: Any, posted: PostedPiece, part: str) -> dict[str, str]:
    """What could not be read in the form, with what the automation's checks find in the rest of it: every problem
    at once (a field that could not be read keeps its own problem)."""
    errors = dict(posted.problems)
    try:
        checked_automation(session, posted.pipeline, settings, posted.config)
    except HTTPException as refused:
        if refused.status_code == status.HTTP_422_UNPROCESSABLE_CONTENT:
            for key, said in _refused_here(session, posted, part, refused).items():
                errors.setdefault(key, said)
    return errors


def _saved_meanwhile(request: Request, user: ConsoleUser, session: Session, posted: PostedPiece, part: str,
                     detail: str) -> HTMLResponse:
    """The form again after another admin saved a version since it was opened (409): on the version saved now,
    with what that save changed of this same rule or trigger taken into it where this edit left the field as it
    was, and each field both changed named, with the value the other save gave it (the form keeps what was typed)."""
    pipeline_id = posted.pipeline.id
    current, _ = versions.current_version(session, pipeline_id)
    kind = part[:-1]
    original = posted.original
    now = current_automation(session, pipeline_id)
    theirs = piece_of(now, posted.stage, part, original)
    news = [f"{detail} Nothing of yours is saved yet."]
    typed = posted.form
    base_row = session.get(AutomationVersion, (pipeline_id, posted.base)) if posted.base else None
    base = piece_of(base_row.config, posted.stage, part, original) if base_row is not None else None
    if base is not None and theirs is None:
        theirs = renamed_piece(base_row.config, now, posted.stage, part, base)
        if theirs is not None:
            original = theirs["name"]
    if original and theirs is None:
        news.append(f"Version {current} has no {kind} {original} in {posted.stage}: saving adds it again.")
    elif base is not None and theirs is not None:
        merged = merge_piece(base, theirs, posted.piece, kind)
        labels = _labels(session, part, posted.piece)
        if merged.taken:
            posted.piece, typed = merged.piece, None
            taken = ", ".join(labels.get(name, name) for name in merged.taken)
            news.append(f"Version {current} changed this {kind}'s {taken}: the form below has that change now.")
        if merged.clashes:
            news.append("You both changed " + "; ".join(
                f"{labels.get(name, name)} (version {current} has {shown(value)})"
                for name, value in merged.clashes.items()) + ": the form keeps what you typed.")
        if not merged.taken and not merged.clashes:
            news.append(f"Version {current} left this {kind} as you found it.")
    news.append("Check the form, then save again.")
    posted.original = original if theirs is not None else None
    context = _form(session, posted.pipeline, part, posted.stage, posted.original, posted.piece,
                    {"form": " ".join(news)}, current, posted.note, typed=typed)
    return page(request, "piece_form.html", user, status_code=status.HTTP_409_CONFLICT, **context)


@router.post("/pipelines/{pipeline_id}/automation/{part}/simulate", response_class=HTMLResponse)
async def simulate_draft(request: Request, pipeline_id: Id, part: Part, user: ChangeDep, session: SessionDep,
                         settings: SettingsDep):
    """The automation with this form's rule or trigger as typed, not saved, simulated for a sample item entering
    the form's stage: the form again, all that was typed kept, with the simulation's table under it."""
    require_admin(user)
    posted = await _posted(request, session, pipeline_id, part)
    if posted.problems:
        return _form_again(request, user, session, posted, part, _all_problems(session, settings, posted, part))
    try:
        draft = checked_automation(session, posted.pipeline, settings, posted.config)
    except HTTPException as refused:
        return _form_again(request, user, session, posted, part, _refused_here(session, posted, part, refused))
    form = posted.form
    entity = posted.pipeline.entity_type
    try:
        sample = SampleItem.model_validate({
            "title": f"Sample {entity}", "stage": posted.stage,
            "responsible_id": str(form.get("sample_responsible_id") or "") or None,
            "amount": str(form.get("sample_amount") or "").strip() or None,
            "currency": str(form.get("sample_currency") or "").strip().upper() or None,
        })
        script = ScriptPart.model_validate({
            "horizon": str(form.get("sample_horizon") or "").strip() or forms.DRAFT_HORIZON,
            "script": forms.read_script(str(form.get("sample_script") or "")),
        })
    except forms.FormProblem as problem:
        return _form_again(request, user, session, posted, part, {"sample": f"Script, {problem}"})
    except ValidationError as error:
        labels = {"responsible_id": "Sample responsible", "amount": "Sample amount", "currency": "Currency",
                  "horizon": "Simulate for",
                  "script": "Script"}
        return _form_again(request, user, session, posted, part, {"sample": "; ".join(
            f"{labels.get(str(problem['loc'][0]), problem['loc'][0])}: {forms.plain(problem['msg'])}"
            for problem in error.errors())})
    try:
        plan = sample_plan(session, posted.pipeline, sample, script, draft, draft=True)
        answer = await simulator(request).run(plan)
    except HTTPException as refused:
        return _form_again(request, user, session, posted, part, {"sample": "; ".join(
            forms.plain(str(problem.get("msg"))) for problem in refused.detail)
            if isinstance(refused.detail, list) else str(refused.detail)})
    except SimulationsBusy as busy:
        return _form_again(request, user, session, posted, part, {"sample": str(busy)},
                           status_code=status.HTTP_429_TOO_MANY_REQUESTS)
    start = datetime.fromisoformat(answer["started_at"])
    for entry in answer["timeline"]:
        entry["after"] = time_after(start, datetime.fromisoformat(entry["at"]))
    names = stage_names(session, pipeline_id)
    answer = simulation_in_words(session, answer, pipeline_id, request.state.zone)
    return _form_again(request, user, session, posted, part, {}, status_code=status.HTTP_200_OK, answer=answer,
                       stage_names=names)


@router.post("/pipelines/{pipeline_id}/automation/{part}/{stage}/{name}/delete")
async def delete_piece(request: Request, pipeline_id: Id, part: Part, stage: StageCode, name: PieceName,
                       user: ChangeDep, session: SessionDep, client: ClientDep, settings: SettingsDep):
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    form = await request.form()
    config = current_automation(session, pipeline_id)
    pieces = _pieces(config, _stage_or_404(session, pipeline_id, stage), part)
    position = _named(pieces, name)
    if position is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"Stage {stage} has no {part[:-1]} {name}")
    pieces.pop(position)
    try:
        saved = await _publish(request, user, session, client, settings, pipeline, config, form, str(request.url.path))
    except HTTPException as refused:
        return refusal(request, user, pipeline_id, refused)
    if isinstance(saved, HTMLResponse):
        return saved
    return back(f"/ui/pipelines/{pipeline_id}?saved={quote(f'deleted {name}')}")


@router.post("/pipelines/{pipeline_id}/automation/{part}/{stage}/order")
async def reorder(request: Request, pipeline_id: Id, part: Part, stage: StageCode, user: ChangeDep,
                  session: SessionDep, client: ClientDep, settings: SettingsDep,
                  order: Annotated[str, Form(max_length=20_000)] = "",
                  base_version: Annotated[str, Form(max_length=12)] = ""):
    """The stage's rules (or triggers) in a new order: `order` is the JSON list of their names. An order made from
    an older version than the current one is refused (409), nothing changed."""
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    config = current_automation(session, pipeline_id)
    pieces = _pieces(config, _stage_or_404(session, pipeline_id, stage), part)
    try:
        names = forms.read_json(order)
    except ValueError:
        names = None
    if not isinstance(names, list) or sorted(map(str, names)) != sorted(piece["name"] for piece in pieces):
        return JSONResponse({"detail": f"order must name each {part[:-1]} of {stage} once"},
                            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    by_name = {piece["name"]: piece for piece in pieces}
    pieces[:] = [by_name[name] for name in names]
    try:
        await publish(session, client, settings, pipeline, config, saved_by=user.name,
                      expected=forms.form_id(base_version))
    except HTTPException as refused:
        return JSONResponse({"detail": refused.detail}, status_code=refused.status_code)
    return JSONResponse({"order": [piece["name"] for piece in pieces]})


# -- the history of the automation -----------------------------------------------------------------------------


@router.get("/pipelines/{pipeline_id}/versions", response_class=HTMLResponse)
def history(request: Request, pipeline_id: Id, user: UserDep, session: SessionDep):
    """Every saved version: who saved it, when, why, what it did to the items waiting; each compared with the one
    before, and restorable."""
    pipeline = get_pipeline(session, pipeline_id)
    rows = versions.list_versions(session, pipeline_id)
    current, _ = versions.current_version(session, pipeline_id)
    return page(request, "versions.html", user, pipeline=pipeline, rows=rows, current=current)


@router.get("/pipelines/{pipeline_id}/versions/{version}", response_class=HTMLResponse)
def version_diff(request: Request, pipeline_id: Id, version: Id, user: UserDep, session: SessionDep,
                 against: Annotated[int | None, Query(ge=0, le=999_999_999)] = None):
    """What version `version` changed against another (by default the one before it)."""
    pipeline = get_pipeline(session, pipeline_id)
    diff = versions.diff(session, pipeline_id, version, against, by_setting=True)
    row = versions.get_version(session, pipeline_id, version)
    current, _ = versions.current_version(session, pipeline_id)
    names = stage_names(session, pipeline_id)
    kinds = {"rule": (_rule_types(session), "settings_schema", "settings"),
             "trigger": (_trigger_types(), "filter_schema", "filter")}
    for change in diff["changes"]:
        types, schema, prefix = kinds[change["kind"]]
        piece = piece_of(row.config, change["stage"], f"{change['kind']}s", change["name"]) or {}
        kind = types.get(piece.get("type") or "")
        labels = forms.schema_labels(kind[schema], prefix) if kind else {}
        change["labels"] = {field: labels.get(field) or change_label(field) for field in change["fields"]}
    return page(request, "version_diff.html", user, pipeline=pipeline, diff=diff, row=row, current=current,
                others=[other.version for other in versions.list_versions(session, pipeline_id)],
                stage_names=names)


@router.post("/pipelines/{pipeline_id}/versions/{version}/restore", response_class=HTMLResponse)
async def restore_version(request: Request, pipeline_id: Id, version: Id, user: ChangeDep, session: SessionDep,
                          client: ClientDep, settings: SettingsDep):
    """Version `version` saved again as the next version, on the version the page was made from; items waiting on
    what it changes are shown first, with the choice to keep or apply."""
    require_admin(user)
    pipeline = get_pipeline(session, pipeline_id)
    form = await request.form()
    old = versions.get_version(session, pipeline_id, version)
    named = {code for code, parts in ((old.config or {}).get("stages") or {}).items()
             if (parts or {}).get("rules") or (parts or {}).get("triggers")}
    gone = sorted(named - set(stage_names(session, pipeline_id)))
    if gone:
        return refusal(request, user, pipeline_id, HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=f"Version {version} has rules or triggers in stage{'s' if len(gone) > 1 else ''} "
                   f"{', '.join(gone)}, removed since. Add {'them' if len(gone) > 1 else 'it'} again on the Stages "
                   f"page with the same code, then restore version {version}."))
    # A removed stage's entry that holds nothing is left out of the restored version.
    current = set(stage_names(session, pipeline_id))
    config = {**old.config, "stages": {code: parts for code, parts in ((old.config or {}).get("stages") or {}).items()
                                       if code in current}}
    try:
        saved = await _publish(request, user, session, client, settings, pipeline, config, form,
                               str(request.url.path))
    except HTTPException as refused:
        return refusal(request, user, pipeline_id, refused)
    if isinstance(saved, HTMLResponse):
        return saved
    return back(f"/ui/pipelines/{pipeline_id}?saved={quote(f'version {version} restored as version {saved.version}')}")
