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
        assert (boss.status_code, boss.headers["location"]) == (303, "/ui/people?added=1")
        added = await client.post("/ui/people", data={"csrf_token": csrf, "name": "Marek Manager",
                                                      "email": "marek@example.com", "phone": "+48 601 234 567",
                                                      "supervisor_id": "1"}, follow_redirects=True)
        assert "Marek Manager added." in added.text
        assert '<td>Sara Supervisor</td>' in added.text.split('data-user="2"', 1)[1].split("</tr>", 1)[0]

        board = await client.get(f"/ui/pipelines/{sales['id']}/items")
        assert 'id="no-people"' not in board.text and ">Marek Manager</option>" in board.text
    people = {person["name"]: person for person in ok(await stack.http.get("/users"))}
    assert people["Marek Manager"]["supervisor_id"] == people["Sara Supervisor"]["id"]
    assert (people["Marek Manager"]["email"], people["Marek Manager"]["phone"]) == ("marek@example.com",
                                                                                  "+48 601 234 567")


@pytest.mark.parametrize("typed, field, words", [
    ({"name": ""}, "name", "Name: "),
    ({"name": "Ola", "email": "not an e-mail"}, "email", "E-mail: "),
    ({"name": "Ola", "phone": "call me maybe"}, "phone", "Phone: "),
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
        if typed.get("name") and len(typed["name"]) < 100:
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
        odd = await client.get("/ui/people", params={"added": "9" * 40})
        assert odd.status_code == 200 and "added." not in odd.text
    assert [person["name"] for person in ok(await stack.http.get("/users"))] == ["Existing One"]
