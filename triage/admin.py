from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from solo.admin import SingletonModelAdmin

from triage.learning import classifier_activate
from triage.models import (
    Action,
    Article,
    Category,
    GatePolicy,
    LabelledExample,
    ModelPrice,
    PipelineRun,
    ProviderSettings,
    RetentionPolicy,
    StepPolicy,
    StepRun,
    Ticket,
    TrainedClassifier,
)
from triage.services import article_upsert


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["label", "name", "money", "confidence_threshold", "auto_reply"]
    list_editable = ["money", "confidence_threshold", "auto_reply"]
    search_fields = ["label", "name"]


@admin.register(GatePolicy)
class GatePolicyAdmin(SingletonModelAdmin):
    exclude = ["name"]  # one row: its name is no choice anyone makes


@admin.register(StepPolicy)
class StepPolicyAdmin(admin.ModelAdmin):
    list_display = ["step", "max_attempts", "backoff_seconds", "fallback_provider"]


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "category", "updated_at"]
    list_filter = ["category"]
    search_fields = ["title", "body"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Saving an article re-chunks and re-embeds it, so new runs retrieve what it says now."""
        if change and "slug" in form.changed_data:
            # article_upsert finds the article by slug: move the existing row to its new slug first.
            Article.objects.filter(pk=obj.pk).update(slug=obj.slug)
        article = article_upsert(slug=obj.slug, title=obj.title, body=obj.body, category=obj.category)
        obj.pk, obj.updated_at = article.pk, article.updated_at
        self.message_user(request, f"“{article.title}” re-embedded: {article.chunks.count()} passage(s).")


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "external_id", "status", "created_at"]
    list_filter = ["status", "source"]
    search_fields = ["external_id", "subject", "body", "requester"]
    # What the customer sent and what the chain did are records, not drafts: nobody edits them here
    # (agents hold change_ticket only to mark a ticket mishandled from its trace page).
    readonly_fields = [
        "source",
        "external_id",
        "subject",
        "body",
        "requester",
        "tags",
        "status",
        "reference_label",
        "mishandled_at",
        "mishandled_by",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class StepRunInline(admin.TabularInline):
    model = StepRun
    extra = 0
    can_delete = False
    fields = (
        "step",
        "attempt",
        "status",
        "latency_ms",
        "tokens_in",
        "tokens_out",
        "cache_write_tokens",
        "cache_read_tokens",
        "cost",
        "model",
        "route_reason",
        "error",
        "pruned_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ["id", "ticket", "status", "route", "gates_enabled", "created_at"]
    list_filter = ["status", "route"]
    inlines = [StepRunInline]
    # The resolution is the person's decision the execute step carries out: recorded by approval_decide
    # alongside the Decision row, never edited here, or what runs could differ from what was decided.
    readonly_fields = [
        "ticket",
        "status",
        "route",
        "gates_enabled",
        "provider",
        "resolution",
        "error",
        "started_at",
        "finished_at",
        # The recovery fields are the workers' and the sweeper's (README "Recovery"), not an editor's.
        "queued_at",
        "lease_expires_at",
        "takes",
    ]


@admin.register(Action)
class ActionAdmin(admin.ModelAdmin):
    list_display = ["idempotency_key", "kind", "status", "attempts", "executed_at"]
    list_filter = ["kind", "status"]
    readonly_fields = [
        "run",
        "kind",
        "payload",
        "idempotency_key",
        "status",
        "attempts",
        "result",
        "error",
        "executed_at",
    ]


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = [
        "model",
        "input_per_mtok",
        "output_per_mtok",
        "cache_write_per_mtok",
        "cache_read_per_mtok",
        "updated_at",
    ]
    search_fields = ["model"]


@admin.register(ProviderSettings)
class ProviderSettingsAdmin(SingletonModelAdmin):
    exclude = ["name"]  # one row: its name is no choice anyone makes


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(SingletonModelAdmin):
    exclude = ["name"]  # one row: its name is no choice anyone makes


@admin.register(LabelledExample)
class LabelledExampleAdmin(admin.ModelAdmin):
    """What the classifier learns from, with provenance. Read-only: labels come from imports and decisions."""

    list_display = ["id", "category", "source", "conflict", "ticket", "labelled_by", "labelled_at"]
    list_filter = ["source", "conflict", "category"]
    search_fields = ["text"]
    exclude = ["embedding"]
    readonly_fields = [
        "text",
        "category",
        "source",
        "ticket",
        "labelled_by",
        "labelled_at",
        "decision_id",
        "proposed_category",
        "conflict",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TrainedClassifier)
class ClassifierVersionAdmin(admin.ModelAdmin):
    """Classifier versions with their figures; the action makes one of them the version new runs use."""

    list_display = ["id", "created_at", "active", "example_count", "suggested_threshold", "promoted", "activated_by"]
    list_filter = ["active"]
    exclude = ["blob"]
    readonly_fields = [
        "model",
        "labels",
        "example_count",
        "suggested_threshold",
        "created_at",
        "active",
        "activated_at",
        "activated_by",
        "trained_on",
        "labels_until",
        "figures",
    ]
    actions = ["activate"]

    @admin.display(description="promoted by retrain")
    def promoted(self, obj: TrainedClassifier) -> str:
        comparison = (obj.figures or {}).get("comparison") or {}
        return comparison.get("reason", "") or ("yes" if (obj.figures or {}).get("promoted") else "")

    @admin.action(description="Use this version for new runs (roll back or forward)", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: Any) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one version to use.", level=messages.ERROR)
            return
        version = classifier_activate(version_id=queryset.get().pk, actor=request.user)
        self.message_user(request, f"Version #{version.pk} is now used for new runs.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # versions are the history a roll-back chooses from
