"""Approval inbox writes: opening a request when a gate stops a run, and deciding it."""

from __future__ import annotations

from typing import Any

from triage.contracts import Classification, Draft, Verdict
from triage.models import Category, PipelineRun

from approvals.models import ApprovalRequest


def approval_request_open(
    *, run: PipelineRun, reason: str, verdicts: list[Verdict], classification: Classification | None, draft: Draft | None
) -> ApprovalRequest:
    """The run waits for a person. Idempotent: a resumed run finds its request already open."""
    failed = sorted({v.gate for v in verdicts if not v.passed})
    category = Category.objects.filter(label=classification.category).first() if classification else None
    money = "money" in failed or bool(category and category.money) or bool(classification and classification.moves_money)
    defaults: dict[str, Any] = {
        "ticket_id": run.ticket_id,
        "reason": reason,
        "verdicts": [v.model_dump(mode="json") for v in verdicts],
        "failed_gates": failed,
        "proposed_category": classification.category if classification else "",
        "proposed_actions": [a.model_dump(mode="json") for a in classification.proposed_actions] if classification else [],
        "draft": draft.body if draft else "",
        "money": money,
    }
    approval, _ = ApprovalRequest.objects.get_or_create(run=run, defaults=defaults)
    return approval
