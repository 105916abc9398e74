"""The admin's console in headless Chromium: the person deals are given to added on the People page, a pipeline
made and changed in the browser (three stages, one renamed, one removed with its deal moved to another), a rule whose condition is built in the builder (no JSON typed) and
tried on a draft before it is saved, a bad condition that keeps every input, a deal worked on its page (amount
edited, moved, commented, its task completed, archived and restored), and a member's refused page. Screenshots of
each page go to docs/screenshots/."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.console.conftest import SCREENSHOTS
from tests.console.test_console_browser import create_deal, new_piece, sign_in
from tests.crm import deal, eventually, ok, pipeline, timeline, user
from tests.stacks import ADMIN_KEY, MEMBER_KEY

CONDITION = {"all": [{"field": "Deal.Amount", "op": ">", "value": 1000},
                     {"field": "Deal.Currency", "op": "in", "value": ["EUR", "PLN"]}]}


async def _condition_row(page: Page, number: int, field: str, op: str, value: str) -> None:
    """Row `number` (from 0) of the builder's first group, filled in as a person does: field, operator, value."""
    row = page.locator(".condition-builder .c-row").nth(number)
    await row.locator(".c-field").fill(field)
    await row.locator(".c-op").select_option(op)
    await row.locator(".c-value").first.fill(value)


