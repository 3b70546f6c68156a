import json
import secrets
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from integrations.helpdesks.connection import base_url_of, connection_module, credentials_check
from integrations.helpdesks.deliveries import failed_delivery_replay
from integrations.helpdesks.intake import helpdesk_source_secret_rotate
from integrations.mcp.client import ToolCallFailed
from integrations.mcp.registry import mcp_server_tools_refresh
from integrations.models import (
    ApiToken,
    FailedDelivery,
    HelpdeskSource,
    McpServer,
    McpTool,
    StaffToken,
    WebhookDelivery,
)
from integrations.tokens import api_token_issue, staff_token_issue

RECENT_DELIVERIES = 10


def masked(value: str) -> str:
    """All but the last four characters hidden (short values entirely)."""
    if not value:
        return "—"
    return "•" * 8 + value[-4:] if len(value) > 8 else "•" * 8


class HelpdeskSourceForm(forms.ModelForm):
    # Secrets are write-only: the form never renders them back; empty keeps the stored value.
    new_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        label="Webhook secret",
        help_text=(
            "Leave empty to keep the current secret. A new one replaces it; "
            "the old one stays valid for the grace period."
        ),
    )
    new_api_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        label="API token",
        help_text="Leave empty to keep the current token.",
    )

    new_url_token = forms.BooleanField(
        required=False,
        label="New URL token",
        help_text="Replace the URL token (the helpdesk's webhook URL must then be updated).",
    )

    class Meta:
        model = HelpdeskSource
        fields = ["name", "vendor", "base_url", "api_user", "active", "accept_url_token"]

    def clean(self):
        cleaned = super().clean() or {}
        vendor = cleaned.get("vendor") or self.instance.vendor
        if not self.instance.pk and not cleaned.get("new_secret") and not cleaned.get("accept_url_token"):
            self.add_error("new_secret", "A new source needs a webhook secret.")
        if cleaned.get("accept_url_token") and vendor and not _allows_url_token(vendor):
            self.add_error(
                "accept_url_token", "Only Chatwoot sources (releases that sign nothing) may use a URL token."
            )
        return cleaned


def _allows_url_token(vendor: str) -> bool:
    return bool(getattr(connection_module(vendor), "URL_TOKEN_SIGNATURE", ""))


def webhook_url(*, request: HttpRequest, source: HelpdeskSource) -> str:
    """The absolute URL to paste in the helpdesk (`TRIAGE_PUBLIC_URL`, else the admin request's own root)."""
    route = reverse("helpdesk-webhook", kwargs={"vendor": source.vendor, "source_id": source.pk})
    root = str(getattr(settings, "TRIAGE_PUBLIC_URL", "") or "").rstrip("/")
    url = f"{root}{route}" if root else request.build_absolute_uri(route)
    if source.accept_url_token and source.url_token:
        url += "?" + urlencode({"token": source.url_token})
    return url


def source_warnings(*, source: HelpdeskSource) -> list[str]:
    """What will make this source lose or hold back tickets, in words an admin can act on."""
    warnings = []
    if source.vendor == "front" and not source.api_token:
        warnings.append(
            "No API token: Front rule webhooks without 'Send full event data' send only a preview, which cannot be "
            "read without a token; such deliveries are kept as failed deliveries until a token is set and they "
            "are replayed."
        )
    if source.vendor == "zendesk" and not source.api_token:
        warnings.append(
            "No API token: requesters named only by id (the 'Ticket created' event) cannot be looked up; those "
            "tickets arrive without a requester, and nothing can be written back."
        )
    if source.vendor == "helpscout" and not (source.api_user and source.api_token):
        warnings.append("Help Scout write-back needs the app ID (API user) and app secret (API token).")
    if source.accept_url_token:
        warnings.append(
            "Unsigned deliveries are accepted with the URL token: weaker than a signature (see docs/SECURITY.md)."
        )
    if not base_url_of(source):
        warnings.append("No base URL: write-back and the credentials check have nowhere to go.")
    open_failures = source.failed_deliveries.filter(status=FailedDelivery.Status.FAILED).count() if source.pk else 0
    if open_failures:
        warnings.append(f"{open_failures} failed deliveries wait to be replayed (Failed deliveries).")
    return warnings


