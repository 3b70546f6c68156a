"""Helpdesk connections, webhook deliveries and API tokens.

Models hold fields and constraints only; verification and parsing live in `integrations.helpdesks`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from integrations.vendors import REGISTRY as VENDOR_REGISTRY


class HelpdeskSource(models.Model):
    """One helpdesk connection: where its webhooks come from and where decisions are written back."""

    # From the vendor registry: a vendor added there is a choice here (and a migration of the choices).
    # Django's documented functional form, which django-stubs does not type.
    Vendor = models.TextChoices(  # type: ignore[call-overload]
        "Vendor", [(v.name.upper(), (v.name, v.label)) for v in VENDOR_REGISTRY]
    )

    name = models.CharField(max_length=100, unique=True)
    vendor = models.CharField(max_length=20, choices=Vendor.choices)
    secret = models.CharField(max_length=500, help_text="Webhook signing secret (Freshdesk: the shared token).")
    previous_secret = models.CharField(max_length=500, blank=True, help_text="The secret before the last rotation.")
    previous_secret_valid_until = models.DateTimeField(
        null=True, blank=True, help_text="Deliveries signed with the previous secret are accepted until then."
    )
    base_url = models.URLField(blank=True, help_text="REST API root, e.g. https://acme.zendesk.com")
    api_user = models.CharField(
        max_length=200,
        blank=True,
        help_text="Zendesk agent e-mail, Intercom admin id, Chatwoot account id, Front author id; else empty.",
    )
    api_token = models.CharField(
        max_length=500, blank=True, help_text="REST API token or key (Help Scout: the app's client secret)."
    )
    # Chatwoot releases before signed webhooks (PR 13573, 2026-02) send no signature and no time. Such a
    # delivery is accepted only when an admin opts in, and only with this secret in the URL's `token`: weaker
    # than a signature (the token travels in every URL and may be logged by proxies; a replayed body is caught
    # only by its digest), so it is off unless switched on. See docs/SECURITY.md.
    accept_url_token = models.BooleanField(
        default=False,
        verbose_name="accept unsigned deliveries with the URL token",
        help_text=(
            "Chatwoot before signed webhooks only. Weaker than a signature: anyone who sees the URL (proxy logs, "
            "the Chatwoot admin page) can send tickets. Leave off when your Chatwoot signs its webhooks."
        ),
    )
    url_token = models.CharField(max_length=100, blank=True, help_text="The secret `token` of the webhook URL.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.vendor})"

    @property
    def ticket_source(self) -> str:
        """What `Ticket.source` says for tickets from this connection."""
        return f"{self.vendor}:{self.pk}"


class WebhookDelivery(models.Model):
    """A delivery seen once: a vendor's retry of the same delivery id is answered without effect."""

    class Outcome(models.TextChoices):
        CREATED = "created"
        DUPLICATE = "duplicate", "Known ticket"

    source = models.ForeignKey(HelpdeskSource, on_delete=models.CASCADE, related_name="deliveries")
    delivery_id = models.CharField(max_length=200)
    event = models.CharField(max_length=100, blank=True)
    external_id = models.CharField(max_length=200, blank=True)
    ticket_id = models.BigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.CREATED)
    body_digest = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="sha256 of the raw body: a replay is caught by it where the vendor signs no time.",
    )
    adjustments = models.JSONField(
        default=list,
        blank=True,
        help_text="What the intake changed to fit the ticket's limits (e.g. a body truncated), one line each.",
    )
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["source", "delivery_id"], name="webhookdelivery_unique_source_delivery")
        ]

    def __str__(self) -> str:
        return f"{self.source_id}/{self.delivery_id}"


