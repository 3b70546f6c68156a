"""Screenshots for the README (docs/inbox.png, docs/trace.png, docs/dashboard.png), taken from
demo tickets triaged by the real chain and decided by staff in the browser."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from triage.contracts import TicketIn
from triage.models import Ticket
from triage.services import ticket_ingest, ticket_mark_mishandled

pytestmark = pytest.mark.django_db(transaction=True)


def test_screenshots_of_the_inbox_trace_and_dashboard(page, sign_in, live_server, staff, demo_company, screenshot):
    rng = random.Random(7)
    rows = demo_company.tickets[:60]
    for row in rows:
        ticket_ingest(
            ticket_in=TicketIn(
                source="demo",
                external_id=f"demo-{row.line}",
                body=row.text,
                requester=f"customer{row.line}@example.com",
            ),
            reference_label=row.label,
        )
    now = timezone.now()
    for ticket in Ticket.objects.all():  # spread the intake over two weeks so the trend has a shape
        Ticket.objects.filter(pk=ticket.pk).update(
            created_at=now - timedelta(days=rng.randint(0, 13), hours=rng.randint(0, 8))
        )
    for approval in ApprovalRequest.objects.select_related("ticket"):
        ApprovalRequest.objects.filter(pk=approval.pk).update(created_at=approval.ticket.created_at)
    pending = list(ApprovalRequest.objects.filter(money=False).order_by("pk"))
    assert len(pending) >= 4, "the demo should send some tickets to a person"
    approval_decide(approval_id=pending[0].pk, actor=staff["agent"], verdict="approve")
    approval_decide(approval_id=pending[1].pk, actor=staff["agent"], verdict="reject", reason="Spam")
    edited = pending[2]
    other = next(c for c in ("shipping_delay", "order_status") if c != edited.proposed_category)
    approval_decide(
        approval_id=edited.pk,
        actor=staff["admin"],
        verdict="edit",
        category=other,
        reason="The customer asks about a delay, not the order's status",
    )
    auto = list(Ticket.objects.filter(status=Ticket.Status.AUTO_HANDLED).order_by("pk")[:2])
    ticket_mark_mishandled(ticket_id=auto[0].pk, actor=staff["admin"])

    sign_in(page, "agent")
    page.keyboard.press("j")
    expect(page.locator("[data-inbox-item].is-current")).to_have_count(1)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "inbox.png")

    page.goto(f"{live_server.url}/tickets/{edited.ticket_id}/")
    expect(page.locator(".timeline .step").first).to_be_visible()
    screenshot(page, "trace.png")

    page.goto(f"{live_server.url}/reports/?days=14")
    expect(page.locator("svg polyline")).to_have_count(3)
    screenshot(page, "dashboard.png")
    assert page.js_errors == []
