from django import forms
from django.contrib import admin, messages

from integrations.helpdesks.intake import helpdesk_source_secret_rotate
from integrations.mcp.client import ToolCallFailed
from integrations.mcp.registry import mcp_server_tools_refresh
from integrations.models import ApiToken, HelpdeskSource, McpServer, McpTool, StaffToken, WebhookDelivery
from integrations.tokens import api_token_issue, staff_token_issue


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

    class Meta:
        model = HelpdeskSource
        fields = ["name", "vendor", "base_url", "api_user", "active"]

    def clean(self):
        cleaned = super().clean() or {}
        if not self.instance.pk and not cleaned.get("new_secret"):
            self.add_error("new_secret", "A new source needs a webhook secret.")
        return cleaned


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
    ]
    list_filter = ["vendor", "active"]
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

    @admin.display(description="webhook URL path")
    def webhook_path(self, obj: HelpdeskSource) -> str:
        return f"/webhooks/{obj.vendor}/{obj.pk}" if obj.pk else "—"

    def save_model(self, request, obj, form, change):
        helpdesk_source_secret_rotate(source=obj, new_secret=form.cleaned_data.get("new_secret") or "")
        if form.cleaned_data.get("new_api_token"):
            obj.api_token = form.cleaned_data["new_api_token"]
        super().save_model(request, obj, form, change)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["received_at", "source", "delivery_id", "event", "external_id", "ticket_id", "outcome", "adjusted"]
    list_filter = ["source", "outcome"]
    search_fields = ["delivery_id", "external_id"]

    @admin.display(description="fitted to limits")
    def adjusted(self, obj: WebhookDelivery) -> str:
        return "; ".join(obj.adjustments) if obj.adjustments else "—"

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
