"""The furniture-shop demo: `make demo` (with `make run` going in another terminal).

Loads the worked example of the product spec into a running stageflow through its HTTP API:

  Sales     NEW → PREPARE_DOCUMENTS → INVOICE → WON | LOST
            NEW                SMS to the client ("we will call within 30 minutes"); the supervisor is
                               notified if the deal has not moved after a while
            PREPARE_DOCUMENTS  an invoice (PDF with a public link), then an email with its link and the PDF
            INVOICE            reached by a payment-received trigger; a task for the warehouse
            WON                a copy in the Delivery pipeline, and a repeat lead later on
  Delivery  NEW → SHIPPING → DELIVERED   (the copy's own rule texts the client)
  Leads     NEW → CONTACTED → QUALIFIED  (the repeat lead's own rule makes a call task)

then creates a few deals and walks one of them from the web form to "Won", and prints where to look.
Delays are short (the repeat lead comes after a minute, not six months). Running it again reuses the
users, client and pipelines it made before and adds new deals.

    python scripts/demo.py [--url http://localhost:8000] [--key KEY]

The API key comes from --key, STAGEFLOW_API_KEY, or <data dir>/api_key (written by `make run`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx

from models.domain.wording import time_after

ROOT = Path(__file__).resolve().parent.parent

SALES = [
    ("NEW", "New order", "process"),
    ("PREPARE_DOCUMENTS", "Prepare documents", "process"),
    ("INVOICE", "Invoice", "process"),
    ("WON", "Won", "success"),
    ("LOST", "Lost", "failure"),
]
DELIVERY = [
    ("NEW", "To deliver", "process"),
    ("SHIPPING", "Shipping", "process"),
    ("DELIVERED", "Delivered", "success"),
]
LEADS = [("NEW", "New lead", "process"), ("CONTACTED", "Contacted", "process"), ("QUALIFIED", "Qualified", "success")]

PRODUCTS = [
    {"name": "Sofa Oslo, grey", "quantity": 1, "price": 900, "tax": 23},
    {"name": "Armchair Bergen", "quantity": 2, "price": 150, "tax": 23},
]


def order_total(products: list[dict[str, Any]]) -> float:
    """What the client pays for the products, tax included, as the invoice adds it up: 1476.00 for PRODUCTS."""
    cent = Decimal("0.01")
    total = sum((Decimal(str(product["quantity"])) * Decimal(str(product["price"])) * (
        1 + Decimal(str(product.get("tax") or 0)) / 100)).quantize(cent, ROUND_HALF_UP) for product in products)
    return float(total)


PAID_IN_FULL = {"field": "Deal.Paid", "op": ">=", "value": "{{Deal.Amount}}"}
"""The payments reported for the deal cover its amount."""

MY_COMPANY = {
    "name": "Oak & Linen Furniture",
    "requisites": {
        "template": "organization",
        "fields": {"tax_id": "PL5260001246", "email": "shop@furniture.example", "phone": "+48 22 123 45 67"},
        "addresses": {"legal": {"street": "ul. Stolarska 12", "city": "Kraków", "zip": "31-043", "country": "PL"}},
    },
    "bank": {"bank_name": "Bank Polski", "iban": "PL61109010140000071219812874", "swift": "WBKPPLPP"},
}

CLIENT = {"name": "Anna Nowak", "email": "anna.nowak@client.example", "phone": "+48 601 234 567"}
CLIENT_REQUISITES = {
    "template": "individual",
    "fields": {"first_name": "Anna", "last_name": "Nowak"},
    "addresses": {"actual": {"street": "ul. Długa 5", "city": "Gdańsk", "zip": "80-827", "country": "PL"}},
}

DEMO_DELAYS = {"late": "2m", "repeat": "1m"}
"""Short delays for watching the demo; the shop itself uses SHOP_DELAYS (its simulation at the end shows them)."""
SHOP_DELAYS = {"late": "24h", "repeat": "6mo"}


@dataclass
class Shop:
    """What the demo set up: ids of users, the client, the pipelines."""

    manager: dict[str, Any]
    supervisor: dict[str, Any]
    warehouse: dict[str, Any]
    contact: dict[str, Any]
    sales: dict[str, Any]
    delivery: dict[str, Any]
    leads: dict[str, Any]


def ok(response: httpx.Response, *expected: int) -> Any:
    if response.status_code not in (expected or (200,)):
        raise SystemExit(
            f"{response.request.method} {response.request.url.path} answered {response.status_code}: {response.text}"
        )
    return response.json() if response.content else None


async def _find(http: httpx.AsyncClient, path: str, name: str, **params: Any) -> dict[str, Any] | None:
    rows = ok(await http.get(path, params={"limit": 500, **params}))
    return next((row for row in rows if row.get("name") == name), None)


async def _user(http: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    return await _find(http, "/users", name) or ok(await http.post("/users", json={"name": name, **fields}), 201)


async def _pipeline(http: httpx.AsyncClient, entity: str, name: str, stages: list[tuple[str, str, str]]) -> dict:
    found = await _find(http, "/pipelines", name, entity_type=entity)
    if found is not None:
        return found
    body = {"entity_type": entity, "name": name,
            "stages": [{"code": code, "name": title, "semantic": semantic} for code, title, semantic in stages]}
    return ok(await http.post("/pipelines", json=body), 201)


def sales_automation(shop: Shop, delays: dict[str, str]) -> dict[str, Any]:
    """The Sales pipeline's automation: the worked example of the product spec."""
    return {
        "constants": {"Warehouse": shop.warehouse["id"], "Shop": MY_COMPANY["name"]},
        "stages": {
            "NEW": {"rules": [
                {"name": "ack", "type": "send_sms",
                 "settings": {"text": "Hello {{Deal.Contact.Name}}, thank you for your order at {{Constants.Shop}}. "
                                      "{{Deal.Responsible.Name}} will call you within 30 minutes."}},
                {"name": "late", "type": "notify_supervisor", "delay": delays["late"],
                 "settings": {"text": "{{Deal.Responsible.Name}} has not called back about {{Deal.Title}} "
                                      "({{Deal.Amount}} {{Deal.Currency}})"}},
            ]},
            "PREPARE_DOCUMENTS": {"rules": [
                {"name": "invoice", "type": "create_document",
                 "settings": {"template": "invoice", "my_company": True, "public_link": True, "wait_for_pdf": True}},
                {"name": "send invoice", "type": "send_email", "start": "after_previous",
                 "settings": {
                     "subject": "Invoice {{Rule.invoice.number}} for {{Deal.Title}}",
                     "body": "Hello {{Deal.Contact.Name}},\n\nthank you for your order. Your invoice "
                             "{{Rule.invoice.number}} of {{Rule.invoice.total}} {{Rule.invoice.currency}} is attached; you can "
                             "also view it here: {{Rule.invoice.public_url}}\n\n{{Deal.Responsible.Name}}\n"
                             "{{Constants.Shop}}",
                     "attachments": ["invoice"],
                 }},
            ]},
            "INVOICE": {
                "rules": [
                    {"name": "warehouse", "type": "create_task", "condition": PAID_IN_FULL,
                     "settings": {"title": "Prepare order “{{Deal.Title}}” for shipping",
                                  "description": "Paid in full. Client: {{Deal.Contact.Name}}, {{Deal.Contact.Phone}}",
                                  "responsible_id": "{{Constants.Warehouse}}", "deadline": "+1d"}},
                ],
                "triggers": [{"name": "paid", "type": "payment_received", "condition": PAID_IN_FULL}],
            },
            "WON": {"rules": [
                {"name": "to delivery", "type": "copy_deal",
                 "settings": {"pipeline_id": shop.delivery["id"], "stage": "NEW", "title": "Delivery: {{Deal.Title}}"}},
                {"name": "repeat", "type": "create_repeat_lead", "delay": delays["repeat"],
                 "settings": {"title": "Follow-up: how is the sofa, {{Deal.Contact.Name}}?",
                              "pipeline_id": shop.leads["id"]}},
            ]},
        },
    }