async def test_an_admin_makes_a_pipeline_and_works_a_deal_in_the_console(console, page, browser):
    url, http = console.extras["url"], console.http
    await sign_in(page, url, ADMIN_KEY)

    # The person deals are given to, added on the People page.
    await page.click("nav >> text=People")
    await expect(page.locator("table.people")).to_contain_text("No one yet")
    await page.fill("#u-name", "Marek Manager")
    await page.fill("#u-email", "marek@example.com")
    await page.click("text=Add person")
    await expect(page.locator("#saved")).to_contain_text("Marek Manager added.")
    await page.screenshot(path=str(SCREENSHOTS / "people.png"), full_page=True)
    [manager] = [person for person in ok(await http.get("/users")) if person["name"] == "Marek Manager"]
    assert manager["email"] == "marek@example.com"

    # A pipeline with three stages, made in the console; the codes are made from the names.
    await page.goto(f"{url}/ui/pipelines")
    await page.fill("#p-name", "Furniture orders")
    for number, name in enumerate(["New order", "Invoice", "Won"]):
        await page.locator("input[name=stage_name]").nth(number).fill(name)
    await page.screenshot(path=str(SCREENSHOTS / "pipelines.png"), full_page=True)
    await page.click("text=Create pipeline")
    await expect(page.locator("h1")).to_contain_text("Furniture orders")
    [made] = [row for row in ok(await http.get("/pipelines")) if row["name"] == "Furniture orders"]
    assert [(stage["code"], stage["name"]) for stage in made["stages"]] == [
        ("NEW_ORDER", "New order"), ("INVOICE", "Invoice"), ("WON", "Won")]
    p = made["id"]

    # One stage renamed, another given its kind.
    invoice_row = page.locator("tr[data-stage=INVOICE] form.change")
    await invoice_row.locator("input[name=name]").fill("Invoice sent")
    await invoice_row.locator("button").click()
    await expect(page.locator("#saved")).to_contain_text("Invoice renamed Invoice sent")
    won_row = page.locator("tr[data-stage=WON] form.change")
    for kind, said in (("failure", "Won now counts as lost"), ("success", "Won now counts as won")):
        await won_row.locator("select[name=semantic]").select_option(kind)
        await won_row.locator("button").click()
        await expect(page.locator("#saved")).to_contain_text(said)
    stages = {stage["code"]: stage for stage in ok(await http.get(f"/pipelines/{p}"))["stages"]}
    assert (stages["INVOICE"]["name"], stages["WON"]["semantic"]) == ("Invoice sent", "success")
    await page.screenshot(path=str(SCREENSHOTS / "stages.png"), full_page=True)

    # Two rules on "Invoice sent": a task at once, and a reminder three days on under a condition built in rows.
    await page.goto(f"{url}/ui/pipelines/{p}")
    await new_piece(page, "INVOICE", "rule", "create_task", "send invoice")
    await page.fill("input[name='settings.title']", "Send the invoice for {{Deal.Title}}")
    await page.click("text=Save rule")
    await expect(page.locator("#saved")).to_contain_text("send invoice")
    await expect(page.locator("section[data-stage=INVOICE] .rule .meta").first).to_contain_text("Create task")

    await new_piece(page, "INVOICE", "rule", "add_timeline_entry", "remind")
    await page.fill("textarea[name='settings.text']", "Remind {{Deal.Responsible.Name}} of {{Deal.Title}}")
    await page.select_option("select[name=delay_kind]", "after")
    await page.fill("input[name=delay_after]", "3d")
    await expect(page.locator("input[name=delay_field]")).to_be_hidden()
    await page.click(".condition-builder .c-add-row")
    await _condition_row(page, 0, "Deal.Amont", ">", "1000")
    await page.click(".condition-builder .c-add-row")
    await _condition_row(page, 1, "Deal.Currency", "in", "EUR, PLN")
    await page.click("text=Save rule")

    # The typo in the field is refused next to the condition; everything typed is still there.
    await expect(page.locator("#condition-error")).to_contain_text("Condition")
    await expect(page.locator("#condition-error")).to_contain_text("Deal.Amont")
    assert await page.input_value("input[name=name]") == "remind"
    assert await page.input_value("textarea[name='settings.text']") == "Remind {{Deal.Responsible.Name}} of {{Deal.Title}}"
    assert await page.input_value("select[name=delay_kind]") == "after"
    assert await page.input_value("input[name=delay_after]") == "3d"
    rows = page.locator(".condition-builder .c-row")
    await expect(rows).to_have_count(2)
    assert await rows.nth(0).locator(".c-field").input_value() == "Deal.Amont"
    assert await rows.nth(1).locator(".c-op").input_value() == "in"
    assert await rows.nth(1).locator(".c-value").input_value() == "EUR, PLN"
    rules = ok(await http.get(f"/pipelines/{p}/automation"))["stages"]["INVOICE"]["rules"]
    assert [rule["name"] for rule in rules] == ["send invoice"]

    # Corrected, then tried on a sample deal before saving: the table shows the reminder three days on.
    await rows.nth(0).locator(".c-field").fill("Deal.Amount")
    await page.fill("input[name=sample_amount]", "1500")
    await page.fill("input[name=sample_currency]", "EUR")
    await page.click("text=Simulate this draft")
    await expect(page.locator("#simulation tr", has_text="Rule remind")).to_contain_text("done", timeout=60_000)
    await expect(page.locator("#simulation tr", has_text="Rule remind")).to_contain_text("+3d")
    await expect(page.locator("#simulation tr", has_text="Rule remind")).to_contain_text("(Add history entry)")
    assert await page.input_value("input[name=delay_after]") == "3d"
    await page.screenshot(path=str(SCREENSHOTS / "rule.png"), full_page=True)
    assert len(ok(await http.get(f"/pipelines/{p}/automation"))["stages"]["INVOICE"]["rules"]) == 1
    await page.click("text=Save rule")
    await expect(page.locator("#saved")).to_contain_text("remind")
    await expect(page.locator("section[data-stage=INVOICE] .rule .condition").last).to_contain_text("Deal.Amount is more than 1000")
    remind = ok(await http.get(f"/pipelines/{p}/automation"))["stages"]["INVOICE"]["rules"][1]
    assert (remind["condition"], remind["delay"]) == (CONDITION, "3d")

    # A deal, made on its board and edited on its page: one field_changed entry, from → to.
    await page.goto(f"{url}/ui/pipelines/{p}/items")
    deal_id = await create_deal(page, "Oak table", "1500", "EUR", manager["id"])
    await page.fill("#f-amount", "2000")
    await page.click("text=Save fields")
    await expect(page.locator("#timeline")).to_contain_text("Changed amount 1500 → 2000")
    changed = await timeline(http, deal_id, kind="field_changed")
    assert [entry["text"] for entry in changed] == ["Changed amount 1500 → 2000"]
    assert "moved nothing" not in await page.locator("#timeline").inner_text()

    # Moved on its page, commented, its task completed.
    await page.select_option("#move-form select[name=stage]", "INVOICE")
    await page.click("#move-form button")
    await expect(page.locator("#item-stage")).to_have_text("Invoice sent")
    await expect(page.locator("#pending-rules")).to_contain_text("remind", timeout=15_000)
    await expect(page.locator("#pending-rules")).to_contain_text("waiting for its time")
    await expect(page.locator("#timeline")).to_contain_text("Stage New order → Invoice sent (moved by user)")
    await expect(page.locator("#timeline")).to_contain_text("Rule remind (Add history entry) scheduled, due 20")
    assert ".0" not in (await page.locator("#timeline").inner_text()).split("scheduled, due")[1][:25]
    await eventually(lambda: _tasks(http, deal_id))
    await page.reload()
    await page.fill("#comment-form textarea", "Client asked for delivery on Friday")
    await page.click("#comment-form button")
    await expect(page.locator("#timeline")).to_contain_text("Client asked for delivery on Friday")
    await page.click("ul.tasks >> text=Done")
    await expect(page.locator("ul.tasks")).to_contain_text("completed")
    [task] = await _tasks(http, deal_id)
    assert (task["title"], task["status"]) == ("Send the invoice for Oak table", "completed")
    await page.screenshot(path=str(SCREENSHOTS / "item-edit.png"), full_page=True)

    # Archived: its waiting reminder is cancelled, it leaves the board; restored, it is back.
    await page.click("#archive-form button")
    await expect(page.locator("#archived")).to_be_visible()
    await eventually(lambda: _cancelled(http, deal_id))
    await page.reload()
    await expect(page.locator("#timeline")).to_contain_text("Rule remind cancelled: the item was archived")
    await page.goto(f"{url}/ui/pipelines/{p}/items")
    await expect(page.locator("li.item")).to_have_count(0)
    await page.goto(f"{url}/ui/items/deal/{deal_id}")
    await page.click("#archive-form button")
    await expect(page.locator("#archived")).to_have_count(0)
    seen = ok(await http.get(f"/deals/{deal_id}"))
    assert (seen["stage"], seen["archived_at"]) == ("INVOICE", None)

    # A stage with a deal in it is removed: without a target it is refused with the count, then its deal goes
    # where the admin says.
    other = await deal(http, p, manager["id"], title="Pine shelf")
    await page.goto(f"{url}/ui/pipelines/{p}/stages")
    asked: list[str] = []

    async def answer(dialog) -> None:
        asked.append(dialog.message)
        await (dialog.accept() if len(asked) > 1 else dialog.dismiss())

    page.on("dialog", answer)
    # Removing asks first: said no to, nothing happens.
    await page.click("tr[data-stage=NEW_ORDER] form.remove button")
    await expect(page.locator("tr[data-stage=NEW_ORDER]")).to_have_count(1)
    assert asked == ["Remove the stage New order? Its 1 deal moves to the stage you chose."]
    await page.click("tr[data-stage=NEW_ORDER] form.remove button")
    await expect(page.locator(".row-error")).to_contain_text(
        "Move its items to: 1 deal is in stage New order (NEW_ORDER): say which stage it goes to")
    await page.select_option("tr[data-stage=NEW_ORDER] select[name=move_items_to]", "WON")
    await page.click("tr[data-stage=NEW_ORDER] form.remove button")
    await expect(page.locator("#saved")).to_contain_text("New order removed")
    assert asked == ["Remove the stage New order? Its 1 deal moves to the stage you chose."] * 3
    page.remove_listener("dialog", answer)
    assert [stage["code"] for stage in ok(await http.get(f"/pipelines/{p}"))["stages"]] == ["INVOICE", "WON"]
    assert ok(await http.get(f"/deals/{other['id']}"))["stage"] == "WON"

    # A member may look, not change: the stages page is a console page that says so; a rule shows as saved, to read.
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    member = await context.new_page()
    try:
        await sign_in(member, url, MEMBER_KEY)
        refused = await member.goto(f"{url}/ui/pipelines/{p}/stages")
        assert refused.status == 403
        await expect(member.locator("h1")).to_have_text("Not for this key")
        await expect(member.locator("header.top")).to_be_visible()
        await member.screenshot(path=str(SCREENSHOTS / "refused.png"), full_page=True)
        await member.goto(f"{url}/ui/pipelines/{p}")
        await member.click("a:text-is('remind')")
        await expect(member.locator("#read-only")).to_have_text("This rule as saved, to read: an admin changes it.")
        await expect(member.locator("#f-name")).to_have_value("remind")
        await expect(member.locator("#f-name")).to_be_disabled()
        await expect(member.locator("button.primary")).to_have_count(0)
        await expect(member.locator("form.delete")).to_have_count(0)
    finally:
        await context.close()