@admin.register(HelpdeskSource)
class HelpdeskSourceAdmin(admin.ModelAdmin):
    form = HelpdeskSourceForm
    list_display = [
        "name",
        "vendor",
        "active",
        "secret_masked",
        "previous_secret_valid_until",
        "webhook_path",
        "base_url",
        "warnings",
    ]
    list_filter = ["vendor", "active"]
    change_form_template = "admin/integrations/helpdesksource/change_form.html"
    actions = ["check_credentials"]
    readonly_fields = [
        "secret_masked",
        "previous_secret_masked",
        "previous_secret_valid_until",
        "api_token_masked",
        "webhook_path",
    ]

    @admin.display(description="secret")
    def secret_masked(self, obj: HelpdeskSource) -> str:
        return masked(obj.secret)

    @admin.display(description="previous secret")
    def previous_secret_masked(self, obj: HelpdeskSource) -> str:
        return masked(obj.previous_secret)

    @admin.display(description="API token")
    def api_token_masked(self, obj: HelpdeskSource) -> str:
        return masked(obj.api_token)

    @admin.display(description="warnings")
    def warnings(self, obj: HelpdeskSource) -> str:
        return " ".join(source_warnings(source=obj)) or "—"

    @admin.display(description="webhook URL path")
    def webhook_path(self, obj: HelpdeskSource) -> str:
        return f"/webhooks/{obj.vendor}/{obj.pk}" if obj.pk else "—"

    def save_model(self, request, obj, form, change):
        helpdesk_source_secret_rotate(source=obj, new_secret=form.cleaned_data.get("new_secret") or "")
        if form.cleaned_data.get("new_api_token"):
            obj.api_token = form.cleaned_data["new_api_token"]
        if obj.accept_url_token and (not obj.url_token or form.cleaned_data.get("new_url_token")):
            obj.url_token = secrets.token_urlsafe(32)
        super().save_model(request, obj, form, change)

    def get_urls(self):
        check = self.admin_site.admin_view(self.check_view)
        return [
            path("<int:source_id>/check/", check, name="integrations_helpdesksource_check"),
            *super().get_urls(),
        ]

    def _report_check(self, request: HttpRequest, source: HelpdeskSource) -> None:
        result = credentials_check(source=source)
        status = f" (HTTP {result.status})" if result.status else ""
        if result.ok:
            messages.success(request, f"{source.name}: {result.request}: {result.message}")
        else:
            messages.error(request, f"{source.name}: {result.request}{status} failed: {result.message}")

    def check_view(self, request: HttpRequest, source_id: int):
        """POST only: one read-only request to the vendor's API with the stored credentials."""
        source = get_object_or_404(HelpdeskSource, pk=source_id)
        if request.method == "POST" and self.has_change_permission(request, source):
            self._report_check(request, source)
        return HttpResponseRedirect(reverse("admin:integrations_helpdesksource_change", args=[source.pk]))

    @admin.action(description="Check credentials (read-only request to the vendor's API)")
    def check_credentials(self, request, queryset):
        for source in queryset:
            self._report_check(request, source)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk:
            setup = str(getattr(connection_module(obj.vendor), "SETUP", ""))
            url = webhook_url(request=request, source=obj)
            context.update(
                connection={
                    "webhook_url": url,
                    "setup": setup.replace("{url}", url),
                    "warnings": source_warnings(source=obj),
                    "check_url": reverse("admin:integrations_helpdesksource_check", args=[obj.pk]),
                    "deliveries": list(obj.deliveries.order_by("-received_at")[:RECENT_DELIVERIES]),
                    "failed": list(obj.failed_deliveries.order_by("-last_received_at")[:RECENT_DELIVERIES]),
                }
            )
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["received_at", "source", "delivery_id", "event", "external_id", "ticket_id", "outcome", "adjusted"]
    search_fields = ["delivery_id", "external_id", "body_digest"]
    list_filter = ["source", "outcome"]

    @admin.display(description="fitted to limits")
    def adjusted(self, obj: WebhookDelivery) -> str:
        return "; ".join(obj.adjustments) if obj.adjustments else "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


FAILED_DELIVERY_FIELDS = (
    "source",
    "vendor",
    "status",
    "error",
    "field",
    "answered",
    "retryable",
    "attempts",
    "replays",
    "ticket_id",
    "received_at",
    "last_received_at",
    "last_replayed_at",
    "body_digest",
    "headers_shown",
    "body_shown",
)


@admin.register(FailedDelivery)
class FailedDeliveryAdmin(admin.ModelAdmin):
    """Genuine deliveries that made no ticket, kept whole; "Replay" runs the intake on them again."""

    list_display = ["last_received_at", "source", "vendor", "status", "answered", "error_short", "attempts", "replays"]
    list_filter = ["status", "vendor", "retryable", "source"]
    search_fields = ["error", "body_digest"]
    actions = ["replay"]
    fields = FAILED_DELIVERY_FIELDS
    readonly_fields = FAILED_DELIVERY_FIELDS

    @admin.display(description="error")
    def error_short(self, obj: FailedDelivery) -> str:
        return obj.error if len(obj.error) <= 120 else obj.error[:119] + "…"

    @admin.display(description="headers (credentials removed)")
    def headers_shown(self, obj: FailedDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.headers, indent=2, ensure_ascii=False))

    @admin.display(description="body")
    def body_shown(self, obj: FailedDelivery) -> str:
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", bytes(obj.body).decode("utf-8", "replace"))

    @admin.action(description="Replay: run the intake again on the kept body")
    def replay(self, request, queryset):
        for failed in queryset.select_related("source"):
            outcome = failed_delivery_replay(failed=failed)
            if failed.status == FailedDelivery.Status.REPLAYED:
                messages.success(request, f"#{failed.pk}: replayed ({outcome.status}): {json.dumps(outcome.body)}")
            else:
                messages.error(request, f"#{failed.pk}: still failing ({outcome.status}): {failed.error}")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name", "active"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ["name", "source", "token_masked", "active", "created_at", "last_used_at"]
    readonly_fields = ["source", "token_masked", "created_at", "last_used_at"]

    @admin.display(description="token")
    def token_masked(self, obj: ApiToken) -> str:
        return "•" * 8 + obj.last4 if obj.last4 else "—"

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued, raw = api_token_issue(name=obj.name, active=obj.active)
        obj.pk, obj.source, obj.digest, obj.last4 = issued.pk, issued.source, issued.digest, issued.last4
        # Shown once: only the digest is stored.
        messages.warning(
            request,
            f"The new token is {raw} — copy it now, it will not be shown again. "
            f"It creates and reads only tickets of source {issued.source}.",
        )


