"""Configuration: users, pipelines, company and calendar settings, rule and trigger types, document templates."""

from __future__ import annotations

import base64
import io
from http import HTTPStatus
from pathlib import Path

from PIL import Image

from tests.api.support import assert_problem, total
from tests.crm import ok, pipeline, user

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def image(kind: str = "PNG", size: tuple[int, int] = (40, 20)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, kind)
    return base64.b64encode(buffer.getvalue()).decode()


async def test_users_are_created_read_listed_and_changed(stack):
    boss = await user(stack.http, "Boss", email="boss@example.com", phone="+48 600 100 200")
    manager = await user(stack.http, "Manager", supervisor_id=boss["id"])
    assert manager["supervisor_id"] == boss["id"]
    assert manager["created_at"].endswith("Z")
    assert ok(await stack.member.get(f"/users/{manager['id']}"))["name"] == "Manager"
    renamed = ok(await stack.http.patch(f"/users/{manager['id']}", json={"name": "Head of sales"}))
    assert (renamed["name"], renamed["supervisor_id"]) == ("Head of sales", boss["id"])

    page = await stack.member.get("/users", params={"limit": 1, "offset": 1})
    assert page.headers["X-Total-Count"] == "2"
    assert [row["id"] for row in page.json()] == [manager["id"]]
    assert (await stack.member.get("/users/999")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.http.patch("/users/999", json={"name": "X"})).status_code == HTTPStatus.NOT_FOUND


