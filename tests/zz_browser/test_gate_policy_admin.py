"""The gate policy in Django admin, as an admin uses it in a browser: the share of requests no category
covers, previewed on the what-if page and then saved."""

from __future__ import annotations

from playwright.sync_api import expect

from triage.models import GatePolicy


def test_an_admin_previews_a_share_of_out_of_scope_requests_then_saves_it(page, sign_in, demo_company, live_server):
    sign_in(page, "admin")
    page.goto(f"{live_server.url}/admin/triage/gatepolicy/")
    # The page says what the thresholds in force stand for: the policy's default 5%.
    expect(page.locator("#content")).to_contain_text("for traffic in which 5% of requests are ones no category covers")

    # What if every request had a category? Previewed beside what is in force, nothing saved.
    page.get_by_role("link", name="What if?", exact=False).click()
    share = page.get_by_label("share of requests no category covers (%)")
    expect(share).to_have_value("5")  # carried from the policy by the link
    share.fill("0")
    page.get_by_role("button", name="Preview").click()
    table = page.locator("#what-if")
    expect(table.locator("thead")).to_contain_text("in force: 5% at 90%, 5% out of scope")
    expect(table.locator("thead")).to_contain_text("proposed: 5% at 90%, 0% out of scope")
    automated = table.locator("tr", has_text="automated").first.locator("td")
    in_force, proposed = (int(cell.split(" ")[0]) for cell in automated.all_inner_texts())
    assert proposed > in_force  # the unseen-category examples, each a mistake if automated, are left out
    assert GatePolicy.get_solo().out_of_scope_share == 0.05

    # Saved on the policy page: out of range is refused with the reason, then a valid share is kept.
    page.goto(f"{live_server.url}/admin/triage/gatepolicy/")
    field = page.get_by_label("Share of requests no category covers")
    field.fill("0.8")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errorlist")).to_contain_text("less than or equal to 0.5")
    assert GatePolicy.get_solo().out_of_scope_share == 0.05
    page.get_by_label("Share of requests no category covers").fill("0.1")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("changed successfully")
    assert GatePolicy.get_solo().out_of_scope_share == 0.1
    page.goto(f"{live_server.url}/admin/triage/gatepolicy/")
    expect(page.locator("#content")).to_contain_text("for traffic in which 10% of requests are ones no category covers")
    assert not page.js_errors