async def _tasks(http, deal_id: int) -> list[dict]:
    return ok(await http.get("/tasks", params={"deal_id": deal_id}))


async def _cancelled(http, deal_id: int) -> list[dict]:
    return [entry for entry in await timeline(http, deal_id, kind="rule_cancelled")
            if entry["rule_name"] == "remind" and entry["data"]["reason"] == "archived"]


NESTED = {"any": [
    {"field": "Deal.Amount", "op": "between", "value": [100, 500]},
    {"all": [{"field": "Deal.Contact.Email", "op": "not empty"},
             {"field": "Deal.Title", "op": "contains", "value": "oak"},
             {"field": "Deal.Currency", "op": "not in", "value": ["USD", "GBP"]}]},
]}


async def test_the_builder_reads_back_any_condition_and_saves_it_unchanged(console, page):
    url, http = console.extras["url"], console.http
    sales = await pipeline(http, ["NEW", "WON"], name="Sales")
    ok(await http.put(f"/pipelines/{sales['id']}/automation", json={"stages": {"NEW": {"rules": [
        {"name": "nested", "type": "add_timeline_entry", "delay": {"field": "close_date", "offset": "-2d", "at": "09:00"},
         "condition": NESTED, "settings": {"text": "Hello"}}]}}}))
    await sign_in(page, url, ADMIN_KEY)
    await page.goto(f"{url}/ui/pipelines/{sales['id']}/automation/rules/NEW/nested")

    root = page.locator(".condition-builder > .group")
    assert await root.locator(":scope > .group-head select").input_value() == "any"
    between = root.locator(":scope > .group-items > .c-row")
    assert await between.locator(".c-op").input_value() == "between"
    assert [await value.input_value() for value in await between.locator(".c-value").all()] == ["100", "500"]
    inner = root.locator(".group.nested")
    assert await inner.locator(".group-head select").input_value() == "all"
    await expect(inner.locator(".c-row")).to_have_count(3)
    await expect(inner.locator(".c-row").nth(0).locator(".c-value")).to_have_count(0)
    assert await inner.locator(".c-row").nth(2).locator(".c-value").input_value() == "USD, GBP"
    assert await page.input_value("select[name=delay_kind]") == "date"
    assert (await page.input_value("select[name=delay_side]"), await page.input_value("input[name=delay_offset]"),
            await page.input_value("input[name=delay_at]")) == ("before", "2d", "09:00")
    await expect(page.locator("input[name=delay_after]")).to_be_hidden()

    await page.click("text=Save rule")
    await expect(page.locator("#saved")).to_contain_text("nested")
    [rule] = ok(await http.get(f"/pipelines/{sales['id']}/automation"))["stages"]["NEW"]["rules"]
    assert rule["condition"] == NESTED
    assert rule["delay"] == {"field": "close_date", "offset": "-2d", "at": "09:00"}

    # A row removed and a group's kind switched in the builder is what is saved.
    await page.goto(f"{url}/ui/pipelines/{sales['id']}/automation/rules/NEW/nested")
    await page.locator(".group.nested .c-row").nth(1).locator(".c-remove").click()
    await page.locator(".group.nested .group-head select").select_option("any")
    await page.click("text=Save rule")
    await expect(page.locator("#saved")).to_contain_text("nested")
    [rule] = ok(await http.get(f"/pipelines/{sales['id']}/automation"))["stages"]["NEW"]["rules"]
    assert rule["condition"] == {"any": [NESTED["any"][0], {"any": [NESTED["any"][1]["all"][0], NESTED["any"][1]["all"][2]]}]}