async def test_bad_users_are_refused_and_nothing_changes(stack):
    boss = await user(stack.http, "Boss")
    manager = await user(stack.http, "Manager", supervisor_id=boss["id"])
    cases = [
        ({"name": "X", "nickname": "x"}, ("body", "nickname")),
        ({"name": ""}, ("body", "name")),
        ({"name": "x" * 201}, ("body", "name")),
        ({"name": "X", "email": "not-an-email"}, ("body", "email")),
        ({"name": "X", "supervisor_id": 999}, ("body", "supervisor_id")),
        ({"name": "X", "supervisor_id": 2**70}, ("body", "supervisor_id")),
        ({}, ("body", "name")),
    ]
    for body, loc in cases:
        assert_problem(await stack.http.post("/users", json=body), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    loop = await stack.http.patch(f"/users/{boss['id']}", json={"supervisor_id": manager["id"]})
    assert_problem(loop, HTTPStatus.UNPROCESSABLE_ENTITY, "body", "supervisor_id")
    assert loop.json()["detail"][0]["msg"] == (f"{manager['name']} (user {manager['id']}) is supervised by this user, "
                                               "directly or through others: supervisors would go round in a circle")
    itself = await stack.http.patch(f"/users/{boss['id']}", json={"supervisor_id": boss["id"]})
    assert_problem(itself, HTTPStatus.UNPROCESSABLE_ENTITY, "body", "supervisor_id")
    assert itself.json()["detail"][0]["msg"] == "would make the user their own supervisor"
    assert_problem(await stack.http.patch(f"/users/{boss['id']}", json={"name": None}), HTTPStatus.UNPROCESSABLE_ENTITY, "body", "name")
    assert await total(stack.http, "/users") == 2
    assert ok(await stack.http.get(f"/users/{boss['id']}"))["supervisor_id"] is None
    assert (await stack.member.patch(f"/users/{boss['id']}", json={"name": "Eve"})).status_code == HTTPStatus.FORBIDDEN
    assert ok(await stack.http.get(f"/users/{boss['id']}"))["name"] == "Boss"


async def test_lists_page_with_limit_and_offset(stack):
    for n in range(7):
        await user(stack.http, f"User {n}")
    first = await stack.http.get("/users", params={"limit": 3})
    rest = await stack.http.get("/users", params={"limit": 3, "offset": 6})
    assert [row["name"] for row in first.json()] == ["User 0", "User 1", "User 2"]
    assert [row["name"] for row in rest.json()] == ["User 6"]
    assert first.headers["X-Total-Count"] == rest.headers["X-Total-Count"] == "7"
    assert len(ok(await stack.http.get("/users"))) == 7
    for params, loc in (({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"offset": -1}, "offset")):
        assert_problem(await stack.http.get("/users", params=params), HTTPStatus.UNPROCESSABLE_ENTITY, "query", loc)


async def test_pipelines_keep_their_stage_order_and_semantics(stack):
    body = {
        "entity_type": "deal",
        "name": "Sales",
        "stages": [
            {"code": "NEW", "name": "New"},
            {"code": "WON", "name": "Won", "semantic": "success"},
            {"code": "LOST", "name": "Lost", "semantic": "failure"},
        ],
    }
    sales = ok(await stack.http.post("/pipelines", json=body), HTTPStatus.CREATED)
    leads = await pipeline(stack.http, ["INCOMING", "QUALIFIED"], entity="lead", name="Leads")
    assert [(s["code"], s["semantic"], s["position"]) for s in sales["stages"]] == [
        ("NEW", "process", 0), ("WON", "success", 1), ("LOST", "failure", 2)
    ]
    assert ok(await stack.member.get(f"/pipelines/{sales['id']}")) == sales
    assert [p["id"] for p in ok(await stack.member.get("/pipelines", params={"entity_type": "lead"}))] == [leads["id"]]
    assert await total(stack.member, "/pipelines") == 2
    assert (await stack.member.get("/pipelines/999")).status_code == HTTPStatus.NOT_FOUND


async def test_bad_pipelines_are_refused_and_nothing_changes(stack):
    good_stage = {"code": "NEW", "name": "New"}
    cases = [
        ({"entity_type": "deal", "name": "S", "stages": [good_stage, good_stage]}, ("body", "stages")),
        ({"entity_type": "deal", "name": "S", "stages": [{"code": "new stage", "name": "x"}]}, ("body", "stages", 0, "code")),
        ({"entity_type": "deal", "name": "S", "stages": []}, ("body", "stages")),
        ({"entity_type": "ticket", "name": "S", "stages": [good_stage]}, ("body", "entity_type")),
        ({"entity_type": "deal", "name": "S", "stages": [{**good_stage, "semantic": "won"}]}, ("body", "stages", 0, "semantic")),
        ({"entity_type": "deal", "name": "S", "stages": [{**good_stage, "color": "red"}]}, ("body", "stages", 0, "color")),
    ]
    for body, loc in cases:
        assert_problem(await stack.http.post("/pipelines", json=body), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    assert await total(stack.http, "/pipelines") == 0


async def test_company_settings_keep_requisites_and_images(stack):
    signer = await user(stack.http, "Signer")
    empty = ok(await stack.member.get("/settings/company"))
    assert (empty["name"], empty["signature_image"]) == ("", None)
    body = {
        "name": "Furniture Ltd",
        "requisites": {"template": "organization", "fields": {"tax_id": "PL123"}, "addresses": {"legal": {"city": "Gdansk"}}},
        "bank": {"name": "Bank", "iban": "PL00 1234"},
        "signature_image": image("PNG"),
        "stamp_image": "data:image/jpeg;base64," + image("JPEG"),
        "signer_name": "Olga",
        "signer_user_id": signer["id"],
    }
    saved = ok(await stack.http.put("/settings/company", json=body))
    assert saved["stamp_image"] == body["stamp_image"].split(",", 1)[1]
    assert ok(await stack.member.get("/settings/company")) == saved
    stamp = base64.b64decode(saved["stamp_image"])
    assert Image.open(io.BytesIO(stamp)).format == "JPEG"

    bad = [
        ({**body, "signature_image": base64.b64encode(b"GIF89a-not-allowed").decode()}, ("body", "signature_image")),
        ({**body, "signature_image": "%%% not base64"}, ("body", "signature_image")),
        ({**body, "stamp_image": base64.b64encode(b"\x89PNG\r\n\x1a\n truncated").decode()}, ("body", "stamp_image")),
        ({**body, "signer_user_id": 999}, ("body", "signer_user_id")),
        ({**body, "requisites": {"template": "llc"}}, ("body", "requisites", "template")),
        ({**body, "logo": "x"}, ("body", "logo")),
    ]
    for changed, loc in bad:
        assert_problem(await stack.http.put("/settings/company", json=changed), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    assert (await stack.member.put("/settings/company", json=body)).status_code == HTTPStatus.FORBIDDEN
    assert ok(await stack.member.get("/settings/company")) == saved


async def test_company_images_up_to_one_megabyte_fit_through_the_body_limit(stack):
    noisy = Image.effect_noise((600, 600), 100).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    assert 500_000 < len(buffer.getvalue()) <= 1_000_000
    big = base64.b64encode(buffer.getvalue()).decode()
    ok(await stack.http.put("/settings/company", json={"name": "Big", "signature_image": big, "stamp_image": big}))
    buffer = io.BytesIO()
    Image.effect_noise((800, 800), 100).convert("RGB").save(buffer, "PNG")
    too_big = base64.b64encode(buffer.getvalue()).decode()
    refused = await stack.http.put("/settings/company", json={"name": "Bigger", "signature_image": too_big})
    assert_problem(refused, HTTPStatus.UNPROCESSABLE_ENTITY, "body", "signature_image")
    assert ok(await stack.http.get("/settings/company"))["name"] == "Big"


async def test_calendar_settings_are_checked(stack):
    assert ok(await stack.member.get("/settings/calendar"))["working_days"] == [1, 2, 3, 4, 5]
    body = {"timezone": "Europe/Warsaw", "working_days": [6, 1, 2], "day_start": "08:30", "day_end": "16:00",
            "holidays": ["2026-12-25", "2026-01-01"]}
    saved = ok(await stack.http.put("/settings/calendar", json=body))
    assert (saved["working_days"], saved["holidays"]) == ([1, 2, 6], ["2026-01-01", "2026-12-25"])
    bad = [
        ({**body, "timezone": "Mars/Olympus"}, ("body", "timezone")),
        ({**body, "working_days": [0, 8]}, ("body", "working_days", 0)),
        ({**body, "working_days": [1, 1]}, ("body", "working_days")),
        ({**body, "working_days": []}, ("body", "working_days")),
        ({**body, "day_start": "25:00"}, ("body", "day_start")),
        ({**body, "day_start": "18:00", "day_end": "09:00"}, ("body",)),
        ({**body, "holidays": ["someday"]}, ("body", "holidays", 0)),
    ]
    for changed, loc in bad:
        assert_problem(await stack.http.put("/settings/calendar", json=changed), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    assert (await stack.member.put("/settings/calendar", json=body)).status_code == HTTPStatus.FORBIDDEN
    assert ok(await stack.member.get("/settings/calendar")) == saved


async def test_rule_and_trigger_catalogues_and_custom_rule_types(stack):
    rules = ok(await stack.member.get("/rule-types", params={"limit": 500}))
    names = [rule["name"] for rule in rules]
    assert {"send_sms", "notify_supervisor", "create_document", "webhook"} <= set(names)
    sms = next(rule for rule in rules if rule["name"] == "send_sms")
    assert "text" in sms["settings_schema"]["properties"]
    triggers = ok(await stack.member.get("/trigger-types"))
    assert {"payment_received", "task_status", "webhook"} <= {trigger["name"] for trigger in triggers}

    body = {
        "name": "geocode",
        "title": "Geocode the address",
        "settings_schema": {"type": "object", "properties": {"address": {"type": "string"}}, "required": ["address"]},
        "handler_url": "https://geo.example.com/rules/geocode",
        "returns": ["lat", "lon"],
    }
    created = ok(await stack.http.post("/rule-types", json=body), HTTPStatus.CREATED)
    assert (created["name"], created["returns"]) == ("geocode", ["lat", "lon"])
    listed = ok(await stack.member.get("/rule-types", params={"limit": 500}))
    geocode = next(rule for rule in listed if rule["name"] == "geocode")
    assert geocode["custom"] is True and geocode["returns"] == ["lat", "lon"]
    assert geocode["settings_schema"]["required"] == ["address"]
    assert len(listed) == len(rules) + 1

    bad = [
        ({**body, "name": "send_sms"}, ("body", "name"), HTTPStatus.UNPROCESSABLE_ENTITY),
        ({**body, "name": "Geo-Code"}, ("body", "name"), HTTPStatus.UNPROCESSABLE_ENTITY),
        ({**body, "handler_url": "ftp://geo.example.com"}, ("body", "handler_url"), HTTPStatus.UNPROCESSABLE_ENTITY),
        ({**body, "name": "g2", "settings_schema": {"type": "object", "properties": {"a": {"type": "strng"}}}},
         ("body", "settings_schema", "properties", "a", "type"), HTTPStatus.UNPROCESSABLE_ENTITY),
        ({**body, "name": "g3", "returns": ["lat", "lat"]}, ("body", "returns"), HTTPStatus.UNPROCESSABLE_ENTITY),
        (body, ("body", "name"), HTTPStatus.CONFLICT),
    ]
    for changed, loc, status in bad:
        assert_problem(await stack.http.post("/rule-types", json=changed), status, *loc)
    assert (await stack.member.post("/rule-types", json={**body, "name": "g4"})).status_code == HTTPStatus.FORBIDDEN
    assert await total(stack.member, "/rule-types", limit=500) == len(rules) + 1


async def test_document_templates_are_uploaded_checked_listed_and_deleted(stack):
    builtin = ok(await stack.member.get("/document-templates"))
    assert {row["code"] for row in builtin if row["builtin"]} == {"invoice", "offer", "contract"}
    content = (TEMPLATES / "invoice.docx").read_bytes()
    form = {"code": "my_invoice", "name": "My invoice", "prefix": "MI"}
    created = ok(
        await stack.http.post("/document-templates", data=form, files={"file": ("inv.docx", content)}),
        HTTPStatus.CREATED,
    )
    assert (created["code"], created["size"], created["builtin"]) == ("my_invoice", len(content), False)
    downloaded = await stack.member.get("/document-templates/my_invoice/docx")
    assert downloaded.content == content
    assert await total(stack.member, "/document-templates") == len(builtin) + 1

    refused = [
        ({**form, "code": "other"}, b"not a docx", ("body", "file"), HTTPStatus.UNPROCESSABLE_ENTITY),
        ({**form, "code": "invoice"}, content, ("body", "code"), HTTPStatus.UNPROCESSABLE_ENTITY),
        (form, content, ("body", "code"), HTTPStatus.CONFLICT),
        ({**form, "code": "Bad Code"}, content, ("body", "code"), HTTPStatus.UNPROCESSABLE_ENTITY),
    ]
    for fields, data, loc, status in refused:
        response = await stack.http.post("/document-templates", data=fields, files={"file": ("t.docx", data)})
        assert_problem(response, status, *loc)
    member = await stack.member.post("/document-templates", data={**form, "code": "x"}, files={"file": ("t.docx", content)})
    assert member.status_code == HTTPStatus.FORBIDDEN
    assert await total(stack.member, "/document-templates") == len(builtin) + 1

    assert (await stack.member.delete("/document-templates/my_invoice")).status_code == HTTPStatus.FORBIDDEN
    assert (await stack.http.delete("/document-templates/invoice")).status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert (await stack.http.delete("/document-templates/my_invoice")).status_code == HTTPStatus.NO_CONTENT
    assert (await stack.http.delete("/document-templates/my_invoice")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.member.get("/document-templates/my_invoice/docx")).status_code == HTTPStatus.NOT_FOUND
