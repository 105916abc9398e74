"""People in the console: on a fresh CRM the new-deal form says to add a person first; an admin adds one (and
their supervisor) on the People page, checked as `POST /users` checks; bad input comes back next to its field and
adds no one; a member sees the people and may not add one."""

from __future__ import annotations

import pytest

from tests.console.support import signed_in
from tests.crm import ok, pipeline, user
from tests.stacks import ADMIN_KEY, MEMBER_KEY


async def test_on_a_fresh_crm_an_admin_adds_the_people_deals_are_given_to(stack):
    sales = await pipeline(stack.http, ["NEW", "WON"])
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        board = await client.get(f"/ui/pipelines/{sales['id']}/items")
        assert 'id="no-people"' in board.text and 'href="/ui/people"' in board.text
        empty = await client.get("/ui/people")
        assert "No one yet: add the first person below." in empty.text

        boss = await client.post("/ui/people", data={"csrf_token": csrf, "name": "Sara Supervisor",
                                                     "email": "sara@example.com", "phone": "", "supervisor_id": ""})
        [sara] = ok(await stack.http.get("/users"))
        assert (boss.status_code, boss.headers["location"]) == (303, f"/ui/people?added={sara['id']}")
        added = await client.post("/ui/people", data={"csrf_token": csrf, "name": "Marek Manager",
                                                      "email": "marek@example.com", "phone": "+48 601 234 567",
                                                      "supervisor_id": str(sara["id"])}, follow_redirects=True)
        assert "Marek Manager added." in added.text
        [marek] = [person for person in ok(await stack.http.get("/users")) if person["name"] == "Marek Manager"]
        row = added.text.split(f'data-user="{marek["id"]}"', 1)[1].split("</tr>", 1)[0]
        assert "<td>Sara Supervisor</td>" in row and "<td>+48 601 234 567</td>" in row

        board = await client.get(f"/ui/pipelines/{sales['id']}/items")
        assert 'id="no-people"' not in board.text and ">Marek Manager</option>" in board.text
    people = {person["name"]: person for person in ok(await stack.http.get("/users"))}
    assert people["Marek Manager"]["supervisor_id"] == people["Sara Supervisor"]["id"]
    assert (people["Marek Manager"]["email"], people["Marek Manager"]["phone"]) == ("marek@example.com",
                                                                                  "+48 601 234 567")


@pytest.mark.parametrize("typed, field, words", [
    ({"name": ""}, "name", "Name: "),
    ({"name": "Ola", "email": "not an e-mail"}, "email", "E-mail: is not an e-mail address such as name@example.com"),
    ({"name": "Ola", "phone": "call me maybe"}, "phone", "Phone: is not a phone number such as +48 601 234 567"),
    ({"name": "   "}, "name", "Name: "),
    ({"name": "Ola", "supervisor_id": "99"}, "supervisor_id", "Supervisor: user 99 does not exist"),
    ({"name": "Ola", "supervisor_id": "someone"}, "supervisor_id", "Supervisor: "),
    ({"name": "x" * 5000}, "name", "Name: "),
])
async def test_a_person_refused_comes_back_with_the_problem_at_its_field_and_adds_no_one(stack, typed, field, words):
    await user(stack.http, "Existing One")
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        refused = await client.post("/ui/people", data={"csrf_token": csrf, **typed})
        assert refused.status_code == 422
        assert f'data-error="{field}"' in refused.text and words in refused.text
        assert f'class="field has-error" data-field="{field}"' in refused.text
        if typed.get("name", "").strip() and len(typed["name"]) < 100:
            assert f'value="{typed["name"]}"' in refused.text
    assert [person["name"] for person in ok(await stack.http.get("/users"))] == ["Existing One"]


async def test_a_member_sees_the_people_and_may_not_add_one(stack):
    await user(stack.http, "Existing One")
    async with signed_in(stack, MEMBER_KEY) as (client, csrf):
        listed = await client.get("/ui/people")
        assert listed.status_code == 200 and "<td>Existing One</td>" in listed.text
        assert "Add a person" not in listed.text
        refused = await client.post("/ui/people", data={"csrf_token": csrf, "name": "Intruder"})
        assert refused.status_code == 403
    assert [person["name"] for person in ok(await stack.http.get("/users"))] == ["Existing One"]


async def test_a_member_on_a_fresh_crm_is_told_to_ask_an_admin_for_a_person(stack):
    sales = await pipeline(stack.http, ["NEW", "WON"])
    async with signed_in(stack, MEMBER_KEY) as (client, _csrf):
        board = await client.get(f"/ui/pipelines/{sales['id']}/items")
        assert "ask an admin to add a person" in board.text


@pytest.mark.parametrize("added", ["9" * 40, "9" * 5000, "\u00b2", "\u0665", "-1", "abc", "0", ""])
async def test_the_people_page_takes_any_added_value_without_failing(stack, added):
    existing = await user(stack.http, "Existing One")
    async with signed_in(stack, ADMIN_KEY) as (client, _csrf):
        page = await client.get("/ui/people", params={"added": added})
        assert page.status_code == 200 and "<td>Existing One</td>" in page.text and "added." not in page.text
        named = await client.get("/ui/people", params={"added": str(existing["id"])})
        assert "Existing One added." in named.text


async def test_a_nul_in_a_multipart_form_is_refused_and_adds_no_one(stack):
    async with signed_in(stack, ADMIN_KEY) as (client, csrf):
        fields = {"csrf_token": csrf, "name": "Ola", "email": "ola\x00@example.com"}
        refused = await client.post("/ui/people", files={name: (None, value) for name, value in fields.items()})
        assert refused.status_code == 422
    assert ok(await stack.http.get("/users")) == []