DELIVERY_AUTOMATION = {"stages": {"NEW": {"rules": [
    {"name": "on its way", "type": "send_sms",
     "settings": {"text": "Hello {{Deal.Contact.Name}}, your order is being prepared for delivery. We will call "
                          "you to agree on the day."}},
]}}}

LEADS_AUTOMATION = {"stages": {"NEW": {"rules": [
    {"name": "call", "type": "create_task",
     "settings": {"title": "Call {{Lead.Contact.Name}} ({{Lead.Contact.Phone}}): {{Lead.Title}}"}},
]}}}


async def load_shop(http: httpx.AsyncClient, delays: dict[str, str] = DEMO_DELAYS) -> Shop:
    """Users, my company, the client with requisites, the three pipelines and their automation."""
    supervisor = await _user(http, "Sofia Supervisor", email="sofia@furniture.example")
    shop = Shop(
        supervisor=supervisor,
        manager=await _user(http, "Marek Manager", email="marek@furniture.example", phone="+48 600 100 200",
                            supervisor_id=supervisor["id"]),
        warehouse=await _user(http, "Wiktor Warehouse", email="warehouse@furniture.example"),
        contact=await _find(http, "/contacts", CLIENT["name"]) or ok(await http.post("/contacts", json=CLIENT), 201),
        sales=await _pipeline(http, "deal", "Sales", SALES),
        delivery=await _pipeline(http, "deal", "Delivery", DELIVERY),
        leads=await _pipeline(http, "lead", "Leads", LEADS),
    )
    ok(await http.put(f"/contacts/{shop.contact['id']}/requisites", json=CLIENT_REQUISITES))
    ok(await http.put("/settings/company", json=MY_COMPANY))
    ok(await http.put(f"/pipelines/{shop.delivery['id']}/automation", json=DELIVERY_AUTOMATION))
    ok(await http.put(f"/pipelines/{shop.leads['id']}/automation", json=LEADS_AUTOMATION))
    ok(await http.put(f"/pipelines/{shop.sales['id']}/automation", json=sales_automation(shop, delays)))
    return shop


