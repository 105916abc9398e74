"""The console in headless Chromium: signing in, building a two-stage automation through the forms (a bad delay
refused next to its field), creating a deal, dragging it to the next stage, its timeline and the Temporal UI link,
and a simulation from the board. Screenshots of the board and of the item's page go to docs/screenshots/."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.console.conftest import SCREENSHOTS
from tests.crm import eventually, ok, pipeline, user
from tests.stacks import ADMIN_KEY, MEMBER_KEY


async def sign_in(page: Page, url: str, key: str) -> None:
    await page.goto(f"{url}/ui/")
    await page.fill("input[name=api_key]", key)
    await page.click("button[type=submit]")


async def new_piece(page: Page, stage: str, what: str, kind: str, name: str) -> None:
    """From the board: a new rule or trigger of type `kind` on `stage`, its form open with `name` filled in."""
    await page.click(f"section[data-stage={stage}] >> text=+ {what}")
    await page.select_option("select[name=type]", kind)
    await page.click("text=Next")
    await page.fill("input[name=name]", name)


async def create_deal(page: Page, title: str, amount: str, currency: str, responsible_id: int) -> int:
    """From a deals board: a new deal through the board's form; its page open. Its id."""
    await page.click("summary")
    await page.fill("input[name=title]", title)
    await page.fill("input[name=amount]", amount)
    await page.fill("input[name=currency]", currency)
    await page.select_option("select[name=responsible_id]", str(responsible_id))
    await page.click("form.inline >> text=Create")
    await expect(page.locator("h1")).to_contain_text(title)
    return int(page.url.rsplit("/", 1)[1])


async def drag(page: Page, source: str, target: str) -> None:
    """A mouse drag, as a person does it (SortableJS listens to the pointer)."""
    start = await page.locator(source).bounding_box()
    end = await page.locator(target).bounding_box()
    await page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    await page.mouse.down()
    await page.mouse.move(start["x"] + start["width"] / 2 + 10, start["y"] + start["height"] / 2 + 5, steps=5)
    await page.mouse.move(end["x"] + end["width"] / 2, end["y"] + 12, steps=20)
    await page.mouse.up()


