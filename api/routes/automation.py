"""A pipeline's automation: every stage's rules and triggers, validated as a whole and replaced at once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path

from api.usecases.automation import automation_public, change_automation
from api.deps import MAX_ID, SessionDep, SettingsDep, admin_only, member_only
from api.lookups import get_pipeline

router = APIRouter(prefix="/pipelines", tags=["automation"], dependencies=member_only)
PipelineId = Annotated[int, Path(ge=1, le=MAX_ID)]
ANSWER_ONLY = ("version", "hooks")  # in the GET answer; ignored when a client sends it back

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


@router.put("/{pipeline_id}/automation", response_model=dict[str, Any], dependencies=admin_only)
def put_automation(
    pipeline_id: PipelineId,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[dict[str, Any], Body(openapi_examples={"furniture shop": {"value": EXAMPLE}})],
):
    """Replace the pipeline's whole automation. Any error anywhere is a 422 listing every problem, and nothing
    changes. Webhook triggers get a secret URL, listed under `hooks` in the answer; `version` and `hooks`
    sent back from an earlier answer are ignored."""
    pipeline = get_pipeline(session, pipeline_id)
    raw = {key: value for key, value in body.items() if key not in ANSWER_ONLY}
    change_automation(session, settings, pipeline, raw)
    return automation_public(session, settings, pipeline_id)


@router.get("/{pipeline_id}/automation", response_model=dict[str, Any])
def get_automation(pipeline_id: PipelineId, session: SessionDep, settings: SettingsDep):
    get_pipeline(session, pipeline_id)
    return automation_public(session, settings, pipeline_id)