async def web_form_order(http: httpx.AsyncClient, shop: Shop, title: str, **extra: Any) -> dict[str, Any]:
    """What the shop's web form posts: a deal in the first stage of Sales."""
    products = extra.pop("products", PRODUCTS)
    body = {"title": title, "pipeline_id": shop.sales["id"], "responsible_id": shop.manager["id"],
            "contact_id": shop.contact["id"], "amount": order_total(products), "currency": "EUR",
            "products": products, **extra}
    return ok(await http.post("/deals", json=body), 201)


SHOP_STORY = [
    {"at": "+2d", "move": "PREPARE_DOCUMENTS"},
    {"at": "+4d", "payment": {"amount": order_total(PRODUCTS), "currency": "EUR"}},
    {"at": "+6d", "move": "WON"},
]
"""A deal of the shop: left two days in "New" (the supervisor hears of it after 24 hours), its documents
prepared, paid two days later (the trigger moves it to "Invoice"), won two days after that."""


def shop_simulation(shop: Shop, horizon: str = "7mo") -> dict[str, Any]:
    """The request that simulates `SHOP_STORY` for a sample deal of the shop over `horizon`."""
    return {
        "pipeline_id": shop.sales["id"],
        "item": {"title": "Living room set", "amount": order_total(PRODUCTS), "currency": "EUR", "products": PRODUCTS,
                 "responsible_id": shop.manager["id"], "contact_id": shop.contact["id"]},
        "script": SHOP_STORY,
        "horizon": horizon,
    }


SHOWN_KINDS = ("stage_changed", "rule_done", "rule_failed", "event_received")


