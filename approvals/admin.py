from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from approvals.models import ApprovalRequest, Decision


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    readonly_fields = ["actor", "verdict", "before", "after", "reason", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "ticket", "status", "proposed_category", "money", "created_at"]
    list_filter = ["status", "money"]
    inlines = [DecisionInline]
    readonly_fields = [
        "run",
        "ticket",
        "reason",
        "verdicts",
        "failed_gates",
        "proposed_category",
        "proposed_actions",
        "draft",
        "money",
        "status",
        "decided_at",
    ]


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    """Decisions are an audit trail: readable here, never editable or deletable."""

    list_display = ["approval", "actor", "verdict", "created_at"]
    readonly_fields = ["approval", "actor", "verdict", "before", "after", "reason", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