class McpServerForm(forms.ModelForm):
    # Write-only, like a helpdesk's API token: never rendered back; empty keeps the stored value.
    new_bearer_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        label="Bearer token",
        help_text="Streamable HTTP: sent as `Authorization: Bearer …`. Leave empty to keep the current token.",
    )

    class Meta:
        model = McpServer
        fields = ["name", "transport", "url", "command", "args", "timeout_seconds", "active"]

    def clean(self):
        cleaned = super().clean() or {}
        transport = cleaned.get("transport")
        if transport == McpServer.Transport.HTTP and not cleaned.get("url"):
            self.add_error("url", "A streamable HTTP server needs its URL.")
        if transport == McpServer.Transport.STDIO and not cleaned.get("command"):
            self.add_error("command", "A stdio server needs the command that runs it.")
        args = cleaned.get("args")
        if args is not None and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
            self.add_error("args", 'A JSON list of strings, e.g. ["run", "shop-mcp"].')
        return cleaned


class McpToolInline(admin.TabularInline):
    model = McpTool
    extra = 0
    can_delete = False
    fields = ["name", "description", "read_only", "listed", "refreshed_at"]
    readonly_fields = ["name", "description", "listed", "refreshed_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    form = McpServerForm
    list_display = [
        "name",
        "transport",
        "target",
        "active",
        "bearer_token_masked",
        "tools_refreshed_at",
        "refresh_error",
    ]
    readonly_fields = ["bearer_token_masked", "tools_refreshed_at", "refresh_error"]
    inlines = [McpToolInline]
    actions = ["refresh_tools"]

    @admin.display(description="bearer token")
    def bearer_token_masked(self, obj: McpServer) -> str:
        return masked(obj.bearer_token)

    @admin.display(description="URL or command")
    def target(self, obj: McpServer) -> str:
        return obj.url if obj.transport == McpServer.Transport.HTTP else " ".join([obj.command, *obj.args])

    def save_model(self, request, obj, form, change):
        if form.cleaned_data.get("new_bearer_token"):
            obj.bearer_token = form.cleaned_data["new_bearer_token"]
        super().save_model(request, obj, form, change)

    @admin.action(description="Refresh tools (ask the server for its tools and store them)")
    def refresh_tools(self, request, queryset):
        for server in queryset:
            try:
                tools = mcp_server_tools_refresh(server_id=server.pk)
            except ToolCallFailed as exc:
                messages.error(request, f"{server.name}: the tools could not be listed: {exc}")
                continue
            names = ", ".join(t.name for t in tools) or "none"
            messages.success(request, f"{server.name}: {len(tools)} tool(s) listed: {names}.")


@admin.register(McpTool)
class McpToolAdmin(admin.ModelAdmin):
    list_display = ["name", "server", "read_only", "listed", "refreshed_at"]
    list_filter = ["server", "read_only", "listed"]
    list_editable = ["read_only"]
    search_fields = ["name", "description"]
    fields = ["server", "name", "description", "input_schema", "read_only", "listed", "discovered_at", "refreshed_at"]
    readonly_fields = ["server", "name", "description", "input_schema", "listed", "discovered_at", "refreshed_at"]

    def has_add_permission(self, request):
        return False  # tools come from their server ("Refresh tools"), never typed in


class StaffTokenForm(forms.ModelForm):
    class Meta:
        model = StaffToken
        fields = ["user", "name", "active"]


@admin.register(StaffToken)
class StaffTokenAdmin(admin.ModelAdmin):
    form = StaffTokenForm
    list_display = ["name", "user", "token_masked", "active", "created_at", "last_used_at"]
    list_filter = ["active"]
    readonly_fields = ["token_masked", "created_at", "last_used_at"]

    @admin.display(description="token")
    def token_masked(self, obj: StaffToken) -> str:
        return "•" * 8 + obj.last4 if obj.last4 else "—"

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued, raw = staff_token_issue(user=obj.user, name=obj.name)
        obj.pk, obj.digest, obj.last4 = issued.pk, issued.digest, issued.last4
        obj.active = issued.active
        if not form.cleaned_data.get("active", True):
            StaffToken.objects.filter(pk=issued.pk).update(active=False)
        # Shown once: only the digest is stored.
        messages.warning(
            request,
            f"The new token is {raw} — copy it now, it will not be shown again. An assistant using it acts as "
            f"{obj.user} on the product's MCP server, with that person's permissions.",
        )
