from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from solo.admin import SingletonModelAdmin

from integrations.models import McpTool
from triage.arguments import CONST, SOURCES
from triage.autonomy import calibration_set, thresholds_current, what_if
from triage.forms import WhatIfForm
from triage.learning import classifier_activate
from triage.models import (
    Action,
    ActionTool,
    Article,
    Category,
    GatePolicy,
    LabelledExample,
    LookupTool,
    ModelPrice,
    PipelineRun,
    ProviderSettings,
    RetentionPolicy,
    StepPolicy,
    StepRun,
    Ticket,
    TrainedClassifier,
)
from triage.risk_charts import risk_coverage_png
from triage.selectors import classifier_latest, gate_policy_current
from triage.services import article_upsert, gate_policy_save


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["label", "name", "money", "confidence_threshold", "auto_reply"]
    list_editable = ["money", "confidence_threshold", "auto_reply"]
    search_fields = ["label", "name"]


@admin.register(GatePolicy)
class GatePolicyAdmin(SingletonModelAdmin):
    exclude = ["name"]  # one row: its name is no choice anyone makes
    change_form_template = "admin/triage/gatepolicy/change_form.html"

    def get_urls(self) -> list[URLPattern]:
        urls = super().get_urls()
        what_if = path("what-if/", self.admin_site.admin_view(self.what_if_view), name="triage_gatepolicy_what_if")
        return [what_if, *urls]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """A changed target is recorded, so the Reports page can show it beside what was measured."""
        gate_policy_save(policy=obj, actor=request.user if request.user.is_authenticated else None)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **_autonomy_context()})

    def what_if_view(self, request: HttpRequest) -> HttpResponse:
        """Preview a target (and per-category thresholds) on the labelled history; nothing is saved."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        policy = gate_policy_current()
        form = WhatIfForm(request.GET or None, categories=list(Category.objects.values_list("label", flat=True)))
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "What if: a target tried on the labelled history",
            "opts": self.model._meta,
            "form": form,
            "policy": policy,
        }
        latest = classifier_latest()
        if form.is_valid() and latest is not None:
            data = calibration_set(classifier=latest, out_of_scope_share=policy.out_of_scope_share)
            share = form.cleaned_data["out_of_scope_share"]
            share = policy.out_of_scope_share if share is None else share
            # Another share of out-of-scope requests is other calibration data: more or fewer of the
            # unseen-category examples, each a mistake if automated (`calibration_set`).
            proposed_data = (
                data
                if share == policy.out_of_scope_share
                else calibration_set(classifier=latest, out_of_scope_share=share)
            )
            current = what_if(
                data=data,
                target=policy.target_mishandled_rate,
                confidence=policy.guarantee_confidence,
                min_per_category=policy.min_labelled_per_category,
                overrides={},
            )
            proposed = what_if(
                data=proposed_data,
                target=form.cleaned_data["target"],
                confidence=form.cleaned_data["confidence"],
                min_per_category=form.cleaned_data["min_per_category"],
                overrides=form.cleaned_data["overrides"],
            )
            context |= {
                "data": data,
                "current": current,
                "proposed": proposed,
                "current_share": data.out_of_scope_share,
                "proposed_share": proposed_data.out_of_scope_share,
            }
        elif latest is None:
            context["no_classifier"] = True
        return TemplateResponse(request, "admin/triage/gatepolicy/what_if.html", context)


def _autonomy_context() -> dict[str, Any]:
    """The thresholds in force, the categories refused and the risk-coverage curve, for the policy page."""
    latest = classifier_latest()
    if latest is None:
        return {"autonomy": None}
    policy = gate_policy_current()
    choice = thresholds_current(classifier=latest, policy=policy)
    if choice is None:
        return {"autonomy": {"legacy_threshold": latest.suggested_threshold}}
    data = calibration_set(classifier=latest, out_of_scope_share=policy.out_of_scope_share)
    points = data.curve(confidence=policy.guarantee_confidence, min_per_category=policy.min_labelled_per_category)
    manual = dict(Category.objects.exclude(confidence_threshold=None).values_list("label", "confidence_threshold"))
    return {
        "autonomy": {
            "choice": choice,
            "data": data,
            "points": points,
            "curve": risk_coverage_png(points=points, target=policy.target_mishandled_rate),
            "refused": [c for c in choice.categories.values() if c.source == "refused"],
            "own": [c for c in choice.categories.values() if c.source == "own"],
            "manual": manual,
            "global_override": policy.default_confidence_threshold,
            "what_if_query": urlencode(
                {
                    "target_percent": f"{policy.target_mishandled_rate * 100:g}",
                    "confidence_percent": f"{policy.guarantee_confidence * 100:g}",
                    "out_of_scope_percent": f"{policy.out_of_scope_share * 100:g}",
                    "min_per_category": policy.min_labelled_per_category,
                }
            ),
        }
    }


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
