"""Contacts and companies: records, requisites, and events that reach every linked deal and lead."""

from __future__ import annotations

from http import HTTPStatus

from tests.api.support import assert_problem, crm, total, wait_for_stage
from tests.crm import deal, ok, pipeline

REQUISITES = {
    "template": "organization",
    "fields": {"tax_id": "PL5250001009", "name": "Furniture Ltd"},
    "addresses": {"legal": {"city": "Gdansk", "street": "Long 1"}, "actual": {"city": "Sopot"}},
    "bank": {"iban": "PL61109010140000071219812874", "swift": "WBKPPLPP"},
}


async def test_contacts_and_companies_are_created_read_and_listed(stack):
    for kind in ("contacts", "companies"):
        first = ok(await stack.member.post(f"/{kind}", json={"name": "Anna", "email": "anna@example.com"}), HTTPStatus.CREATED)
        ok(await stack.member.post(f"/{kind}", json={"name": "Bob", "phone": "+48 600 100 200"}), HTTPStatus.CREATED)
        assert ok(await stack.member.get(f"/{kind}/{first['id']}")) == first
        assert await total(stack.member, f"/{kind}") == 2
        for body, loc in (({"name": ""}, ("body", "name")), ({"name": "X", "email": "nope"}, ("body", "email")),
                          ({"name": "X", "phone": "call me"}, ("body", "phone")), ({"name": "X", "vip": True}, ("body", "vip"))):
            assert_problem(await stack.member.post(f"/{kind}", json=body), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
        assert await total(stack.member, f"/{kind}") == 2
        assert (await stack.member.get(f"/{kind}/999")).status_code == HTTPStatus.NOT_FOUND


async def test_requisites_are_replaced_whole_and_checked(stack):
    company = ok(await stack.member.post("/companies", json={"name": "Furniture Ltd"}), HTTPStatus.CREATED)
    contact = ok(await stack.member.post("/contacts", json={"name": "Anna"}), HTTPStatus.CREATED)
    assert (await stack.member.get(f"/companies/{company['id']}/requisites")).status_code == HTTPStatus.NOT_FOUND

    saved = ok(await stack.member.put(f"/companies/{company['id']}/requisites", json=REQUISITES))
    assert {key: saved[key] for key in REQUISITES} == REQUISITES
    assert ok(await stack.member.get(f"/companies/{company['id']}/requisites")) == saved
    person = ok(await stack.member.put(f"/contacts/{contact['id']}/requisites",
                                      json={"template": "individual", "fields": {"first_name": "Anna"}}))
    assert (person["template"], person["addresses"]) == ("individual", {})
    replaced = ok(await stack.member.put(f"/companies/{company['id']}/requisites", json={"template": "sole_proprietor"}))
    assert (replaced["template"], replaced["fields"], replaced["bank"]) == ("sole_proprietor", {}, {})

    for body, loc in (
        ({**REQUISITES, "template": "llc"}, ("body", "template")),
        ({**REQUISITES, "addresses": {"delivery": {"city": "X"}}}, ("body", "addresses", "delivery", "[key]")),
        ({**REQUISITES, "fields": {"nested": {"a": 1}}}, ("body", "fields", "nested", "str")),
        ({**REQUISITES, "notes": "x"}, ("body", "notes")),
        ({"fields": {}}, ("body", "template")),
    ):
        response = await stack.member.put(f"/companies/{company['id']}/requisites", json=body)
        assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY, response.text
        assert any(problem["loc"][: len(loc)] == list(loc) for problem in response.json()["detail"]), response.text
    assert ok(await stack.member.get(f"/companies/{company['id']}/requisites")) == replaced
    assert (await stack.member.put("/companies/999/requisites", json=REQUISITES)).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.member.get("/contacts/999/requisites")).status_code == HTTPStatus.NOT_FOUND


async def test_an_event_on_a_client_reaches_every_linked_deal_and_lead(stack):
    automation = {"VIP": {"triggers": [{"name": "vip", "type": "custom", "filter": {"event": "became_vip"}}]}}
    flow, manager = await crm(stack, ["NEW", "VIP"], automation=automation)
    leads = await pipeline(stack.http, ["INCOMING", "VIP"], entity="lead", name="Leads")
    ok(await stack.http.put(f"/pipelines/{leads['id']}/automation", json={"stages": automation}))
    anna = ok(await stack.member.post("/contacts", json={"name": "Anna"}), HTTPStatus.CREATED)
    bob = ok(await stack.member.post("/contacts", json={"name": "Bob"}), HTTPStatus.CREATED)
    firm = ok(await stack.member.post("/companies", json={"name": "Firm"}), HTTPStatus.CREATED)
    sofa = await deal(stack.member, flow["id"], manager["id"], contact_id=anna["id"])
    table = await deal(stack.member, flow["id"], manager["id"], contact_id=anna["id"], title="Table")
    lead = await deal(stack.member, leads["id"], manager["id"], entity="lead", contact_id=anna["id"])
    bobs = await deal(stack.member, flow["id"], manager["id"], contact_id=bob["id"], company_id=firm["id"])

    accepted = await stack.member.post(f"/contacts/{anna['id']}/events", json={"type": "became_vip", "data": {"by": "crm"}})
    assert accepted.status_code == HTTPStatus.ACCEPTED
    assert accepted.json() == {"accepted": True, "deal_ids": [sofa["id"], table["id"]], "lead_ids": [lead["id"]]}
    await wait_for_stage(stack, "deal", sofa["id"], "VIP")
    await wait_for_stage(stack, "deal", table["id"], "VIP")
    await wait_for_stage(stack, "lead", lead["id"], "VIP")
    assert ok(await stack.member.get(f"/deals/{bobs['id']}"))["stage"] == "NEW"

    via_company = ok(await stack.member.post(f"/companies/{firm['id']}/events", json={"type": "became_vip"}), HTTPStatus.ACCEPTED)
    assert via_company["deal_ids"] == [bobs["id"]]
    await wait_for_stage(stack, "deal", bobs["id"], "VIP")

    assert_problem(await stack.member.post(f"/contacts/{anna['id']}/events", json={"type": "Became VIP"}), HTTPStatus.UNPROCESSABLE_ENTITY, "body", "type")
    assert_problem(await stack.member.post(f"/contacts/{anna['id']}/events", json={"data": {}}), HTTPStatus.UNPROCESSABLE_ENTITY, "body", "type")
    assert (await stack.member.post("/contacts/999/events", json={"type": "x"})).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.member.post("/companies/999/events", json={"type": "x"})).status_code == HTTPStatus.NOT_FOUND