async def test_channel_rules_are_made_in_the_forms_and_the_item_page_shows_the_clients_identities(console, page):
    url, http = console.extras["url"], console.http
    manager = await user(http, "Marek Manager")
    sales = await pipeline(http, ["NEW", "WON"], name="Sales")
    contact = ok(await http.post("/contacts", json={"name": "Anna Nowak", "phone": "+48601234567",
                                                    "channels": {"telegram": 123456789, "whatsapp": "+48601234567"}}),
                 201)
    await sign_in(page, url, ADMIN_KEY)
    await page.goto(f"{url}/ui/pipelines/{sales['id']}")
    await new_piece(page, "NEW", "rule", "send_channel_message", "telegram hello")
    await page.select_option("select[name='settings.channel']", "telegram")
    await page.fill("textarea[name='settings.text'], input[name='settings.text']", "Hello {{Deal.Contact.Name}}")
    await page.click("text=Save rule")
    await expect(page.locator("section[data-stage=NEW] .rule .meta")).to_contain_text("Send message to a channel")
    await new_piece(page, "WON", "trigger", "call_finished", "missed call")
    await page.select_option("select[name='filter.outcome']", "missed")
    await page.click("text=Save trigger")
    await expect(page.locator("section[data-stage=WON] .trigger .when")).to_contain_text("outcome missed")
    stages = ok(await http.get(f"/pipelines/{sales['id']}/automation"))["stages"]
    assert stages["NEW"]["rules"][0]["settings"]["channel"] == "telegram"
    assert stages["WON"]["triggers"][0]["filter"] == {"outcome": "missed"}

    item = await deal(http, sales["id"], manager["id"], title="Oak table", contact_id=contact["id"])
    await page.goto(f"{url}/ui/items/deal/{item['id']}")
    await expect(page.locator("#client")).to_contain_text("Telegram: 123456789")
    await expect(page.locator("#client")).to_contain_text("WhatsApp: +48601234567")
