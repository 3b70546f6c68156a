from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from solo.admin import SingletonModelAdmin

from integrations.models import McpTool
from triage.arguments import CONST, SOURCES
from triage.models import (
    Action,
    ActionTool,
    Article,
    Category,
    GatePolicy,
    LookupTool,
    ModelPrice,
    PipelineRun,
    ProviderSettings,
    RetentionPolicy,
    StepPolicy,
    StepRun,
    Ticket,
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
    list_display = ["title", "slug", "updated_at"]
    search_fields = ["title", "body"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Saving an article re-chunks and re-embeds it, so new runs retrieve what it says now."""
        if change and "slug" in form.changed_data:
            # article_upsert finds the article by slug: move the existing row to its new slug first.
            Article.objects.filter(pk=obj.pk).update(slug=obj.slug)
        article = article_upsert(slug=obj.slug, title=obj.title, body=obj.body)
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


def _arguments_problems(arguments: Any, tool: McpTool | None) -> list[str]:
    """Why an {argument: source} mapping cannot work with `tool` (empty: it can)."""
    if not isinstance(arguments, dict):
        return ['A JSON object {argument: source}, e.g. {"order_id": "order_id"}.']
    problems = []
    known = set((tool.input_schema.get("properties") or {}) if tool else ())
    for name, source in arguments.items():
        if tool is not None and name not in known:
            problems.append(f"{tool.name} has no argument {name!r} (it has: {', '.join(sorted(known)) or 'none'}).")
        if not isinstance(source, str) or not (source in SOURCES or source.startswith(CONST)):
            problems.append(f"{name}: unknown source {source!r}; one of {', '.join(SOURCES)} or const:<value>.")
    return problems


class ActionToolForm(forms.ModelForm):
    class Meta:
        model = ActionTool
        fields = ["kind", "tool", "arguments", "active"]

    def clean(self):
        cleaned = super().clean() or {}
        tool = cleaned.get("tool")
        if tool is not None and tool.read_only:
            self.add_error("tool", f"{tool.name} is marked read-only: it cannot carry out an action.")
        for problem in _arguments_problems(cleaned.get("arguments") or {}, tool):
            self.add_error("arguments", problem)
        return cleaned


@admin.register(ActionTool)
class ActionToolAdmin(admin.ModelAdmin):
    form = ActionToolForm
    list_display = ["kind", "tool", "moves_money", "active", "updated_at"]

    @admin.display(boolean=True, description="moves money")
    def moves_money(self, obj: ActionTool) -> bool:
        return obj.moves_money


class LookupToolForm(forms.ModelForm):
    class Meta:
        model = LookupTool
        fields = ["category", "tool", "arguments", "active"]

    def clean(self):
        cleaned = super().clean() or {}
        tool = cleaned.get("tool")
        if tool is not None and not tool.read_only:
            self.add_error(
                "tool", f"{tool.name} is not marked read-only (MCP tools): only a look-up may ground a draft."
            )
        for problem in _arguments_problems(cleaned.get("arguments") or {}, tool):
            self.add_error("arguments", problem)
        return cleaned


@admin.register(LookupTool)
class LookupToolAdmin(admin.ModelAdmin):
    form = LookupToolForm
    list_display = ["category", "tool", "active", "updated_at"]
