"""A simulation hands out links to its own documents only: never a real document's link, id route or token, for a
sample item or for an item that exists and whose rules reuse a link its real entry made."""

from __future__ import annotations

import json
import re
from typing import Any

from scripts.demo import SHOP_DELAYS, sales_automation, shop_simulation, web_form_order
from tests.crm import eventually, ok, timeline

ROUTES_WITH_DATA = re.compile(r"(/simulations/[0-9a-f]{16})?(/(?:public/documents|documents|sign|t/o|t/c|callbacks)/)")
LINK = re.compile(r"https?://[^\s\"'<>)]+")


def reminder_automation(shop) -> dict[str, Any]:
    """The shop's Sales automation, and a reminder two days into "Prepare documents" that mails the invoice's links
    again: it reads them from the invoice rule's stored results."""
    automation = sales_automation(shop, SHOP_DELAYS)
    automation["stages"]["PREPARE_DOCUMENTS"]["rules"].append({
        "name": "reminder", "type": "send_email", "delay": "2d",
        "settings": {"subject": "Reminder: invoice {{Rule.invoice.number}}",
                     "body": "View it here: {{Rule.invoice.public_url}} (PDF: {{Rule.invoice.pdf_url}})"},
    })
    return automation


def assert_links_are_the_simulations(answer: dict[str, Any], real: list[str]) -> list[str]:
    """No real token or link in the answer, every route that serves data under the simulation's own prefix; the
    absolute links the answer holds."""
    text = json.dumps(answer)
    for secret in real:
        assert secret not in text, secret
    own = f"/simulations/{answer['id']}"
    routes = ROUTES_WITH_DATA.findall(text)
    assert routes, "the answer holds no document links at all"
    assert {prefix for prefix, _ in routes} == {own}, routes
    return LINK.findall(text)


async def test_no_link_in_a_simulation_reaches_a_real_document(shop_stack):
    http, shop = shop_stack.http, shop_stack.extras["shop"]
    ok(await http.put(f"/pipelines/{shop.sales['id']}/automation", json=reminder_automation(shop)))
    order = await web_form_order(http, shop, "Real order")
    ok(await http.post(f"/deals/{order['id']}/move", json={"stage": "PREPARE_DOCUMENTS"}))

    async def sent() -> bool:
        return any(entry["rule_name"] == "send invoice" and entry["kind"] == "rule_done"
                   for entry in await timeline(http, order["id"]))

    assert await eventually(sent, timeout=60)
    [document] = ok(await http.get("/documents", params={"deal_id": order["id"]}))
    real_token = document["public_url"].rsplit("/", 1)[1]
    real = [real_token, document["public_url"], f"{shop_stack.settings.effective_public_url}/documents/"]

    sample = ok(await http.post("/simulations", json={
        **shop_simulation(shop, "3d"), "automation": reminder_automation(shop),
        "script": [{"at": "+1h", "move": "PREPARE_DOCUMENTS"}]}))
    existing = ok(await http.post(f"/deals/{order['id']}/simulate", json={"horizon": "3d"}))

    for answer in (sample, existing):
        [reminder] = [message for message in answer["effects"]["messages"] if message["rule"] == "reminder"]
        links = assert_links_are_the_simulations(answer, real)
        reminder_links = LINK.findall(reminder["body"])
        assert len(reminder_links) == 2 and set(reminder_links) <= set(links)
        for link in reminder_links:
            served = await http.get(link.removeprefix(shop_stack.settings.effective_public_url))
            assert served.status_code == 200 and served.headers["content-type"] == "application/pdf", link
            assert served.content.startswith(b"%PDF")
    # The real document is the real one, and stays reachable only through its own link.
    assert (await http.get(f"/simulations/{existing['id']}/public/documents/{real_token}")).status_code == 404
    assert (await shop_stack.anon.get(f"/public/documents/{real_token}")).status_code == 200
