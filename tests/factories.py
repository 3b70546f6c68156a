"""Test factories (the staff app's tests, the metrics tests and the browser tests): runs in known states.

A paused run is built from finished StepRun checkpoints, as the runner leaves them, plus its open
ApprovalRequest, so a decision resumes it through the real runner without any model being needed.
Test code only: it lives in the tests tree so that no production package ships it.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.services import approval_request_open
from triage.contracts import Classification, Draft, Passage, Priority, Retrieval, Verdict
from triage.models import Category, PipelineRun, StepRun, Ticket
from triage.pipeline.handling import proposed_actions_for

_serial = itertools.count(1)


def _category(label: str, money: bool) -> Category:
    category, _ = Category.objects.get_or_create(
        label=label, defaults={"money": money, "name": label.replace("_", " ")}
    )
    return category


def _passages(n: int = 2) -> Retrieval:
    return Retrieval(
        passages=[
            Passage(
                chunk_id=9000 + i,
                article_id=900,
                article_title=f"Returns policy part {i}",
                heading="Refunds",
                text=f"Refunds are issued to the original payment method within {i + 3} business days.",
                score=0.71 - i * 0.1,
            )
            for i in range(n)
        ]
    )


def _step(run: PipelineRun, step: str, output: dict[str, Any], verdicts: list[Verdict], **extra: Any) -> StepRun:
    return StepRun.objects.create(
        run=run,
        step=step,
        status=StepRun.Status.SUCCEEDED,
        output=output,
        input_digest=f"{step}-digest-{run.pk:06d}",
        verdicts=[v.model_dump(mode="json") for v in verdicts],
        latency_ms=extra.pop("latency_ms", 12.5),
        finished_at=timezone.now(),
        **extra,
    )


def build_run(
    *,
    body: str,
    subject: str = "",
    category: str = "order_status",
    money: bool = False,
    auto: bool = False,
    priority: Priority = Priority.NORMAL,
    confidence: float = 0.55,
    age: timedelta | None = None,
    failed_gates: tuple[str, ...] | None = None,
) -> tuple[Ticket, PipelineRun, ApprovalRequest | None]:
    """A ticket whose run stopped for a person (or, with `auto`, was handled by the chain)."""
    n = next(_serial)
    cat = _category(category, money)
    ticket = Ticket.objects.create(
        source="test",
        external_id=f"staff-{n}-{timezone.now().timestamp()}",
        subject=subject,
        body=body,
        requester=f"customer{n}@example.com",
        status=Ticket.Status.AUTO_HANDLED if auto else Ticket.Status.AWAITING_APPROVAL,
    )
    run = PipelineRun.objects.create(
        ticket=ticket,
        status=PipelineRun.Status.COMPLETED if auto else PipelineRun.Status.WAITING,
        route=PipelineRun.Route.AUTO if auto else PipelineRun.Route.HUMAN,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    retrieval = _passages()
    classification = Classification(
        category=cat.label,
        confidence=confidence,
        priority=priority,
        proposed_actions=proposed_actions_for(category=cat, priority=priority),
        alternatives=[(cat.label, confidence)],
        model="local-classifier/test",
    )
    draft = Draft(
        body=f"Hello,\n\nThanks for writing about your {cat.label.replace('_', ' ')}. "
        "Refunds are issued to the original payment method within 3 business days.",
        citations=[retrieval.passages[0].chunk_id],
        model="local-extractive",
    )
    if failed_gates is None:
        failed_gates = () if auto else (("money",) if money else ("confidence",))
    verdicts = {
        "retrieve": [
            Verdict(
                gate="retrieval",
                step="retrieve",
                passed="retrieval" not in failed_gates,
                reason="The best passage scores 0.71 (needs 0.35).",
            )
        ],
        "classify": [
            Verdict(gate="schema", step="classify", passed=True, reason="The classification matches the contract."),
            Verdict(
                gate="confidence",
                step="classify",
                passed="confidence" not in failed_gates,
                reason=f"Confidence {confidence:.2f} for '{cat.label}' is below the category's threshold 0.70."
                if "confidence" in failed_gates
                else "Confident enough.",
            ),
            Verdict(
                gate="money",
                step="classify",
                passed="money" not in failed_gates,
                reason="The category moves money: a person with the permission approves it."
                if "money" in failed_gates
                else "No money moves.",
            ),
        ],
        "draft": [
            Verdict(
                gate="groundedness",
                step="draft",
                passed="groundedness" not in failed_gates,
                reason="Every sentence is traced to a cited passage.",
            )
        ],
    }
    _step(run, "retrieve", retrieval.model_dump(mode="json"), verdicts["retrieve"])
    _step(
        run,
        "classify",
        classification.model_dump(mode="json")
        | {"routing": [{"model": "local-classifier/test", "why": "local classifier first", "confidence": confidence}]},
        verdicts["classify"],
        model="local-classifier/test",
    )
    _step(
        run,
        "draft",
        draft.model_dump(mode="json"),
        verdicts["draft"],
        model="local-extractive",
        tokens_in=120,
        tokens_out=40,
    )
    all_verdicts = verdicts["retrieve"] + verdicts["classify"] + verdicts["draft"]
    failed = sorted({v.gate for v in all_verdicts if not v.passed})
    _step(run, "validate", {"passed": not failed, "failed_gates": failed, "gates_enabled": True}, [])
    approval = None
    if auto:
        _step(run, "route", {"route": "auto", "reason": "every gate passed"}, [])
        _step(run, "execute", {"actions": []}, [])
    else:
        reason = " ".join(v.reason for v in all_verdicts if not v.passed)
        approval = approval_request_open(
            run=run, reason=reason, verdicts=all_verdicts, classification=classification, draft=draft
        )
        _step(run, "route", {"route": "human", "reason": reason, "approval_id": approval.pk}, [])
    if age is not None:
        then = timezone.now() - age
        Ticket.objects.filter(pk=ticket.pk).update(created_at=then)
        if approval is not None:
            ApprovalRequest.objects.filter(pk=approval.pk).update(created_at=then)
            approval.refresh_from_db()
        ticket.refresh_from_db()
    return ticket, run, approval


def snapshot(approval: ApprovalRequest) -> dict[str, Any]:
    """Everything a refused decision must leave untouched."""
    approval.refresh_from_db()
    run = PipelineRun.objects.get(pk=approval.run_id)
    return {
        "status": approval.status,
        "decided_at": approval.decided_at,
        "decisions": approval.decisions.count(),
        "run_status": run.status,
        "resolution": run.resolution,
        "actions": run.actions.count(),
        "ticket_status": Ticket.objects.get(pk=approval.ticket_id).status,
    }
