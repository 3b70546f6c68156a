"""Inbox decisions are labels: approval_decide writes the labelled example in the decision's transaction."""

from __future__ import annotations

import pytest

from approvals.models import Decision
from approvals.services import MoneyPermissionRequired, approval_decide
from triage.models import LabelledExample
from triage.selectors import training_set_select
from triage.services import ticket_mark_mishandled

pytestmark = pytest.mark.django_db


def test_approving_as_proposed_is_a_confirmed_label_with_provenance(paused, agent):
    approval = paused("Where is my order TW-100200? It has been two weeks.", category="order_status")

    decision = approval_decide(approval_id=approval.pk, actor=agent, verdict=Decision.Verdict.APPROVE)

    label = LabelledExample.objects.get(ticket=approval.ticket)
    assert (label.source, label.category.label, label.labelled_by, label.decision_id) == (
        "confirmed",
        "order_status",
        agent,
        decision.pk,
    )
    assert label.text == "Where is my order TW-100200? It has been two weeks."
    assert label.labelled_at >= decision.created_at and label.conflict is False


def test_editing_the_category_is_a_corrected_label(paused, agent):
    approval = paused("My parcel is a week late, the tracking has not moved.", category="order_status")

    approval_decide(approval_id=approval.pk, actor=agent, verdict=Decision.Verdict.EDIT, category="shipping_delay")

    label = LabelledExample.objects.get(ticket=approval.ticket)
    assert (label.source, label.category.label, label.proposed_category) == (
        "corrected",
        "shipping_delay",
        "order_status",
    )


def test_editing_only_the_reply_confirms_the_category(paused, agent):
    approval = paused("Where is my order TW-100201?", category="order_status")

    approval_decide(approval_id=approval.pk, actor=agent, verdict=Decision.Verdict.EDIT, reply="It ships today.")

    assert LabelledExample.objects.get(ticket=approval.ticket).source == "confirmed"


def test_a_rejection_teaches_no_category(paused, agent):
    approval = paused("Where is my order TW-100202?", category="order_status")

    approval_decide(approval_id=approval.pk, actor=agent, verdict=Decision.Verdict.REJECT, reason="spam")

    assert not LabelledExample.objects.filter(ticket=approval.ticket).exists()


def test_a_refused_decision_writes_no_label(paused, agent):
    approval = paused("Refund my broken grinder please.", money=True)

    with pytest.raises(MoneyPermissionRequired):
        approval_decide(approval_id=approval.pk, actor=agent, verdict=Decision.Verdict.APPROVE)

    assert not LabelledExample.objects.filter(ticket=approval.ticket).exists()


def test_marking_mishandled_is_a_wrong_label_for_the_category_acted_on(auto_handled, agent):
    ticket = auto_handled("How do I reset my password? The link expired.", category="account_access")

    ticket_mark_mishandled(ticket_id=ticket.pk, actor=agent)

    label = LabelledExample.objects.get(ticket=ticket)
    assert (label.source, label.category.label, label.labelled_by) == ("wrong", "account_access", agent)
    # What a text is not is never learned as what it is.
    assert label.text not in training_set_select().texts


def test_contradictory_labels_on_identical_text_are_flagged_and_left_out(paused, agent):
    text = "Please look at my order TW-555000, something is off."
    first = paused(text, category="order_status")
    second = paused(text, category="order_status")

    approval_decide(approval_id=first.pk, actor=agent, verdict=Decision.Verdict.APPROVE)
    assert LabelledExample.objects.get(ticket=first.ticket).conflict is False
    assert text in training_set_select().texts

    approval_decide(approval_id=second.pk, actor=agent, verdict=Decision.Verdict.EDIT, category="shipping_delay")

    rows = LabelledExample.objects.filter(text=text)
    assert rows.count() == 2 and all(row.conflict for row in rows)
    assert text not in training_set_select().texts


def test_the_latest_decision_on_a_ticket_replaces_the_earlier_label(paused, agent, money_agent):
    from triage.services import ticket_label_record

    approval = paused("Where is my order TW-100203?", category="order_status")
    approval_decide(approval_id=approval.pk, actor=agent, verdict=Decision.Verdict.APPROVE)

    ticket_label_record(
        ticket_id=approval.ticket_id,
        category="shipping_delay",
        source=LabelledExample.Source.CORRECTED,
        actor=money_agent,
        proposed_category="order_status",
    )

    label = LabelledExample.objects.get(ticket=approval.ticket)
    assert (label.source, label.category.label, label.labelled_by) == ("corrected", "shipping_delay", money_agent)
    assert label.conflict is False  # one ticket relabelled is not two labels disagreeing
