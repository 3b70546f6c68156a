"""Approval inbox writes: opening a request when a gate stops a run, and deciding it."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from approvals.models import ApprovalRequest, Decision
from triage.contracts import (
    ActionKind,
    Classification,
    Draft,
    Priority,
    Resolution,
    Verdict,
    stored_action_moves_money,
)
from triage.models import Category, Chunk, LabelledExample, PipelineRun, StepRun
from triage.pipeline.gates import MONEY, gate_reply_money, gate_reply_personal_data
from triage.pipeline.handling import proposed_actions_for
from triage.pipeline.promises import money_promises
from triage.services import ticket_label_record
from triage.tasks import enqueue_run

PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}  # ApprovalRequest.priority_rank


def approval_request_open(
    *,
    run: PipelineRun,
    reason: str,
    verdicts: list[Verdict],
    classification: Classification | None,
    draft: Draft | None,
) -> ApprovalRequest:
    """The run waits for a person. Idempotent: a resumed run finds its request already open."""
    failed = sorted({v.gate for v in verdicts if not v.passed})
    category = Category.objects.filter(label=classification.category).first() if classification else None
    money = MONEY in failed or bool(category and category.money) or bool(classification and classification.moves_money)
    defaults: dict[str, Any] = {
        "ticket_id": run.ticket_id,
        "reason": reason,
        "verdicts": [v.model_dump(mode="json") for v in verdicts],
        "failed_gates": failed,
        "proposed_category": classification.category if classification else "",
        "proposed_actions": [a.model_dump(mode="json") for a in classification.proposed_actions]
        if classification
        else [],
        "draft": draft.body if draft else "",
        "money": money,
        "priority_rank": PRIORITY_RANK.get(classification.priority, 2) if classification else 2,
    }
    approval, _ = ApprovalRequest.objects.get_or_create(run=run, defaults=defaults)
    return approval


class DecisionError(Exception):
    """A decision that cannot be taken; `reason` is shown to the person who tried."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AlreadyDecided(DecisionError):
    pass


class MoneyPermissionRequired(DecisionError):
    pass


class ReplyRefused(DecisionError):
    """The reply that would be sent fails a check every reply must pass, whoever sends it."""


