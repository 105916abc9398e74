"""Two admins on one pipeline in two browsers: a save made from a version someone else has replaced comes back with
the conflict and what was typed, and loses nothing; a change that touches waiting items asks first (keep or apply);
the history, a version's changes and a restore. Headless Chromium; screenshots to docs/screenshots/."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.console.conftest import SCREENSHOTS
from tests.console.test_console_browser import sign_in
from tests.crm import deal, eventually, ok, pipeline, timeline, user
from tests.stacks import ADMIN_KEY

HELLO = {"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hello"}}
REMIND = {"name": "remind", "type": "add_timeline_entry", "delay": "30d", "settings": {"text": "A month on"}}
CHECK_IN = {"name": "six month check-in", "type": "add_timeline_entry", "delay": "6mo",
            "settings": {"text": "How is the sofa?"}}


async def second_page(browser) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    tab = await context.new_page()
    tab.set_default_timeout(20_000)
    return tab


async def rule_names(http, pipeline_id: int) -> list[str]:
    automation = ok(await http.get(f"/pipelines/{pipeline_id}/automation"))
    return [rule["name"] for rule in automation["stages"]["NEW"]["rules"]]


async def test_a_stale_save_in_one_console_shows_the_conflict_keeps_the_input_and_loses_nothing(console, page, browser):
    url, http = console.extras["url"], console.http
    sales = await pipeline(http, ["NEW", "WON"], name="Sales")
    ok(await http.put(f"/pipelines/{sales['id']}/automation", json={"stages": {"NEW": {"rules": [HELLO, REMIND]}}}))
    other = await second_page(browser)
    try:
        await sign_in(page, url, ADMIN_KEY)
        await sign_in(other, url, ADMIN_KEY)
        # Anna opens "hello" and starts typing; meanwhile Boris deletes "remind".
        await page.goto(f"{url}/ui/pipelines/{sales['id']}")
        await page.click("a:text-is('hello')")
        await page.fill("[name='settings.text']", "Hello from Anna")
        await other.goto(f"{url}/ui/pipelines/{sales['id']}")
        await other.click("a:text-is('remind')")
        await other.click("text=Delete rule")
        await expect(other.locator("#saved")).to_contain_text("deleted remind")
        assert await rule_names(http, sales["id"]) == ["hello"]

        await page.click("text=Save rule")
        await expect(page.locator("#form-error")).to_contain_text("is at version 2")
        await expect(page.locator("#form-error")).to_contain_text("Nothing of yours is saved yet")
        await expect(page.locator("[name='settings.text']")).to_have_value("Hello from Anna")
        await page.screenshot(path=str(SCREENSHOTS / "conflict.png"), full_page=True)
        automation = ok(await http.get(f"/pipelines/{sales['id']}/automation"))
        assert automation["version"] == 2 and automation["stages"]["NEW"]["rules"][0]["settings"]["text"] == "Hello"

        await page.click("text=Save rule")
        await expect(page.locator("#saved")).to_contain_text("rule hello")
        automation = ok(await http.get(f"/pipelines/{sales['id']}/automation"))
        assert automation["version"] == 3 and [r["name"] for r in automation["stages"]["NEW"]["rules"]] == ["hello"]
        assert automation["stages"]["NEW"]["rules"][0]["settings"]["text"] == "Hello from Anna"
    finally:
        await other.context.close()


async def test_removing_a_rule_items_wait_on_asks_first_and_apply_cancels_it_for_them(console, page):
    url, http = console.extras["url"], console.http
    manager = await user(http, "Marek Manager")
    sales = await pipeline(http, ["NEW", "WON"], name="Sales")
    ok(await http.put(f"/pipelines/{sales['id']}/automation", json={
        "stages": {"NEW": {"rules": [HELLO, CHECK_IN]}}, "note": "first rules"}))
    waiting = [await deal(http, sales["id"], manager["id"], title=f"Sofa {n}") for n in range(3)]
    for item in waiting:
        assert await eventually(lambda: _pending(http, item["id"]))

    await sign_in(page, url, ADMIN_KEY)
    await page.goto(f"{url}/ui/pipelines/{sales['id']}")
    await page.click("a:text-is('six month check-in')")
    await page.click("text=Delete rule")
    await expect(page.locator("#waiting")).to_contain_text("3 deals wait on ‘six month check-in’ in New, which you removed")
    await page.screenshot(path=str(SCREENSHOTS / "publish.png"), full_page=True)
    assert await rule_names(http, sales["id"]) == ["hello", "six month check-in"]
    await page.click("text=Apply version 2 to them")
    await expect(page.locator("#saved")).to_contain_text("deleted six month check-in")

    for item in waiting:
        async def cancelled(item_id: int = item["id"]) -> list[dict]:
            return [entry for entry in await timeline(http, item_id)
                    if entry["kind"] == "rule_cancelled" and entry["data"].get("reason") == "removed"]
        [entry] = await eventually(cancelled)
        assert entry["data"]["version"] == 2
        assert ok(await http.get(f"/deals/{item['id']}/pending")) == []

    await page.click("text=History")
    rows = page.locator("#versions tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("moved to these rules")
    await expect(rows.nth(1)).to_contain_text("first rules")
    await expect(rows.nth(1)).to_contain_text("kept the rules they entered with")
    await page.screenshot(path=str(SCREENSHOTS / "history.png"), full_page=True)
    await rows.nth(0).locator("text=changes").click()
    await expect(page.locator("#diff")).to_contain_text("six month check-in")
    await expect(page.locator("#diff")).to_contain_text("removed")
    await page.go_back()
    await page.locator("#versions tbody tr").nth(1).locator("text=Restore").click()
    await expect(page.locator("#saved")).to_contain_text("version 1 restored as version 3")
    assert await rule_names(http, sales["id"]) == ["hello", "six month check-in"]


async def _pending(http, item_id: int) -> list[dict]:
    return ok(await http.get(f"/deals/{item_id}/pending"))
