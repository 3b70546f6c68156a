"""The staff app in a real headless Chromium: sign in, work the inbox with the keyboard, decide,
read the trace and the dashboard; hostile ticket text stays text; the money permission holds."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from approvals.models import ApprovalRequest, Decision
from tests.factories import build_run, snapshot
from triage.models import Action, PipelineRun, Ticket

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = (
    '<script>window.__pwned = 1; alert("pwned")</script><img src=x onerror="window.__pwned = 2"> '
    "<b>not bold</b> [click me](javascript:alert(1)) " + "W" * 300 + " \u202eevil\u202c مرحبا 🙂👍🏽"
)


def has_class(name: str) -> re.Pattern[str]:
    return re.compile(rf"(^|\s){re.escape(name)}(\s|$)")


def card(page, approval):
    return page.locator(f"#approval-{approval.pk}")


def test_an_agent_signs_in_and_works_the_inbox_with_the_keyboard(page, sign_in, staff):
    _, _, first = build_run(body="Where is my order TW-1? It is late.", category="order_status")
    _, _, second = build_run(body="My parcel is stuck in transit for ten days.", category="order_status")
    _, _, third = build_run(body="Buy cheap watches at example.biz", category="product_question")
    sign_in(page, "agent")
    expect(page.locator("[data-inbox-item]")).to_have_count(3)
    order = [
        int(x) for x in page.locator("[data-inbox-item]").evaluate_all("els => els.map(e => e.dataset.approvalId)")
    ]
    by_pk = {a.pk: a for a in (first, second, third)}
    top, middle, bottom = (by_pk[pk] for pk in order)

    page.keyboard.press("?")
    expect(page.locator("#keyboard-help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#keyboard-help")).to_be_hidden()

    # j selects the first item, a approves it in place; the selection moves on to the next pending one.
    page.keyboard.press("j")
    expect(card(page, top)).to_have_class(has_class("is-current"))
    page.keyboard.press("a")
    expect(card(page, top)).to_have_class(has_class("card-decided"))
    expect(card(page, top)).to_contain_text("Approved by agent")
    expect(card(page, middle)).to_have_class(has_class("is-current"))
    expect(page.locator("#pending-count")).to_have_text("2")

    # e opens the edit form with the reply focused; Enter in the note field saves and approves.
    page.keyboard.press("e")
    reply = card(page, middle).locator("textarea[name=reply]")
    expect(reply).to_be_focused()
    reply.fill("Your parcel is moving again; it arrives on Friday.")
    card(page, middle).locator("select[name=category]").select_option("shipping_delay")
    card(page, middle).locator("[data-panel=edit] input[name=reason]").focus()
    page.keyboard.type("A delay, not a status question")
    page.keyboard.press("Enter")
    expect(card(page, middle)).to_contain_text("Edit then approve")
    expect(card(page, bottom)).to_have_class(has_class("is-current"))

    # k goes back up, j down again; r opens the rejection with the reason focused.
    page.keyboard.press("k")
    expect(card(page, middle)).to_have_class(has_class("is-current"))
    page.keyboard.press("j")
    expect(card(page, bottom)).to_have_class(has_class("is-current"))
    page.keyboard.press("r")
    expect(card(page, bottom).locator("[data-panel=reject] input[name=reason]")).to_be_focused()
    page.keyboard.type("Spam")
    page.keyboard.press("Enter")
    expect(card(page, bottom)).to_contain_text("Rejected")
    expect(page.locator("#pending-count")).to_have_text("0")

    verdicts = dict(Decision.objects.values_list("approval_id", "verdict"))
    assert verdicts == {top.pk: "approve", middle.pk: "edit", bottom.pk: "reject"}
    edited = Decision.objects.get(approval=middle)
    assert edited.after["category"] == "shipping_delay" and edited.reason == "A delay, not a status question"
    # each decision resumed its run, which carried out exactly what was decided, once
    assert Action.objects.filter(run_id=top.run_id, kind="send_reply").count() == 1
    assert (
        Action.objects.get(run_id=middle.run_id, kind="send_reply").payload["body"].startswith("Your parcel is moving")
    )
    assert not Action.objects.filter(run_id=bottom.run_id).exists()
    assert set(PipelineRun.objects.values_list("status", flat=True)) == {PipelineRun.Status.COMPLETED}
    assert page.js_errors == []


def test_the_inbox_works_without_javascript(browser, live_server, staff):
    _, _, approval = build_run(body="Where is my order?", category="order_status")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_server.url}/?gate=confidence")
    page.get_by_label("Username").fill("agent")
    page.get_by_label("Password").fill("browser-test-pass-1")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Money").wait_for()

    page.get_by_role("link", name="No money 1").click()
    assert "money=no" in page.url and "gate=confidence" in page.url
    card(page, approval).get_by_role("button", name="Approve").click()

    assert "gate=confidence" in page.url and "money=no" in page.url
    assert "Approved: ticket" in page.content()
    assert ApprovalRequest.objects.get(pk=approval.pk).status == "approved"
    context.close()


def test_an_agent_sees_a_money_ticket_but_cannot_approve_it(page, sign_in, live_server):
    _, _, money = build_run(
        body="The grinder arrived cracked. Refund me $80.", category="damaged_or_wrong_item", money=True
    )
    before = snapshot(money)
    sign_in(page, "agent")

    expect(card(page, money)).to_contain_text("approving needs the money-approval permission")
    expect(card(page, money).locator('[data-action="approve"]')).to_have_count(0)
    page.keyboard.press("j")
    page.keyboard.press("a")
    expect(page.locator("#toast")).to_contain_text("money-approval permission")
    # A hand-made POST from the signed-in page (valid CSRF token) is refused too.
    status = page.evaluate(
        """async (url) => {
            const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'];
            const r = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token},
                                        body: new URLSearchParams({verdict: 'approve'})});
            return r.status;
        }""",
        f"{live_server.url}/approvals/{money.pk}/decide/",
    )

    assert status == 403
    assert snapshot(money) == before


def test_someone_with_the_money_permission_approves_a_money_ticket(page, sign_in):
    _, _, money = build_run(body="Please cancel order TW-9 and refund it.", category="cancel_order", money=True)
    sign_in(page, "admin")

    card(page, money).get_by_role("button", name="Approve").click()

    expect(card(page, money)).to_contain_text("Approved by admin")
    assert Action.objects.filter(run_id=money.run_id, kind="cancel_order", status="done").count() == 1


def test_a_script_in_a_ticket_is_shown_as_text_and_never_runs(page, sign_in, live_server):
    ticket, _, approval = build_run(body=HOSTILE, subject="<i>hi</i>", category="order_status")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, "agent")

    body = card(page, approval).locator(".ticket-body")
    expect(body).to_contain_text('<script>window.__pwned = 1; alert("pwned")</script>')
    expect(body).to_contain_text("<b>not bold</b>")
    assert page.evaluate("window.__pwned") is None
    assert card(page, approval).locator("script, img, b").count() == 0
    # the 300-letter word wraps inside the card instead of widening the page
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.goto(f"{live_server.url}/tickets/{ticket.pk}/")
    expect(page.locator(".ticket-body")).to_contain_text("مرحبا 🙂👍🏽")
    assert page.evaluate("window.__pwned") is None and dialogs == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_two_agents_race_for_one_item_one_wins_and_the_other_is_told(browser, live_server, staff, sign_in):
    _, _, approval = build_run(body="Where is my order?", category="order_status")
    pages = []
    for user in ("agent", "admin"):
        context = browser.new_context()
        pages.append(context.new_page())
        sign_in(pages[-1], user)
    first, second = pages

    card(first, approval).get_by_role("button", name="Approve").click()
    expect(card(first, approval)).to_contain_text("Approved by agent")
    second.keyboard.press("j")
    second.keyboard.press("r")
    second.keyboard.type("Not ours")
    second.keyboard.press("Enter")

    expect(card(second, approval).locator('[role="alert"]')).to_contain_text("already approved by agent")
    assert Decision.objects.filter(approval=approval).count() == 1
    for p in pages:
        p.context.close()


def test_staff_read_the_trace_mark_a_ticket_mishandled_and_see_the_dashboard(page, sign_in, live_server):
    auto_ticket, _, _ = build_run(body="How do I reset my password?", category="account_access", auto=True)
    build_run(body="Where is my order?", category="order_status")
    sign_in(page, "agent")

    page.goto(f"{live_server.url}/tickets/{auto_ticket.pk}/")
    expect(page.locator(".timeline .step")).to_have_count(6)
    expect(page.locator(".timeline")).to_contain_text("local classifier first")
    page.get_by_role("button", name="Mark as mishandled").click()
    expect(page.locator(".messages")).to_contain_text("Marked as mishandled")
    assert Ticket.objects.get(pk=auto_ticket.pk).mishandled_at is not None

    page.get_by_role("link", name="Reports").click()
    expect(page.locator('[data-figure="tickets-in"]')).to_have_text("2")
    expect(page.locator('[data-figure="automation-rate"]')).to_have_text("50.0%")
    expect(page.locator('[data-figure="mishandled-rate"]')).to_have_text("50.0%")
    expect(page.locator("svg.svg-chart")).to_have_count(4)
    expect(page.locator("svg polyline")).to_have_count(3)