async def test_a_wrong_key_does_not_get_in_and_a_right_one_does(console, page):
    url = console.extras["url"]
    await sign_in(page, url, "not-the-key")
    await expect(page.locator("#login-error")).to_have_text("That API key is not valid.")
    assert page.url.endswith("/ui/login")
    assert [cookie["name"] for cookie in await page.context.cookies()] == ["stageflow_console_login"]

    await sign_in(page, url, MEMBER_KEY)
    await expect(page.locator("h1")).to_have_text("Pipelines")
    [session] = [c for c in await page.context.cookies() if c["name"] == "stageflow_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    await page.click("text=Sign out")
    await expect(page.locator("h1")).to_have_text("Sign in to the automation console")
    await page.goto(f"{url}/ui/pipelines")
    assert page.url.endswith("/ui/login")


async def test_build_an_automation_move_a_deal_and_follow_its_story(console, page):
    url, http = console.extras["url"], console.http
    manager = await user(http, "Marek Manager")
    sales = await pipeline(http, ["NEW", "CALLED"], name="Sales")
    await sign_in(page, url, ADMIN_KEY)
    await page.click("text=Sales")
    await expect(page.locator("h1")).to_contain_text("Sales")

    # A rule on NEW through the form: a bad delay is refused next to its field, then saved.
    await new_piece(page, "NEW", "rule", "add_timeline_entry", "greet")
    await page.click("textarea[name='settings.text']")
    await page.click("button.placeholder[data-path='Deal.Title']")
    await page.select_option("select[name=delay_kind]", "after")
    await page.fill("input[name=delay_after]", "soon")
    await page.click("text=Save rule")
    delay_error = page.locator("[data-field=delay] .error")
    await expect(delay_error).to_contain_text("soon")
    await expect(page.locator("#f-delay-after")).to_have_css("border-top-color", "rgb(179, 38, 30)")
    await expect(page.locator("#f-delay-kind")).to_have_css("border-top-color", "rgb(217, 222, 229)")
    assert ok(await http.get(f"/pipelines/{sales['id']}/automation"))["stages"] == {}
    assert await page.input_value("textarea[name='settings.text']") == "{{Deal.Title}}"
    await page.fill("textarea[name='settings.text']", "Welcome, {{Deal.Title}}")
    assert await page.input_value("input[name=delay_after]") == "soon"
    await page.select_option("select[name=delay_kind]", "now")
    await expect(page.locator("input[name=delay_after]")).to_be_hidden()
    await page.click("text=Save rule")
    await expect(page.locator("#saved")).to_contain_text("greet")

    # A second stage: a task on CALLED one day after entry, and a payment trigger.
    await new_piece(page, "CALLED", "rule", "create_task", "call back")
    await page.fill("input[name='settings.title']", "Call {{Deal.Title}} back")
    await page.select_option("select[name=delay_kind]", "after")
    await page.fill("input[name=delay_after]", "1d")
    await page.check("input[name=delay_business_hours]")
    await page.click("text=Save rule")
    await new_piece(page, "CALLED", "trigger", "payment_received", "paid")
    await page.click("text=Save trigger")
    called = page.locator("section[data-stage=CALLED]")
    await expect(called.locator(".rule .when")).to_have_text("1 day after entry, in working hours")
    await expect(called.locator(".trigger .card-title")).to_have_text("paid")
    await expect(called.locator(".trigger .when")).to_have_text("any such event")
    await expect(page.locator("section[data-stage=NEW] .rule .when")).to_have_text("on entry")
    saved = ok(await http.get(f"/pipelines/{sales['id']}/automation"))["stages"]
    assert [rule["name"] for rule in saved["NEW"]["rules"]] == ["greet"]
    assert saved["CALLED"]["rules"][0]["delay"] == {"after": "1d", "business_hours": True}
    assert [trigger["name"] for trigger in saved["CALLED"]["triggers"]] == ["paid"]
    await page.screenshot(path=str(SCREENSHOTS / "board.png"), full_page=True)

    # A deal, made on its board; then dragged to the next stage.
    await page.click("text=Deals board")
    deal_id = await create_deal(page, "Oak table", "1200", "EUR", manager["id"])
    await expect(page.locator("#timeline")).to_contain_text("Welcome, Oak table", timeout=15_000)

    await page.click(".crumbs a")
    await drag(page, "li.item", "ul.item-list[data-stage=CALLED]")
    await expect(page.locator("ul.item-list[data-stage=CALLED] li.item")).to_have_count(1)
    await expect(page.locator("section[data-stage=CALLED] .count")).to_have_text("1")
    await eventually(lambda: _stage(http, deal_id, "CALLED"))
    await page.screenshot(path=str(SCREENSHOTS / "deals.png"), full_page=True)

    await page.click("ul.item-list[data-stage=CALLED] >> text=Oak table")
    await expect(page.locator("#timeline")).to_contain_text("Stage New → Called (moved by user)", timeout=15_000)
    await expect(page.locator("#pending-rules")).to_contain_text("call back")
    await expect(page.locator("#pending-rules")).to_contain_text("waiting for its time")
    await page.screenshot(path=str(SCREENSHOTS / "item.png"), full_page=True)
    await page.select_option("select[name=kind]", "stage_changed")
    await expect(page.locator("#timeline li")).to_have_count(2)
    await expect(page.locator("#timeline li .kind").first).to_have_text("stage changed")

    # NEW's entry ran its one rule as the deal entered NEW: no workflow of its own, its story is the item's workflow.
    first = page.locator("ul.entries-links li").first
    await expect(first).to_contain_text("finished as it entered, in the item's workflow")
    await expect(first).to_contain_text("its rules: 1 done")
    await expect(first).to_contain_text(" to ")
    await expect(page.locator("ul.entries-links li").last).to_contain_text("Called, since")
    await expect(page.locator("ul.entries-links li").last).to_contain_text("(current); its rules: 1 waiting")
    assert (await first.locator("a").get_attribute("href")).endswith(f"/namespaces/default/workflows/deal-{deal_id}")
    # The stage entry's workflow in the Temporal UI.
    link = page.locator("a.temporal-link").last
    href = await link.get_attribute("href")
    assert href.endswith(f"/namespaces/default/workflows/deal-{deal_id}%2Fentry-2")
    async with page.context.expect_page() as opened:
        await link.click()
    temporal = await opened.value
    await temporal.wait_for_load_state()
    assert temporal.url.startswith(href.split("/namespaces")[0])
    await expect(temporal.locator("body")).to_contain_text(f"deal-{deal_id}/entry-2", timeout=30_000)


async def _stage(http, deal_id: int, stage: str) -> bool:
    return ok(await http.get(f"/deals/{deal_id}"))["stage"] == stage


async def test_a_refused_move_is_shown_and_the_card_goes_back(console, page):
    url, http = console.extras["url"], console.http
    manager = await user(http, "Marek Manager")
    sales = await pipeline(http, ["NEW", "WON"], name="Sales")
    ok(await http.put(f"/pipelines/{sales['id']}/automation", json={"stages": {"NEW": {"rules": [
        {"name": "note", "type": "add_timeline_entry", "settings": {"text": "hi"}}]}}}))
    deal = ok(await http.post("/deals", json={"title": "Chair", "pipeline_id": sales["id"],
                                              "responsible_id": manager["id"]}), 201)
    await sign_in(page, url, MEMBER_KEY)
    await page.goto(f"{url}/ui/pipelines/{sales['id']}/items")
    await console.env.client.get_workflow_handle(f"deal-{deal['id']}").terminate("gone for the test")
    await drag(page, "li.item", "ul.item-list[data-stage=WON]")
    await expect(page.locator("#notice")).to_contain_text("The move was refused")
    await expect(page.locator("ul.item-list[data-stage=NEW] li.item")).to_have_count(1)
    assert ok(await http.get(f"/deals/{deal['id']}"))["stage"] == "NEW"


async def test_simulate_from_the_board(console, page):
    url, http = console.extras["url"], console.http
    await user(http, "Marek Manager")
    sales = await pipeline(http, ["NEW", "CALLED"], name="Sales")
    ok(await http.put(f"/pipelines/{sales['id']}/automation", json={"stages": {
        "NEW": {"rules": [{"name": "late", "type": "add_timeline_entry", "delay": "3d", "settings": {"text": "Late!"}}]},
        "CALLED": {"rules": [], "triggers": [{"name": "paid", "type": "payment_received"}]},
    }}))
    await sign_in(page, url, ADMIN_KEY)
    await page.goto(f"{url}/ui/pipelines/{sales['id']}")
    await page.click("text=Simulate")
    await page.fill("textarea[name=script]", "+5d payment 100")
    await page.fill("input[name=horizon]", "2mo")
    await page.locator("form.piece").get_by_role("button", name="Simulate", exact=True).click()
    result = page.locator("#simulation")
    await expect(result).to_contain_text("ends in Called")
    await expect(result).to_contain_text("Rule late (Add history entry) done")
    await expect(result).to_contain_text("Stage New → Called (moved by trigger paid)")
    assert ok(await http.get("/deals")) == []
