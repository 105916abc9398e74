"""A pipeline's automation: every stage's rules and triggers, validated as a whole and replaced at once; every save
kept as a version, guarded by `If-Match`, previewed against the items waiting, and applied to them or not."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Response

from api.deps import MAX_ID, AdminDep, ClientDep, SessionDep, SettingsDep, member_only
from api.lookups import get_pipeline
from api.usecases import automation, versions
from api.usecases.automation import InFlight, automation_public, checked_note, etag, expected_version

router = APIRouter(prefix="/pipelines", tags=["automation"], dependencies=member_only)
PipelineId = Annotated[int, Path(ge=1, le=MAX_ID)]
ANSWER_ONLY = ("version", "hooks", "in_flight", "apply_workflow_id")  # in answers; ignored when sent back
Version = Annotated[int, Path(ge=1, le=MAX_ID)]
IfMatch = Annotated[str | None, Header(
    alias="If-Match", max_length=100,
    description='The version the change is based on (the ETag of GET /pipelines/{id}/automation, e.g. "7"): when '
                "another save came in between, the change is a 409 and nothing changes",
)]
InFlightQuery = Annotated[InFlight, Query(
    description="The entries already waiting in the pipeline's stages: `keep` the version they entered with, or "
                "`apply` this one (removed rules are cancelled, changed ones take effect)",
)]

EXAMPLE = {
    "constants": {"Courier": 3},
    "stages": {
        "NEW": {
            "rules": [
                {
                    "name": "ack",
                    "type": "send_sms",
                    "delay": None,
                    "settings": {"text": "Hello {{Deal.Contact.Name}}, we will call within 30 minutes"},
                }
            ],
            "triggers": [],
        },
        "INVOICE": {"rules": [], "triggers": [{"name": "paid", "type": "payment_received"}]},
    },
}


def _answer(session, settings, pipeline_id: int, response: Response) -> dict[str, Any]:
    answer = automation_public(session, settings, pipeline_id)
    response.headers["ETag"] = etag(answer["version"])
    return answer


@router.put("/{pipeline_id}/automation", response_model=dict[str, Any])
async def put_automation(
    pipeline_id: PipelineId,
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    caller: AdminDep,
    response: Response,
    body: Annotated[dict[str, Any], Body(openapi_examples={"furniture shop": {"value": EXAMPLE}})],
    if_match: IfMatch = None,
    in_flight: InFlightQuery = "keep",
):
    """Replace the pipeline's whole automation, kept as its next version (`note` in the body says why). Any error
    anywhere is a 422 listing every problem, and nothing changes; with `If-Match`, a save based on an older version
    than the current one is a 409 naming the current version and who saved it. Webhook triggers get a secret URL,
    listed under `hooks` in the answer; `version` and `hooks` sent back from an earlier answer are ignored."""
    pipeline = get_pipeline(session, pipeline_id)
    expected = expected_version(if_match)
    note = checked_note(body.get("note"))
    raw = {key: value for key, value in body.items() if key not in (*ANSWER_ONLY, "note")}
    await automation.publish(session, client, settings, pipeline, raw, saved_by=caller.name, note=note,
                             expected=expected, in_flight=in_flight)
    return _answer(session, settings, pipeline_id, response)


@router.get("/{pipeline_id}/automation", response_model=dict[str, Any])
def get_automation(pipeline_id: PipelineId, session: SessionDep, settings: SettingsDep, response: Response):
    """The automation saved now, with its version (also the `ETag` header, for `If-Match`)."""
    get_pipeline(session, pipeline_id)
    return _answer(session, settings, pipeline_id, response)


@router.post("/{pipeline_id}/automation/preview", response_model=dict[str, Any])
def preview_automation(
    pipeline_id: PipelineId, session: SessionDep, settings: SettingsDep, caller: AdminDep,
    body: Annotated[dict[str, Any], Body(openapi_examples={"furniture shop": {"value": EXAMPLE}})],
):
    """What saving this draft would change (as the diff of versions shows it) and which items wait right now on each
    rule it removes or changes. A bad draft is a 422 as for PUT; nothing is saved."""
    pipeline = get_pipeline(session, pipeline_id)
    raw = {key: value for key, value in body.items() if key not in (*ANSWER_ONLY, "note")}
    return versions.preview(session, pipeline_id, automation.checked_automation(session, pipeline, settings, raw))


@router.get("/{pipeline_id}/automation/versions", response_model=list[dict[str, Any]])
def list_versions(pipeline_id: PipelineId, session: SessionDep):
    """Every saved version, newest first: who saved it, when, and the note."""
    get_pipeline(session, pipeline_id)
    return [versions.version_public(row) for row in versions.list_versions(session, pipeline_id)]


@router.get("/{pipeline_id}/automation/versions/{version}", response_model=dict[str, Any])
def read_version(pipeline_id: PipelineId, version: Version, session: SessionDep):
    """One saved version, with its automation as it was saved."""
    get_pipeline(session, pipeline_id)
    row = versions.get_version(session, pipeline_id, version)
    return {**versions.version_public(row), "automation": {**row.config, "version": row.version}}


@router.get("/{pipeline_id}/automation/versions/{version}/diff", response_model=dict[str, Any])
def diff_versions(
    pipeline_id: PipelineId, version: Version, session: SessionDep,
    against: Annotated[int | None, Query(ge=0, le=MAX_ID, description="The version to compare with (default: the one "
                                                                      "before; 0: the empty automation)")] = None,
):
    """What `version` adds, removes and changes against another version, rule by rule and trigger by trigger."""
    get_pipeline(session, pipeline_id)
    return versions.diff(session, pipeline_id, version, against)


@router.post("/{pipeline_id}/automation/versions/{version}/restore", response_model=dict[str, Any])
async def restore_version(
    pipeline_id: PipelineId, version: Version, session: SessionDep, client: ClientDep, settings: SettingsDep,
    caller: AdminDep, response: Response, if_match: IfMatch = None, in_flight: InFlightQuery = "keep",
    note: Annotated[str | None, Query(max_length=500, description="Why (default: restored version N)")] = None,
):
    """Save version `version`'s automation again as the next version, checked as any save (with the same `If-Match`
    and `in_flight`)."""
    pipeline = get_pipeline(session, pipeline_id)
    await automation.restore(session, client, settings, pipeline, version, saved_by=caller.name, note=note or "",
                             expected=expected_version(if_match), in_flight=in_flight)
    return _answer(session, settings, pipeline_id, response)
