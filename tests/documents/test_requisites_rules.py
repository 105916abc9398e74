"""change_requisites and get_requisites through the HTTP API: the courier gets the client's delivery address,
requisites change with placeholders, and a value that does not fit its field changes nothing."""

from __future__ import annotations

from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from tests.documents.support import rule_result


async def _contact_with_addresses(http) -> dict:
    contact = ok(await http.post("/contacts", json={"name": "Anna Nowak", "email": "anna@example.com",
                                                    "phone": "+48 601 234 567"}), 201)
    ok(await http.put(f"/contacts/{contact['id']}/requisites", json={
        "template": "individual",
        "fields": {"first_name": "Anna", "last_name": "Nowak", "passport": "EA1234567"},
        "addresses": {
            "legal": {"street": "ul. Długa 5", "zip": "00-238", "city": "Warszawa", "country": "Poland"},
            "actual": {"street": "ul. Fabryczna 7 m. 12", "zip": "90-001", "city": "Łódź", "country": "Poland"},
        },
    }))
    return contact


async def test_courier_is_notified_with_the_clients_delivery_address(stack):
    manager = await user(stack.http, "Manager")
    courier = await user(stack.http, "Courier")
    contact = await _contact_with_addresses(stack.http)
    flow = await pipeline(stack.http, ["NEW", "DELIVERY"])
    await automate(stack.http, flow["id"], {"DELIVERY": {"rules": [
        {"name": "addr", "type": "get_requisites",
         "settings": {"entity": "contact", "template": "individual", "address_type": "actual", "fields": ["passport"]}},
        {"name": "courier", "type": "notify_employee",
         "settings": {"user_ids": ["{{Constants.Courier}}"],
                      "text": "Deliver {{Deal.Title}} to {{Rule.addr.name}}, {{Rule.addr.address}} ({{Rule.addr.city}})"}},
    ]}}, constants={"Courier": courier["id"]})
    item = await deal(stack.http, flow["id"], manager["id"], contact_id=contact["id"])
    ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "DELIVERY"}))

    notes = await eventually(lambda: _notifications(stack, courier["id"]))
    assert [note["text"] for note in notes] == [
        "Deliver Sofa for Anna to Anna Nowak, ul. Fabryczna 7 m. 12, 90-001 Łódź, Poland (Łódź)"
    ]
    result = rule_result(await timeline(stack.http, item["id"]), "addr")
    assert result["template"] == "individual" and result["passport"] == "EA1234567"
    assert result["email"] == "anna@example.com" and result["zip"] == "90-001" and result["tax_id"] is None


async def _notifications(stack, user_id: int) -> list[dict]:
    return ok(await stack.http.get("/notifications", params={"user_id": user_id}))


async def test_get_requisites_of_a_missing_company_fails_naming_the_entity(stack):
    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["DELIVERY", "DONE"])
    await automate(stack.http, flow["id"], {"DELIVERY": {"rules": [
        {"name": "addr", "type": "get_requisites", "settings": {"entity": "company", "address_type": "actual"}},
    ]}})
    item = await deal(stack.http, flow["id"], manager["id"])
    [failed] = await eventually(lambda: timeline(stack.http, item["id"], kind="rule_failed"))
    assert "settings.entity: the deal has no linked company" in failed["text"]


async def _company(http) -> dict:
    company = ok(await http.post("/companies", json={"name": "Nowak Design"}), 201)
    ok(await http.put(f"/companies/{company['id']}/requisites", json={
        "template": "organization",
        "fields": {"name": "Nowak Design Sp. z o.o.", "tax_id": "5252248481"},
        "addresses": {"legal": {"street": "ul. Prosta 1", "city": "Warszawa"}},
    }))
    return company


CHANGE = {
    "name": "nip", "type": "change_requisites",
    "settings": {
        "entity": "company", "template": "organization", "address_type": "legal",
        "fields": {"tax_id": "{{Deal.Fields.nip}}", "address.city": "{{Variables.City}}",
                   "address.zip": "00-838", "bank.iban": "PL61 1090 1014 0000 0712 1981 2874",
                   "vat_id": None},
    },
}


async def test_change_requisites_sets_fields_address_and_bank_from_placeholders(stack):
    manager = await user(stack.http, "Manager")
    company = await _company(stack.http)
    flow = await pipeline(stack.http, ["DOCS", "DONE"])
    await automate(stack.http, flow["id"], {"DOCS": {"rules": [CHANGE]}}, variables={"City": "Kraków"})
    item = await deal(stack.http, flow["id"], manager["id"], company_id=company["id"],
                      fields={"nip": "PL 779-23-08-495"})
    await eventually(lambda: timeline(stack.http, item["id"], kind="rule_done"))

    requisites = ok(await stack.http.get(f"/companies/{company['id']}/requisites"))
    assert requisites["fields"] == {"name": "Nowak Design Sp. z o.o.", "tax_id": "PL7792308495"}
    assert requisites["addresses"]["legal"] == {"street": "ul. Prosta 1", "city": "Kraków", "zip": "00-838"}
    assert requisites["bank"] == {"iban": "PL61109010140000071219812874"}
    [entry] = await timeline(stack.http, item["id"], kind="requisites_changed")
    assert sorted(entry["data"]["changed"]) == ["address.city", "address.zip", "bank.iban", "tax_id"]
    assert rule_result(await timeline(stack.http, item["id"]), "nip") == {"changed": entry["data"]["changed"]}


async def test_a_value_that_does_not_fit_its_field_fails_the_rule_and_changes_nothing(stack):
    manager = await user(stack.http, "Manager")
    company = await _company(stack.http)
    before = ok(await stack.http.get(f"/companies/{company['id']}/requisites"))
    flow = await pipeline(stack.http, ["DOCS", "DONE"])
    await automate(stack.http, flow["id"], {"DOCS": {"rules": [CHANGE]}}, variables={"City": "Kraków"})
    item = await deal(stack.http, flow["id"], manager["id"], company_id=company["id"], fields={"nip": "12-34"})

    [failed] = await eventually(lambda: timeline(stack.http, item["id"], kind="rule_failed"))
    assert "settings.fields.tax_id" in failed["text"] and "company tax id" in failed["text"]
    assert ok(await stack.http.get(f"/companies/{company['id']}/requisites")) == before


async def test_unknown_or_malformed_requisite_fields_are_refused_when_saved(stack):
    flow = await pipeline(stack.http, ["DOCS", "DONE"])
    cases = [
        ({"passport": "AB123456"}, "fields", "passport", "not a field of organization requisites"),
        ({"tax_id": "12"}, "fields", "tax_id", "company tax id"),
        ({"bank.iban": "PL00 1234"}, "fields", "bank.iban", "IBAN"),
        ({"address.planet": "Mars"}, "fields", "address.planet", "not an address field"),
    ]
    for fields, *loc, message in cases:
        rule = {"name": "nip", "type": "change_requisites",
                "settings": {"entity": "company", "template": "organization", "address_type": "legal",
                             "fields": fields}}
        response = await stack.http.put(f"/pipelines/{flow['id']}/automation",
                                        json={"stages": {"DOCS": {"rules": [rule]}}})
        assert response.status_code == 422, response.text
        [problem] = response.json()["detail"]
        assert problem["loc"] == ["body", "stages", "DOCS", "rules", 0, "settings", *loc]
        assert message in problem["msg"]
    assert ok(await stack.http.get(f"/pipelines/{flow['id']}/automation"))["stages"] == {}
