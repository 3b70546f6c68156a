"""The gate registry is the one list of gates: every verdict, the inbox filter and the reliability figures agree."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from approvals.forms import InboxFilterForm
from approvals.models import ApprovalRequest
from approvals.selectors import GATE_NAMES, GATES
from triage.arguments import ArgumentPlan, TicketFacts
from triage.contracts import ActionKind, Classification, ContractError, Draft, Passage, ProposedAction, Retrieval
from triage.metrics import CHAIN_STEPS, STEP_GATES
from triage.models import PipelineRun, Ticket
from triage.pipeline import gates

PASSAGE = Passage(chunk_id=1, article_id=1, article_title="Refunds", score=0.8, text="Refunds take five days.")
RETRIEVAL = Retrieval(passages=[PASSAGE])
DRAFT = Draft(body="Refunds take five days.", citations=[1])
REFUND = Classification(
    category="refund_request",
    confidence=0.9,
    proposed_actions=[ProposedAction(kind=ActionKind.REFUND, amount=Decimal("12.00"))],
)


def every_gate_verdict():
    return [
        gates.gate_schema(classification=None, error=ContractError("Classification", "bad")),
        gates.gate_retrieval(retrieval=RETRIEVAL, min_score=0.5),
        gates.gate_confidence(classification=REFUND, threshold=0.5),
        gates.gate_money(classification=REFUND, category_moves_money=True, ticket_text="Refund me"),
        gates.gate_category_policy(category="refund_request", auto_reply=False),
        gates.gate_groundedness(draft=DRAFT, retrieval=RETRIEVAL, min_overlap=0.8),
        gates.gate_reply_money(reply="We have refunded $12 to your card."),
        gates.gate_personal_data(draft=DRAFT, retrieval=RETRIEVAL, requester="sam@example.com"),
        gates.gate_tool_arguments(
            tool="order_status",
            schema={"type": "object", "required": ["order_id"]},
            plan=ArgumentPlan(arguments={}, sources={}),
            facts=TicketFacts(text="Where is my order?"),
            step="lookup",
        ),
    ]


def test_every_gate_function_gives_a_verdict_named_and_stepped_as_the_registry_says():
    verdicts = every_gate_verdict()

    assert sorted(v.gate for v in verdicts) == sorted(gates.ALL_GATES)
    assert all(v.step == gates.BY_NAME[v.gate].step for v in verdicts)


def test_the_registry_names_each_gate_once_and_step_failed_as_a_reason_of_any_step():
    names = [g.name for g in gates.REGISTRY]

    assert len(names) == len(set(names))
    assert gates.BY_NAME[gates.STEP_FAILED].step == ""
    assert gates.STEP_FAILED not in gates.ALL_GATES


def test_the_inbox_filter_lists_every_registered_gate_with_its_label_money_promise_included():
    assert tuple(g.name for g in gates.REGISTRY) == GATES
    assert GATE_NAMES[gates.MONEY_PROMISE] == "Money promise"
    assert InboxFilterForm({"gate": gates.MONEY_PROMISE}).is_valid()
    assert not InboxFilterForm({"gate": "no_such_gate"}).is_valid()


def test_the_reliability_figures_count_only_the_gates_that_judge_their_step():
    assert {
        "retrieve": {gates.RETRIEVAL},
        "classify": {gates.SCHEMA, gates.CONFIDENCE},
        "draft": {gates.GROUNDEDNESS, gates.PERSONAL_DATA},
    } == STEP_GATES
    # The holds say who must act, not that the step erred.
    holds = {gates.MONEY, gates.MONEY_PROMISE, gates.CATEGORY_POLICY, gates.STEP_FAILED}
    assert not holds & set().union(*(STEP_GATES[s] for s in CHAIN_STEPS))


def test_a_verdict_from_before_the_registry_still_reads_as_words():
    assert gates.gate_label("personal_data") == "Personal data"
    assert gates.gate_label("retired_gate") == "Retired gate"


@pytest.mark.django_db
def test_the_inbox_filters_by_the_money_promise_gate(admin_client):
    def pending(external_id: str, failed: list[str]) -> ApprovalRequest:
        ticket = Ticket.objects.create(source="test", external_id=external_id, body="Where is my refund?")
        run = PipelineRun.objects.create(
            ticket=ticket, status=PipelineRun.Status.WAITING, route=PipelineRun.Route.HUMAN
        )
        return ApprovalRequest.objects.create(run=run, ticket=ticket, reason="r", failed_gates=failed)

    promised = pending("promise-1", [gates.MONEY_PROMISE])
    unsure = pending("unsure-1", [gates.CONFIDENCE])

    response = admin_client.get(reverse("approvals:inbox") + "?gate=money_promise")

    assert response.status_code == 200
    page = response.content.decode()
    shown = [int(part.split('"')[0]) for part in page.split('data-approval-id="')[1:]]
    assert shown == [promised.pk] and unsure.pk not in shown
    assert "Money promise" in page