class FailedDelivery(models.Model):
    """A delivery that passed its signature check but made no ticket: kept whole, to be replayed after a fix.

    Nothing a helpdesk sends is only logged: a payload we cannot parse, a Front preview we could not read
    through Front's API, a Zendesk requester the Users API did not answer for. The same body sent again (a
    vendor's retry) counts another attempt on the same row while it is unresolved.
    """

    class Status(models.TextChoices):
        FAILED = "failed"
        REPLAYED = "replayed", "Replayed: ticket made or known"

    source = models.ForeignKey(HelpdeskSource, on_delete=models.CASCADE, related_name="failed_deliveries")
    vendor = models.CharField(max_length=20)
    body = models.BinaryField(help_text="The raw body, byte for byte.")
    headers = models.JSONField(
        default=dict, help_text="The request's headers, secrets (Authorization, tokens) removed."
    )
    body_digest = models.CharField(max_length=64)
    error = models.TextField()
    field = models.CharField(max_length=300, blank=True, help_text="The payload field the error names, if any.")
    answered = models.PositiveSmallIntegerField(help_text="The HTTP status the helpdesk was answered.")
    retryable = models.BooleanField(
        default=False, help_text="A remote API did not answer: replaying it later may succeed without a fix."
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.FAILED)
    attempts = models.PositiveIntegerField(default=1, help_text="Times the helpdesk sent this body.")
    replays = models.PositiveIntegerField(default=0)
    ticket_id = models.BigIntegerField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    last_received_at = models.DateTimeField(auto_now_add=True)
    last_replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "failed deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["source", "body_digest"],
                condition=models.Q(status="failed"),
                name="faileddelivery_one_open_per_body",
            )
        ]

    def __str__(self) -> str:
        return f"{self.vendor}/{self.source_id} {self.received_at:%Y-%m-%d %H:%M} {self.error[:60]}"


class ApiToken(models.Model):
    """A bearer token for the generic ticket API; only its sha256 is stored.

    Each token is its own ticket source: it creates tickets under `source` and sees only those, so an
    `external_id` is one client's id and never reaches another client's ticket.
    """

    name = models.CharField(max_length=100, unique=True)
    source = models.CharField(
        max_length=50,
        unique=True,
        editable=False,
        help_text=(
            "`Ticket.source` of this token's tickets (api:<token id>; plain `api` for tickets from before tokens "
            "were scoped)."
        ),
    )
    digest = models.CharField(max_length=64, unique=True, help_text="sha256 hex of the token.")
    last4 = models.CharField(max_length=4, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} (…{self.last4})"


class McpServer(models.Model):
    """An MCP server the product calls tools on: typically the shop's or billing system's.

    Over streamable HTTP with a bearer token (write-only, like a helpdesk's API token), or a local command
    over stdio. Its tools are listed by "refresh tools" (`integrations.mcp.registry.mcp_server_tools_refresh`).
    """

    class Transport(models.TextChoices):
        HTTP = "http", "Streamable HTTP"
        STDIO = "stdio", "Local command (stdio)"

    name = models.CharField(max_length=100, unique=True)
    transport = models.CharField(max_length=10, choices=Transport.choices, default=Transport.HTTP)
    url = models.URLField(blank=True, help_text="Streamable HTTP endpoint, e.g. https://shop.example.com/mcp")
    bearer_token = models.CharField(max_length=500, blank=True, help_text="Sent as `Authorization: Bearer …`.")
    command = models.CharField(max_length=500, blank=True, help_text="Stdio: the executable to run.")
    args = models.JSONField(default=list, blank=True, help_text="Stdio: its arguments, a JSON list of strings.")
    timeout_seconds = models.FloatField(default=10.0, help_text="One operation (connect, call, answer) at most.")
    active = models.BooleanField(default=True)
    tools_refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_error = models.TextField(blank=True, help_text="Why the last refresh failed (empty: it worked).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(transport="http") & ~models.Q(url=""))
                | (models.Q(transport="stdio") & ~models.Q(command="")),
                name="mcpserver_transport_target",
            )
        ]

    def __str__(self) -> str:
        return self.name


class McpTool(models.Model):
    """A tool an MCP server listed: its name, description and input JSON Schema, as of the last refresh."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict)
    read_only = models.BooleanField(
        default=False,
        help_text="Only reads (a look-up): may ground a draft. From the server's readOnlyHint; an admin may mark it.",
    )
    listed = models.BooleanField(default=True, help_text="Listed by the server at the last refresh.")
    discovered_at = models.DateTimeField(auto_now_add=True)
    refreshed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["server__name", "name"]
        verbose_name = "MCP tool"
        constraints = [models.UniqueConstraint(fields=["server", "name"], name="mcptool_unique_server_name")]

    def __str__(self) -> str:
        return f"{self.server.name}: {self.name}"


class StaffToken(models.Model):
    """A staff member's bearer token for the product's own MCP server (an assistant acting as them).

    Only its sha256 is stored. Every call made with it is that person's: the inbox's permissions apply,
    and decisions are audited under their name.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_tokens")
    name = models.CharField(max_length=100, help_text="Where it is used, e.g. “Kim's Claude Desktop”.")
    digest = models.CharField(max_length=64, unique=True, help_text="sha256 hex of the token.")
    last4 = models.CharField(max_length=4, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user_id", "name"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="stafftoken_unique_user_name")]

    def __str__(self) -> str:
        return f"{self.name} (…{self.last4})"