def simulation_table(answer: dict[str, Any]) -> str:
    """A simulation's timeline, as a short table: stage changes, rules done or failed, events."""
    start = datetime.fromisoformat(answer["started_at"])
    lines = [f"  {'when':<10} {'date':<10}  {'item':<16} what"]
    for entry in answer["timeline"]:
        if entry["kind"] not in SHOWN_KINDS:
            continue
        ref = entry["item"]["ref"]
        item = entry["item"]["entity"] + ("" if ref == "item" else f" ({ref})")
        lines.append(f"  {time_after(start, datetime.fromisoformat(entry['at'])):<10} {entry['at'][:10]}  {item:<16} {entry['text']}")
    return "\n".join(lines)


async def simulate(http: httpx.AsyncClient, shop: Shop) -> dict[str, Any]:
    """The shop's story for a sample deal over seven months, with the shop's real delays (a draft: the saved
    automation keeps the demo's short ones)."""
    body = {**shop_simulation(shop), "automation": sales_automation(shop, SHOP_DELAYS)}
    return ok(await http.post("/simulations", json=body, timeout=120))


async def _wait(what: str, check, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.5)
    raise SystemExit(f"gave up waiting for {what} after {timeout:.0f}s; is the worker running (make run)?")


async def _stage(http: httpx.AsyncClient, deal_id: int, stage: str) -> bool:
    return ok(await http.get(f"/deals/{deal_id}"))["stage"] == stage


async def walk(http: httpx.AsyncClient, shop: Shop) -> dict[str, Any]:
    """Creates three orders and takes the first one from the web form to "Won"."""
    order = await web_form_order(http, shop, "Living room set for Anna Nowak")
    waiting = await web_form_order(http, shop, "Dining table Lund", products=[
        {"name": "Dining table Lund", "quantity": 1, "price": 640, "tax": 23}])
    await web_form_order(http, shop, "Bookcase Tromsø", products=[
        {"name": "Bookcase Tromsø", "quantity": 1, "price": 310, "tax": 23}])
    deal_id = order["id"]
    say(f"deal {deal_id} came in from the web form; waiting for the SMS")
    await _wait("the SMS", lambda: _messages(http, deal_id, "sms"))

    ok(await http.post(f"/deals/{deal_id}/move", json={"stage": "PREPARE_DOCUMENTS"}))
    say("moved to Prepare documents; waiting for the invoice email")
    await _wait("the invoice email", lambda: _messages(http, deal_id, "email"))

    total = order["amount"]
    ok(await http.post(f"/deals/{deal_id}/payments", json={"amount": 100, "currency": "EUR"}), 200, 202)
    say(f"a deposit of 100 EUR reported: {total - 100:.2f} EUR still to pay, so the deal stays")
    ok(await http.post(f"/deals/{deal_id}/payments", json={"amount": round(total - 100, 2), "currency": "EUR"}),
       200, 202)
    say("the rest paid; waiting for the trigger to move the deal to Invoice")
    await _wait("the payment trigger", lambda: _stage(http, deal_id, "INVOICE"))
    await _wait("the warehouse task", lambda: _tasks(http, deal_id))

    ok(await http.post(f"/deals/{deal_id}/move", json={"stage": "WON"}))
    say("moved to Won; waiting for the copy in Delivery")
    copies = await _wait("the delivery copy", lambda: _copies(http, shop.delivery["id"], deal_id))
    return {"deal": order, "copy": copies[0], "waiting": waiting}


async def _messages(http: httpx.AsyncClient, deal_id: int, channel: str) -> list[dict]:
    return ok(await http.get("/messages", params={"deal_id": deal_id, "channel": channel, "status": "sent"}))


async def _tasks(http: httpx.AsyncClient, deal_id: int) -> list[dict]:
    return ok(await http.get("/tasks", params={"deal_id": deal_id}))


async def _copies(http: httpx.AsyncClient, pipeline_id: int, deal_id: int) -> list[dict]:
    deals = ok(await http.get("/deals", params={"pipeline_id": pipeline_id, "limit": 500}))
    return [deal for deal in deals if deal["source_item_id"] == deal_id and deal["stage"] is not None]


