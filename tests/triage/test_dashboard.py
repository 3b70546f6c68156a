"""`triage.dashboard`: the reports dashboard's figures for a period."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from approvals.services import approval_decide
from triage.dashboard import dashboard_figures
from triage.models import GatePolicy, StepRun
from triage.services import ticket_mark_mishandled

pytestmark = pytest.mark.django_db


def test_the_dashboard_figures_count_intake_automation_feedback_and_escalations(agent, paused, auto_handled):
    GatePolicy.objects.update_or_create(name="default", defaults={"human_cost_per_ticket": Decimal("5.00")})
    for _ in range(3):
        auto_handled()
    marked = auto_handled()
    ticket_mark_mishandled(ticket_id=marked.pk, actor=agent)
    approved, edited, rejected, _waiting = paused(), paused(), paused(money=True), paused()
    approval_decide(approval_id=approved.pk, actor=agent, verdict="approve")
    approval_decide(approval_id=edited.pk, actor=agent, verdict="edit", category="shipping_delay")
    approval_decide(approval_id=rejected.pk, actor=agent, verdict="reject", reason="spam")
    StepRun.objects.filter(run__ticket__source="test", step="draft").update(cost=Decimal("0.01"))
    now = timezone.now()

    f = dashboard_figures(start=now - timedelta(days=1), end=now + timedelta(minutes=1))

    assert f.tickets == 8 and f.auto_handled == 4 and f.to_person == 4
    assert (f.approved, f.edited, f.rejected, f.waiting) == (1, 1, 1, 1)
    assert f.automation_rate == 0.5
    # The corrected category was caught in the inbox: it counts against classify, not as mishandled.
    assert f.mishandled == 1 and f.category_corrected == 1 and f.mishandled_rate == 1 / 8
    assert dict(f.escalations_by_gate) == {"confidence": 3, "money": 1}
    assert f.llm_cost == Decimal("0.08") and f.tokens_in == 8 * 120
    assert f.saved_cost == (3 - 1) * Decimal("5.00") - Decimal("0.08")
    rel = {r.step: r for r in f.step_reliability}
    assert (rel["retrieve"].right, rel["retrieve"].counted) == (8, 8)
    # classify: 3 failed the confidence gate (one of them later corrected), 1 auto-handled ticket was marked
    assert (rel["classify"].right, rel["classify"].counted) == (4, 8)
    assert f.chain_predicted == pytest.approx(rel["retrieve"].rate * rel["classify"].rate * rel["draft"].rate)
    assert f.chain_measured == pytest.approx(rel["classify"].right / 8)


def test_the_dashboard_leaves_out_tickets_outside_the_period(auto_handled):
    auto_handled(age=timedelta(days=40))
    auto_handled()
    now = timezone.now()

    f = dashboard_figures(start=now - timedelta(days=30), end=now + timedelta(minutes=1))

    assert f.tickets == 1 and len(f.trend) == 31
