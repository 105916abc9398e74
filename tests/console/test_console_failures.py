"""The Failures page in headless Chromium: an SMTP outage leaves three deals' emails failed; the page groups them,
counts a dry run, and "Retry these" opens the operation's page, whose progress reaches done, each email sent once."""

from __future__ import annotations

from playwright.async_api import expect

from tests.console.conftest import SCREENSHOTS
from tests.console.test_console_browser import sign_in
from tests.crm import automate, eventually, ok, pipeline, user
from tests.stacks import ADMIN_KEY

DEALS = 3


async def test_failed_emails_are_retried_from_the_failures_page(inbox, console, page):
    url, http = console.extras["url"], console.http
    inbox.refuse("451 4.3.0 mail system down for maintenance")
    manager = await user(http, "Marek Manager")
    flow = await pipeline(http, ["NEW", "WON"], name="Sales")
    await automate(http, flow["id"], {"NEW": {"rules": [
        {"name": "confirm", "type": "send_email",
         "settings": {"subject": "Your order {{Deal.Title}}", "body": "Thanks"}}]}})
    for number in range(DEALS):
        contact = ok(await http.post("/contacts", json={"name": f"Client {number}",
                                                        "email": f"c{number}@example.com"}), 201)
        ok(await http.post("/deals", json={"title": f"Order {number}", "pipeline_id": flow["id"],
                                          "responsible_id": manager["id"], "contact_id": contact["id"]}), 201)

    async def all_failed() -> bool:
        return ok(await http.get("/failures"))["total"] == DEALS

    await eventually(all_failed, timeout=60, interval=0.3)
    await sign_in(page, url, ADMIN_KEY)
    await page.click("header >> text=Failures")
    await expect(page.locator("#total")).to_contain_text(f"{DEALS} failed rules in 1 group")
    group = page.locator(".failure-group")
    await expect(group.locator("h2")).to_contain_text(f"Send email × {DEALS}")
    await expect(group).to_contain_text("451 4.3.0 mail system down")
    await expect(group.locator("li a")).to_have_count(DEALS)

    await page.click("text=Count them")
    await expect(page.locator("#dry-run")).to_contain_text(f"A retry would run {DEALS} rules again")
    await page.screenshot(path=str(SCREENSHOTS / "failures.png"), full_page=True)
    assert inbox.messages == []

    inbox.refuse(None)
    await page.click("#retry-these")
    await expect(page.locator("#state")).to_contain_text(f"Done: {DEALS} of {DEALS} done", timeout=60_000)
    await page.screenshot(path=str(SCREENSHOTS / "operation.png"), full_page=True)
    subjects = sorted(str(message["Subject"]) for message in inbox.messages)
    assert subjects == [f"Your order Order {number}" for number in range(DEALS)]

    await page.click("header >> text=Failures")
    await expect(page.locator("#total")).to_contain_text("0 failed rules")
    await expect(page.locator("#retry-form")).to_have_count(0)