def _money_actions(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The actions (as stored: JSON) that move money, by the contract's own rule (`ProposedAction.moves_money`)."""
    return [a for a in actions if stored_action_moves_money(a)]


def _reply_check(*, approval: ApprovalRequest, reply: str, actions: list[dict[str, Any]], actor: Any) -> None:
    """The reply a decision will send passes the same checks as a drafted one, or nothing happens.

    Personal data is refused for everyone. A reply that tells the customer money has moved or will
    move ("we have refunded $500") is only sent by someone with the money permission, on a decision
    that carries a money action; anyone else would be promising money no one has approved.
    """
    passages = _retrieved_passages(approval.run)
    personal = gate_reply_personal_data(
        reply=reply, policy_text=passages, requester=approval.ticket.requester, step="decision"
    )
    if not personal.passed:
        raise ReplyRefused(personal.reason + " Take it out of the reply; nothing was sent.")
    money = gate_reply_money(reply=reply, policy_text=passages + _knowledge_base_quotes(reply), step="decision")
    if money.passed:
        return
    if not actor.has_perm("approvals.approve_money"):
        raise MoneyPermissionRequired(
            money.reason + " Only someone with the money-approval permission can send that, on a decision that "
            "refunds or credits; take the promise out of the reply or leave it for them. Nothing was sent."
        )
    if not _money_actions(actions):
        raise ReplyRefused(
            money.reason + " This decision moves no money (no refund, credit or cancellation among its actions): "
            "choose a category whose actions move it, or take the promise out of the reply. Nothing was sent."
        )


def _retrieved_passages(run: PipelineRun) -> list[str]:
    step = (
        StepRun.objects.filter(run=run, step="retrieve", status=StepRun.Status.SUCCEEDED).order_by("-attempt").first()
    )
    passages = ((step.output or {}).get("passages") or []) if step else []
    return [str(p.get("text", "")) for p in passages if isinstance(p, dict)]


def _knowledge_base_quotes(reply: str) -> list[str]:
    """Knowledge-base chunks that hold one of the reply's flagged sentences word for word.

    A person may quote any article, not only the ones this run retrieved; the promise detector
    then decides whether the whole sentence is the article's (policy) or merely contains it.
    """
    flagged = [p.sentence for p in money_promises(reply)]
    if not flagged:
        return []
    query = Q()
    for sentence in flagged:
        query |= Q(text__contains=sentence)
    return list(Chunk.objects.filter(query).values_list("text", flat=True)[:20])


def _label_from_decision(*, approval: ApprovalRequest, decision: Decision, actor: Any) -> None:
    """Every decision that settles a category is a label the classifier learns from: approved as proposed
    (confirmed) or with the category edited (corrected). A rejection says the handling was refused, not what
    the ticket is: no label."""
    if decision.verdict == Decision.Verdict.REJECT:
        return
    proposed = decision.before.get("category") or ""
    chosen = decision.after.get("category") or ""
    source = LabelledExample.Source.CORRECTED if chosen != proposed else LabelledExample.Source.CONFIRMED
    ticket_label_record(
        ticket_id=approval.ticket_id,
        category=chosen,
        source=source,
        actor=actor,
        proposed_category=proposed,
        decision_id=decision.pk,
    )


def approval_decide(
    *,
    approval_id: int,
    actor: Any,
    verdict: str,
    reason: str = "",
    category: str | None = None,
    reply: str | None = None,
) -> Decision:
    """Record a person's decision and hand the run back to the queue to carry it out, exactly once.

    Two people deciding the same request at once: the row lock makes one wait, and it then finds
    the request decided (`AlreadyDecided`). Approving anything that moves money needs the
    `approvals.approve_money` permission; without it nothing changes. The reply that will be sent,
    drafted or edited, is checked again (`ReplyRefused`, `MoneyPermissionRequired`): nothing
    changes either when it fails.
    """
    if verdict not in Decision.Verdict.values:
        raise DecisionError(f"unknown decision {verdict!r}")
    if verdict == Decision.Verdict.REJECT and not reason.strip():
        raise DecisionError("a rejection needs a reason")
    with transaction.atomic():
        approval = ApprovalRequest.objects.select_for_update().select_related("run").get(pk=approval_id)
        if approval.status != ApprovalRequest.Status.PENDING:
            last = approval.decisions.select_related("actor").first()
            who = f" by {last.actor}" if last else ""
            raise AlreadyDecided(f"This ticket was already {approval.status}{who}.")
        before = {"category": approval.proposed_category, "reply": approval.draft, "actions": approval.proposed_actions}
        after = dict(before)
        if verdict == Decision.Verdict.EDIT:
            if category is not None and category != approval.proposed_category:
                new_category = Category.objects.filter(label=category).first()
                if new_category is None:
                    raise DecisionError(f"category {category!r} does not exist")
                after["category"] = category
                after["actions"] = [
                    a.model_dump(mode="json")
                    for a in proposed_actions_for(category=new_category, priority=Priority.NORMAL)
                ]
            if reply is not None:
                after["reply"] = reply
        moves_money = approval.money or bool(_money_actions(after["actions"]))
        if verdict != Decision.Verdict.REJECT:
            if moves_money and not actor.has_perm("approvals.approve_money"):
                raise MoneyPermissionRequired(
                    "Approving this ticket moves money; you need the money-approval permission."
                )
            if any(a.get("kind") == ActionKind.SEND_REPLY for a in after["actions"]):
                if not after["reply"].strip():
                    raise DecisionError("the reply is empty")
                _reply_check(approval=approval, reply=after["reply"], actions=after["actions"], actor=actor)
        decision = Decision.objects.create(
            approval=approval,
            actor=actor,
            verdict=verdict,
            before=before,
            after=after if verdict != Decision.Verdict.REJECT else {},
            reason=reason,
        )
        _label_from_decision(approval=approval, decision=decision, actor=actor)
        approval.status = (
            ApprovalRequest.Status.REJECTED if verdict == Decision.Verdict.REJECT else ApprovalRequest.Status.APPROVED
        )
        approval.decided_at = timezone.now()
        approval.save(update_fields=["status", "decided_at"])
        run = approval.run
        run.resolution = Resolution(
            verdict="reject" if verdict == Decision.Verdict.REJECT else "approve",
            actions=after["actions"] if verdict != Decision.Verdict.REJECT else [],
            reply=after["reply"],
            category=after["category"],
            reason=reason,
            decision_id=decision.pk,
            # The runner checks this person's money permission again before any money moves.
            decided_by=actor.pk,
        ).model_dump(mode="json")
        run.status = PipelineRun.Status.QUEUED
        run.queued_at = timezone.now()
        run.save(update_fields=["resolution", "status", "queued_at"])
        enqueue_run(run_id=run.pk)
    return decision
