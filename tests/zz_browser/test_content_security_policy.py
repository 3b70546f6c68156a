"""The Content-Security-Policy holds on every staff page and the admin: the browser reports no
violation while staff sign in, work the inbox through htmx, read a trace, mark it, page through
reports and use the admin; and the policy really is enforced (an injected inline script is refused)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.factories import build_run
from triage.models import PipelineRun

pytestmark = pytest.mark.django_db(transaction=True)

# Registered before any page script runs: every violation the browser raises lands in window.__csp.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.documentURI}:${e.lineNumber}`);
});
"""


@pytest.fixture
def watched(page):
    """The page, with CSP violations collected from the DOM event and from the console, across navigations."""
    violations: list[str] = []
    page.context.add_init_script(RECORD_VIOLATIONS)
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)

    def collect() -> list[str]:
        found = list(violations)
        # A page mid-navigation has no window to ask; the console still caught it.
        with contextlib.suppress(Exception):
            found += page.evaluate("window.__csp || []")
        return found

    page.csp_violations = collect
    return page


def settle(page) -> list[str]:
    page.wait_for_load_state("networkidle")
    return page.csp_violations()


def test_no_page_of_the_staff_app_or_the_admin_breaks_the_policy(watched, sign_in, live_server, staff):
    page = watched
    auto_ticket, _, _ = build_run(body="How do I reset my password?", category="account_access", auto=True)
    _, _, first = build_run(body="Where is my order TW-1? It is late.", category="order_status")
    _, _, second = build_run(body="My parcel is stuck in transit for ten days.", category="order_status")
    _, _, third = build_run(body="Buy cheap watches at example.biz", category="product_question")
    seen: dict[str, list[str]] = {}

    response = page.goto(f"{live_server.url}/accounts/login/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    seen["login"] = settle(page)

    sign_in(page, "admin")
    seen["inbox"] = settle(page)

    # htmx: a filter link swaps the list, approve swaps a card, reject opens and posts, detail page loads
    page.locator(".filters a", has_text="Order status").first.click()
    expect(page.locator("[data-inbox-item]")).to_have_count(2)
    page.locator(".filters a", has_text="Clear filters").click()
    expect(page.locator("[data-inbox-item]")).to_have_count(3)
    page.locator(f"#approval-{first.pk}").get_by_role("button", name="Approve").click()
    expect(page.locator(f"#approval-{first.pk}")).to_contain_text("Approved by admin")
    page.locator(f"#approval-{second.pk} [data-panel=edit] summary").click()
    page.locator(f"#approval-{second.pk} [data-panel=edit] select[name=category]").select_option("shipping_delay")
    page.locator(f"#approval-{second.pk}").get_by_role("button", name="Save and approve").click()
    expect(page.locator(f"#approval-{second.pk}")).to_contain_text("Edit then approve")
    page.keyboard.press("?")
    expect(page.locator("#keyboard-help")).to_be_visible()
    page.keyboard.press("Escape")
    page.locator(f"#approval-{third.pk} [data-panel=reject] summary").click()
    page.locator(f"#approval-{third.pk} [data-panel=reject] input[name=reason]").fill("Spam")
    page.locator(f"#approval-{third.pk}").get_by_role("button", name="Reject").click()
    expect(page.locator(f"#approval-{third.pk}")).to_contain_text("Rejected")
    expect(page.locator("#pending-count")).to_have_text("0")
    seen["inbox htmx actions"] = settle(page)

    page.goto(f"{live_server.url}/approvals/{first.pk}/")
    seen["approval detail"] = settle(page)

    page.goto(f"{live_server.url}/tickets/{auto_ticket.pk}/")
    page.get_by_role("button", name="Mark as mishandled").click()
    expect(page.locator(".messages")).to_contain_text("Marked as mishandled")
    expect(page.locator("[data-field=mishandled]")).to_contain_text("by admin")
    seen["trace"] = settle(page)

    page.get_by_role("link", name="Reports").click()
    expect(page.locator("svg.svg-chart")).to_have_count(4)
    page.get_by_role("link", name="7 days").click()
    page.locator("#id_start").fill((timezone.localdate() - timedelta(days=20)).isoformat())
    page.get_by_role("button", name="Show").click()
    expect(page.locator("h1")).to_contain_text((timezone.localdate() - timedelta(days=20)).strftime("%-d %b %Y"))
    # the date inputs carry min/max, so the browser would not send this one; a typed URL would
    page.goto(f"{live_server.url}/reports/?start=1000-01-01&end=9999-12-31")
    expect(page.locator("#period-errors")).to_contain_text("cannot be before")
    seen["reports"] = settle(page)

    page.get_by_role("link", name="Admin").click()
    expect(page.locator("#site-name")).to_be_visible()
    seen["admin index"] = settle(page)
    page.goto(f"{live_server.url}/admin/triage/ticket/?status__exact=auto_handled")  # filters: nonce'd <style>
    expect(page.locator("#result_list")).to_be_visible()
    page.locator("#changelist-filter").get_by_role("link", name="All").first.click()
    seen["admin change list"] = settle(page)
    run = PipelineRun.objects.get(ticket_id=auto_ticket.pk)
    page.goto(f"{live_server.url}/admin/triage/pipelinerun/{run.pk}/change/")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    seen["admin change form"] = settle(page)

    page.goto(f"{live_server.url}/no/such/page/")
    seen["404"] = settle(page)

    assert {where: found for where, found in seen.items() if found} == {}
    assert page.js_errors == []


def test_the_policy_is_enforced_an_injected_inline_script_does_not_run(watched, sign_in, live_server):
    page = watched
    sign_in(page, "agent")

    page.evaluate("""() => {
        const s = document.createElement('script');
        s.textContent = 'window.__ran = true';
        document.body.appendChild(s);
    }""")

    assert page.evaluate("window.__ran") is None
    assert any("script-src" in v for v in settle(page))


def test_a_locked_out_sign_in_shows_the_lockout_page_within_the_policy(watched, live_server, staff):
    page = watched
    page.goto(f"{live_server.url}/accounts/login/")
    for _ in range(5):
        page.get_by_label("Username").fill("agent")
        page.get_by_label("Password").fill("wrong-password")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        if page.locator("#locked-out").count():
            break
        page.goto(f"{live_server.url}/accounts/login/")

    expect(page.locator("#locked-out")).to_contain_text("Too many wrong passwords for agent")
    assert settle(page) == []