def say(text: str) -> None:
    print(f"demo | {text}", flush=True)


def api_key(explicit: str | None) -> tuple[str, str]:
    """The admin key, and how a shell names the one in use: `--key`, STAGEFLOW_API_KEY, or <data dir>/api_key."""
    if explicit:
        return explicit, "<the key given with --key>"
    if os.environ.get("STAGEFLOW_API_KEY"):
        return os.environ["STAGEFLOW_API_KEY"], "$STAGEFLOW_API_KEY"
    data_dir = os.environ.get("STAGEFLOW_DATA_DIR", "data")
    path = Path(data_dir) if Path(data_dir).is_absolute() else ROOT / data_dir
    key_file = path / "api_key"
    if key_file.exists():
        return key_file.read_text().strip(), f"$(cat {Path(data_dir) / 'api_key'})"
    raise SystemExit(f"no API key: set STAGEFLOW_API_KEY, pass --key, or start `make run` (it writes {key_file})")


async def main(url: str, key: str, key_source: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        try:
            health = (await http.get("/health")).json()
        except httpx.HTTPError as error:
            raise SystemExit(f"stageflow is not answering at {url} ({error}); start it with `make run`") from None
        if health.get("status") != "ok":
            raise SystemExit(f"stageflow at {url} is not healthy: {health}")
        shop = await load_shop(http)
        say(f"loaded pipelines Sales #{shop.sales['id']}, Delivery #{shop.delivery['id']}, Leads #{shop.leads['id']}")
        walked = await walk(http, shop)
        simulated = await simulate(http, shop)
    deal_id, copy_id, waiting_id = walked["deal"]["id"], walked["copy"]["id"], walked["waiting"]["id"]
    ui = os.environ.get("TEMPORAL_UI_URL", f"http://localhost:{os.environ.get('TEMPORAL_UI_PORT', '8233')}")
    data_dir = os.environ.get("STAGEFLOW_DATA_DIR", "data")
    print(
        "\n".join([
            "",
            "What to look at:",
            f"  the deal's story        {url}/deals/{deal_id}/timeline",
            f"  SMS and email sent      {url}/messages?deal_id={deal_id}",
            f"  the invoice             {url}/documents?deal_id={deal_id}   (public_url opens without a key)",
            f"  the warehouse task      {url}/tasks?deal_id={deal_id}",
            f"  the delivery copy       {url}/deals/{copy_id}   and its SMS at {url}/messages?deal_id={copy_id}",
            f"  the repeat lead         {url}/leads?pipeline_id={shop.leads['id']}"
            f"   (appears {DEMO_DELAYS['repeat']} after Won)",
            f"  what is still waiting   {url}/deals/{waiting_id}/pending   (its supervisor is notified after "
            f"{DEMO_DELAYS['late']})",
            f"  notifications           {url}/notifications?user_id={shop.supervisor['id']}",
            f"  workflows               {ui}/namespaces/default/workflows   (deal-{deal_id}, deal-{deal_id}/entry-4 …)",
            f"  the emails              {data_dir}/mail/*.eml",
            f"  API docs                {url}/docs",
            f"  every route but public links needs  -H \"Authorization: Bearer {key_source}\"",
        ]),
        flush=True,
    )
    print(
        f"\nThe shop's next seven months for a sample deal, with its real delays (24 h, 6 months), simulated in "
        f"{simulated['wall_ms'] / 1000:.1f} s on the real workflow code (nothing sent, nothing saved; "
        f"POST /simulations):\n" + simulation_table(simulated),
        flush=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    port = os.environ.get("STAGEFLOW_PORT", "8000")
    parser.add_argument("--url", default=f"http://localhost:{port}", help="the stageflow API (default: %(default)s)")
    parser.add_argument("--key", default=None, help="an admin API key (default: STAGEFLOW_API_KEY or data/api_key)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.url.rstrip("/"), *api_key(arguments.key)))
