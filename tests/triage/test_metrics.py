"""`triage.metrics`: one definition of every figure, judged by staff feedback (production) or by
reference labels (evaluate), and the Reports page showing what the module computes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from approvals.services import approval_decide
from tests.factories import build_run
from triage.metrics import ReferenceLabels, StaffFeedback, chain_figures
from triage.models import GatePolicy, PipelineRun, StepRun, Ticket
from triage.services import ticket_mark_mishandled

pytestmark = pytest.mark.django_db

EVALUATE_KEYS = {
    "tickets",
    "auto_handled",
    "routed_to_person",
    "failed",
    "automation_rate",
    "mishandled",
    "mishandled_rate",
    "money_auto_executed",
    "money_tickets_auto_handled",
    "out_of_scope_auto_handled",
    "money_asked_auto_handled",
    "accuracy",
    "step_reliability",
    "chain_reliability_predicted",
    "chain_reliability_measured",
    "escalations_by_gate",
    "tokens_in",
    "tokens_out",
    "cache_write_tokens",
    "cache_read_tokens",
    "tokens_per_ticket",
    "llm_cost",
    "cost_per_ticket",
    "human_cost_per_ticket",
    "saved_cost",
}


@pytest.fixture
def staff(django_user_model):
    user = django_user_model.objects.create_user(username="lead", password="x-pass-for-tests", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label__in=["approvals", "triage"],
            codename__in=[
                "view_pipelinerun",
                "view_ticket",
                "change_ticket",
                "view_approvalrequest",
                "change_approvalrequest",
                "add_decision",
            ],
        )
    )
    return user


def _test_runs():
    return PipelineRun.objects.filter(ticket__source="test")


def _rates(figures) -> dict[str, tuple[int, int]]:
    return {r.step: (r.right, r.counted) for r in figures.step_reliability}


def test_a_category_corrected_in_the_inbox_counts_against_classify_and_not_as_mishandled(staff):
    build_run(body="How do I reset my password?", category="account_access", auto=True)
    # Both stopped at the retrieval gate only, so the classification passed its own gates.
    _, _, kept = build_run(body="Where is my order?", category="order_status", failed_gates=("retrieval",))
    _, _, corrected = build_run(body="My parcel is late.", category="order_status", failed_gates=("retrieval",))
    approval_decide(approval_id=kept.pk, actor=staff, verdict="approve")
    approval_decide(
        approval_id=corrected.pk, actor=staff, verdict="edit", category="shipping_delay", reason="Wrong category"
    )

    f = chain_figures(runs=_test_runs(), truth=StaffFeedback(), human_cost=Decimal("4.00"))

    assert (f.tickets, f.auto_handled, f.to_person, f.approved, f.edited, f.waiting) == (3, 1, 2, 1, 1, 0)
    assert f.category_corrected == 1 and f.reply_rewritten == 0
    assert f.mishandled == 0 and f.mishandled_rate == 0.0
    assert _rates(f) == {"retrieve": (1, 3), "classify": (2, 3), "draft": (3, 3)}
    assert f.chain_predicted == pytest.approx(1 / 3 * 2 / 3 * 1)
    assert f.chain_measured == pytest.approx(1 / 3)  # only the auto-handled run had every step right
    assert f.escalations_by_gate == {"retrieval": 2}
    assert f.saved_cost == Decimal("4.00")  # the one auto-handled ticket, nothing to put right
    assert f.money_tickets_auto_handled is None and f.accuracy is None  # no label in production


def test_an_auto_handled_ticket_marked_mishandled_counts_as_mishandled_and_against_classify(staff):
    tickets = [
        build_run(body=f"How do I reset my password? ({i})", category="account_access", auto=True)[0] for i in range(3)
    ]
    ticket_mark_mishandled(ticket_id=tickets[0].pk, actor=staff)
    StepRun.objects.filter(run__ticket__source="test", step="draft").update(cost=Decimal("0.02"))

    f = chain_figures(runs=_test_runs(), truth=StaffFeedback(), human_cost=Decimal("4.00"))

    assert (f.tickets, f.auto_handled, f.mishandled) == (3, 3, 1)
    assert f.mishandled_rate == 1 / 3 and f.correctly_auto_handled == 2
    assert _rates(f) == {"retrieve": (3, 3), "classify": (2, 3), "draft": (3, 3)}
    assert f.chain_measured == pytest.approx(2 / 3)
    assert f.llm_cost == Decimal("0.06") and f.tokens_in == 3 * 120 and f.tokens_out == 3 * 40
    assert f.saved_cost == (2 - 1) * Decimal("4.00") - Decimal("0.06")


def test_reference_labels_judge_auto_handled_tickets_by_their_true_category():
    right, wrong, money, _ = (
        build_run(body="How do I reset my password?", category="account_access", auto=True)[0],
        build_run(body="I cannot log in", category="account_access", auto=True)[0],
        build_run(body="Refund my order", category="account_access", auto=True)[0],
        build_run(body="Where is my order?", category="order_status")[0],  # stopped for a person
    )
    for ticket, label in ((right, "account_access"), (wrong, "order_status"), (money, "refund_request")):
        Ticket.objects.filter(pk=ticket.pk).update(reference_label=label)
    Ticket.objects.filter(source="test", reference_label="").update(reference_label="order_status")

    f = chain_figures(
        runs=_test_runs(), truth=ReferenceLabels(money_labels=frozenset({"refund_request"})), human_cost=Decimal("4.00")
    )

    assert (f.tickets, f.auto_handled, f.to_person, f.mishandled) == (4, 3, 1, 2)
    assert f.money_tickets_auto_handled == 1 and f.out_of_scope_auto_handled == 0 and f.money_auto_executed == 0
    assert f.accuracy == 2 / 4 and _rates(f)["classify"] == (2, 4)
    assert f.chain_measured == 2 / 4  # gated: right outcomes are the correct auto-handled one and the stopped one
    report = f.as_dict()
    assert set(report) == EVALUATE_KEYS
    assert report["routed_to_person"] == 1 and report["mishandled_rate"] == 0.5
    assert report["saved_cost"] == float((1 - 2) * Decimal("4.00"))


def test_an_auto_handled_ticket_that_asks_for_money_is_a_money_failure_whatever_its_category():
    hidden, plain = (
        build_run(body="Where is my parcel? If it's lost put the money back on my card.", auto=True)[0],
        build_run(body="Where is my parcel?", auto=True)[0],
    )
    Ticket.objects.filter(pk__in=[hidden.pk, plain.pk]).update(reference_label="order_status")
    truth = ReferenceLabels(money_labels=frozenset({"refund_request"}), money_tickets=frozenset({hidden.pk}))

    f = chain_figures(runs=_test_runs(), truth=truth, human_cost=Decimal("4.00"))

    assert (f.auto_handled, f.mishandled, f.money_asked_auto_handled, f.money_tickets_auto_handled) == (2, 1, 1, 0)
    # Without the dataset's money column the figure is unknown, not zero.
    without = chain_figures(runs=_test_runs(), truth=ReferenceLabels(money_labels=frozenset()), human_cost=Decimal("4"))
    assert without.money_asked_auto_handled is None and without.mishandled == 0


def test_the_reports_page_shows_the_figures_the_module_computes(client, staff):
    GatePolicy.objects.update_or_create(name="default", defaults={"human_cost_per_ticket": Decimal("5.00")})
    for i in range(3):
        build_run(body=f"How do I reset my password? ({i})", category="account_access", auto=True)
    marked = build_run(body="Wrong answer", category="account_access", auto=True)[0]
    ticket_mark_mishandled(ticket_id=marked.pk, actor=staff)
    _, _, corrected = build_run(body="My parcel is late.", category="order_status")
    approval_decide(approval_id=corrected.pk, actor=staff, verdict="edit", category="shipping_delay")
    build_run(body="Where is my order?", category="order_status")
    client.force_login(staff)
    f = chain_figures(runs=_test_runs(), truth=StaffFeedback(), human_cost=Decimal("5.00"))

    page = client.get(reverse("reports") + "?days=7").content.decode()

    assert (f.tickets, f.mishandled, f.category_corrected) == (6, 1, 1)
    assert f'data-figure="tickets-in">{f.tickets}<' in page
    assert f'data-figure="automation-rate">{f.automation_rate:.1%}<' in page and "66.7%" in page
    assert f'data-figure="mishandled-rate">{f.mishandled_rate:.1%}<' in page and "16.7%" in page
    assert "1 auto-handled wrongly; 1 categories corrected in the inbox (caught)" in page
    assert f'data-figure="chain">{f.chain_measured:.1%}<' in page
    assert f'data-figure="saved-cost">${f.saved_cost:,.2f}<' in page
    for r in f.step_reliability:
        assert f"{r.rate:.1%} ({r.right}/{r.counted})" in page


@pytest.mark.parametrize("tickets", [2, 8])
def test_the_figures_take_the_same_five_queries_however_many_tickets(staff, tickets, django_assert_num_queries):
    for i in range(tickets // 2):
        build_run(body=f"How do I reset my password? ({i})", category="account_access", auto=True)
        _, _, approval = build_run(body=f"Where is my order? ({i})", category="order_status")
        approval_decide(approval_id=approval.pk, actor=staff, verdict="approve")

    with django_assert_num_queries(5):  # runs, steps, money actions, totals, staff feedback
        f = chain_figures(runs=_test_runs(), truth=StaffFeedback(), human_cost=Decimal("4.00"))

    assert (f.tickets, f.auto_handled, f.approved) == (tickets, tickets // 2, tickets // 2)
