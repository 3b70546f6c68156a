"""The staff pages of `triage.views`: the ticket trace, staff feedback (mark as mishandled) and the reports page."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals.services import approval_decide
from triage.models import StepRun, Ticket
from triage.services import MishandledMarkError, ticket_mark_mishandled

pytestmark = pytest.mark.django_db


def test_the_trace_shows_every_step_with_its_figures_gates_routing_and_the_human_decision(agent_client, agent, paused):
    approval = paused()
    approval_decide(
        approval_id=approval.pk,
        actor=agent,
        verdict="edit",
        category="shipping_delay",
        reply="Your parcel left the warehouse today.",
        reason="Wrong category",
    )
    StepRun.objects.filter(run_id=approval.run_id, step="draft").update(cost=Decimal("0.001234"))

    page = agent_client.get(reverse("ticket-trace", args=[approval.ticket_id])).content.decode()

    for step in ("Retrieve", "Classify", "Draft", "Validate", "Route"):
        assert f"<h3>{step}" in page
    assert "12.5 ms" in page and "120 in / 40 out tokens" in page and "$0.001234" in page
    assert "draft-digest" in page  # the input digest
    assert "Confidence</span> failed" in page and "Retrieval</span> passed" in page
    assert "<code>local-classifier/test</code> (local classifier first, confidence 0.55)" in page
    assert "Routed <strong>human</strong>" in page
    assert "Edit then approve</strong> by <strong>agent1</strong>" in page and "Wrong category" in page
    assert "Your parcel left the warehouse today." in page  # after
    assert approval.draft.split("\n")[0] in page  # before


def test_the_trace_shows_step_errors_and_attempts(agent_client, paused):
    approval = paused()
    StepRun.objects.create(
        run_id=approval.run_id,
        step="execute",
        attempt=1,
        status=StepRun.Status.FAILED,
        error="TimeoutError: helpdesk did not answer",
        latency_ms=30_000,
    )

    page = agent_client.get(reverse("ticket-trace", args=[approval.ticket_id])).content.decode()

    assert "TimeoutError: helpdesk did not answer" in page and "Failed (may be retried)" in page


def test_staff_mark_an_auto_handled_ticket_as_mishandled_from_its_trace(agent_client, auto_handled):
    ticket = auto_handled()
    page = agent_client.get(reverse("ticket-trace", args=[ticket.pk])).content.decode()
    assert 'data-action="mark-mishandled"' in page

    started = timezone.now()
    response = agent_client.post(reverse("ticket-mishandled", args=[ticket.pk]), follow=True)

    assert started <= Ticket.objects.get(pk=ticket.pk).mishandled_at <= timezone.now()
    assert "Marked as mishandled" in response.content.decode()
    assert 'data-action="mark-mishandled"' not in response.content.decode()


def test_a_ticket_a_person_handled_cannot_be_marked_mishandled(agent, paused):
    approval = paused()

    with pytest.raises(MishandledMarkError):
        ticket_mark_mishandled(ticket_id=approval.ticket_id, actor=agent)

    assert Ticket.objects.get(pk=approval.ticket_id).mishandled_at is None


def test_the_reports_page_draws_its_charts_as_inline_svg(agent_client, paused, auto_handled):
    auto_handled()
    paused()

    page = agent_client.get(reverse("reports") + "?days=7").content.decode()

    assert page.count("<svg") == 4 and "<polyline" in page and '<script src="http' not in page
    assert 'data-figure="automation-rate">50.0%' in page and 'data-figure="tickets-in">2' in page
    assert "Where tickets went" in page and "Chain, predicted" in page


def test_the_reports_period_form_refuses_a_backwards_period(agent_client):
    page = agent_client.get(reverse("reports") + "?start=2026-02-01&end=2026-01-01").content.decode()

    assert "The period must start before it ends." in page


def test_marking_mishandled_records_who_and_when_and_the_trace_shows_it(agent_client, agent, auto_handled):
    ticket = auto_handled()
    before = timezone.now()

    agent_client.post(reverse("ticket-mishandled", args=[ticket.pk]))

    ticket.refresh_from_db()
    assert ticket.mishandled_by == agent and before <= ticket.mishandled_at <= timezone.now()
    page = agent_client.get(reverse("ticket-trace", args=[ticket.pk])).content.decode()
    assert f'marked mishandled by agent1 on <time datetime="{ticket.mishandled_at.isoformat()}">' in page


def relative(query: str) -> str:
    """Fill `{today-N}` with the date N days before today (the form's window moves with the date)."""
    today = timezone.localdate()
    return re.sub(r"\{today-(\d+)\}", lambda m: (today - timedelta(days=int(m.group(1)))).isoformat(), query)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=1000-01-01&end=9999-12-31", "cannot be"),
        ("start=1000-01-01", "The start date cannot be before 1 Jan"),
        ("end=9999-12-31", "The end date cannot be in the future"),
        ("start={today-400}&end={today-34}", "A report covers at most 366 days; this period has 367."),
        ("start=2026-02-01&end=2026-01-01", "The period must start before it ends."),
        ("start=2026-02-30", "Enter a valid date."),
        ("start=0000-01-01", "Enter a valid date."),
        ("end=99999-01-01", "Enter a valid date."),
        ("days=3660", "Ensure this value is less than or equal to 366."),
        ("days=-1", "Ensure this value is greater than or equal to 0."),
        ("days=abc", "Enter a whole number."),
    ],
)
def test_the_reports_period_form_refuses_bad_periods_with_a_400_and_says_why(agent_client, query, message):
    response = agent_client.get(reverse("reports") + "?" + relative(query))

    page = response.content.decode()
    assert response.status_code == 400
    assert 'id="period-errors"' in page and message in page
    assert "Below: the last 30 days." in page and 'data-figure="tickets-in">' in page


def test_the_years_1000_to_9999_period_is_refused_without_reading_the_tickets(
    agent_client, auto_handled, django_assert_max_num_queries
):
    auto_handled()

    with django_assert_max_num_queries(14):
        response = agent_client.get(reverse("reports") + "?start=1000-01-01&end=9999-12-31")

    assert response.status_code == 400
    assert 'data-figure="tickets-in">1<' in response.content.decode()
    assert (response.context["first"], response.context["last"]) == (
        timezone.localdate() - timedelta(days=29),
        timezone.localdate(),
    )


@pytest.mark.parametrize(
    "query",
    ["", "days=7", "days=366", "days=0", "start={today-365}&end={today-0}", "start={today-365}", "end={today-3}"],
)
def test_the_reports_page_accepts_periods_up_to_a_year_and_all_time(agent_client, auto_handled, query):
    auto_handled()

    response = agent_client.get(reverse("reports") + "?" + relative(query))

    assert response.status_code == 200 and 'id="period-errors"' not in response.content.decode()
