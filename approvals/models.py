"""The staff approval inbox: runs a gate stopped wait here for a person's decision."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from triage.models import PipelineRun, Ticket


class ApprovalRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    run = models.OneToOneField(PipelineRun, on_delete=models.CASCADE, related_name="approval")
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="approvals")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(help_text="Why it waits: the failed gates' reasons.")
    verdicts = models.JSONField(default=list, help_text="Every gate's verdict for this run.")
    failed_gates = models.JSONField(default=list)
    proposed_category = models.CharField(max_length=100, blank=True)
    proposed_actions = models.JSONField(default=list)
    draft = models.TextField(blank=True)
    money = models.BooleanField(default=False, help_text="Approving it moves money: needs that permission.")
    priority_rank = models.PositiveSmallIntegerField(
        default=2, help_text="0 urgent, 1 high, 2 normal, 3 low: the inbox's most-urgent-first order."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["status", "priority_rank", "-created_at"], name="approval_inbox_urgent"),
        ]
        permissions = [("approve_money", "Can approve actions that move money")]

    def __str__(self) -> str:
        return f"approval for {self.ticket_id} ({self.status})"


class Decision(models.Model):
    """An audited staff decision. Written once, never edited."""

    class Verdict(models.TextChoices):
        APPROVE = "approve"
        EDIT = "edit", "Edit then approve"
        REJECT = "reject"

    approval = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="decisions")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="triage_decisions")
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.actor_id}"
