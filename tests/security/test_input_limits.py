"""Limits on what one request may ask for, through the HTTP API: rules and triggers per stage, text lengths,
constants, nested conditions and the larger bodies of the company settings. Over a limit is a 4xx naming the
field (413 for a body too large), and nothing changes; at the limit it is accepted.

The body size limit of every route is in tests/api/test_api_limits.py, template uploads in
tests/documents/test_templates.py, the validator's own limits in tests/unit/test_automation_config.py.
"""

from __future__ import annotations

from http import HTTPStatus

from api.routes.settings import COMPANY_MAX_BODY_BYTES
from models.domain.conditions import MAX_CONDITION_DEPTH
from models.domain.fields import MAX_TEXT_LENGTH
from models.domain.validation import MAX_NAMED_VALUES, MAX_RULES_PER_STAGE, MAX_TRIGGERS_PER_STAGE
from tests.api.support import total
from tests.crm import ok, pipeline, user


def note(name: str, text: str = "Call {{Deal.Title}}") -> dict:
    return {"name": name, "type": "add_timeline_entry", "settings": {"text": text}}


def nested(depth: int) -> dict:
    condition: dict = {"field": "Deal.Amount", "op": ">", "value": 1}
    for _ in range(depth - 1):
        condition = {"all": [condition]}
    return condition


def locations(response) -> list[str]:
    """Each problem's location without its leading `body`, dotted: `stages.NEW.rules`."""
    return [
        ".".join(str(part) for part in problem["loc"]).removeprefix("body.") for problem in response.json()["detail"]
    ]


async def test_automation_over_its_limits_is_refused_naming_the_field_and_changes_nothing(stack):
    flow = await pipeline(stack.http, ["NEW", "WON"])
    path = f"/pipelines/{flow['id']}/automation"
    saved = ok(await stack.http.put(path, json={"stages": {"NEW": {"rules": [note("first")]}}}))

    over = {
        "stages.NEW.rules": {"stages": {"NEW": {"rules": [note(f"r{n}") for n in range(MAX_RULES_PER_STAGE + 1)]}}},
        "stages.NEW.triggers": {"stages": {"NEW": {"triggers": [
            {"name": f"t{n}", "type": "custom", "filter": {"event": f"e{n}"}} for n in range(MAX_TRIGGERS_PER_STAGE + 1)
        ]}}},
        "stages.NEW.rules.0.settings.text": {"stages": {"NEW": {"rules": [note("long", "x" * (MAX_TEXT_LENGTH + 1))]}}},
        "constants": {"constants": {f"C{n}": n for n in range(MAX_NAMED_VALUES + 1)}, "stages": {}},
        "stages.NEW.rules.0.condition": {"stages": {"NEW": {"rules": [
            {**note("deep"), "condition": nested(MAX_CONDITION_DEPTH + 2)}
        ]}}},
    }
    for field, body in over.items():
        refused = await stack.http.put(path, json=body)
        assert refused.status_code == HTTPStatus.UNPROCESSABLE_ENTITY, (field, refused.text[:300])
        assert any(loc.startswith(field) for loc in locations(refused)), (field, locations(refused))
    assert ok(await stack.member.get(path)) == saved

    at_limit = {"stages": {"NEW": {"rules": [note(f"r{n}") for n in range(MAX_RULES_PER_STAGE - 1)]
                                   + [note("long", "x" * MAX_TEXT_LENGTH)]}}}
    accepted = ok(await stack.http.put(path, json=at_limit))
    assert len(accepted["stages"]["NEW"]["rules"]) == MAX_RULES_PER_STAGE
    assert accepted["version"] == saved["version"] + 1


async def test_long_texts_on_items_are_refused_naming_the_field(stack):
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW"])
    item = ok(await stack.http.post("/deals", json={"title": "Sofa", "pipeline_id": flow["id"],
                                                    "responsible_id": manager["id"]}), HTTPStatus.CREATED)
    for path, body, field in (
        (f"/deals/{item['id']}/comments", {"text": "x" * (MAX_TEXT_LENGTH + 1)}, ["body", "text"]),
        ("/deals", {"title": "x" * 100_000, "pipeline_id": flow["id"], "responsible_id": manager["id"]},
         ["body", "title"]),
        ("/contacts", {"name": "x" * 100_000}, ["body", "name"]),
    ):
        refused = await stack.http.post(path, json=body)
        assert refused.status_code == HTTPStatus.UNPROCESSABLE_ENTITY, (path, refused.text[:300])
        assert field in [problem["loc"] for problem in refused.json()["detail"]], (path, refused.text[:300])
    assert await total(stack.http, "/deals") == 1
    assert await total(stack.http, "/contacts") == 0
    assert [entry["kind"] for entry in ok(await stack.http.get(f"/deals/{item['id']}/timeline"))
            if entry["kind"] == "comment"] == []


async def test_company_settings_have_a_larger_body_limit_and_refuse_beyond_it(stack):
    huge = {"name": "Meble", "signature_image": "A" * (COMPANY_MAX_BODY_BYTES + 10)}
    refused = await stack.http.put("/settings/company", json=huge)
    assert refused.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert refused.json() == {"detail": f"Request body is larger than {COMPANY_MAX_BODY_BYTES} bytes"}
    assert (await stack.http.get("/settings/company")).json().get("name") in (None, "")
