"""Freshdesk: automation-rule webhooks carry no HMAC, so each source has a shared secret token, sent in
``X-Webhook-Token`` (a custom header in the rule) or as the basic-auth password. REST API v2 for write-back.

The webhook body is the JSON template in the README, built from Freshdesk placeholders
(``{{ticket.id}}``, ``{{ticket.subject}}``, ``{{ticket.description}}``, ``{{ticket.contact.email}}``,
``{{ticket.tags}}``, ``{{triggered_event}}``), or a *Simple* content body (see payloads.py).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
from collections.abc import Mapping
from typing import Any

from integrations.helpdesks.base import Ignored, IncomingTicket, html_to_text, validated
from integrations.helpdesks.client import HelpdeskClient
from integrations.helpdesks.freshdesk.payloads import TicketCreated, WebhookEnvelope, is_creation
from integrations.helpdesks.http import quote

TOKEN = "X-Webhook-Token"
PRIORITY = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
RESOLVED = 4


def _presented(headers: Mapping[str, str]) -> str:
    if headers.get(TOKEN):
        return headers[TOKEN]
    auth = headers.get("Authorization") or ""
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return ""
        return decoded.partition(":")[2]
    return ""


def verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    given = _presented(headers)
    return bool(given and secret) and hmac.compare_digest(given.encode(), secret.encode())


def signed_at(*, headers: Mapping[str, str]) -> float | None:
    return None


def parse(*, payload: Any, headers: Mapping[str, str]) -> IncomingTicket | Ignored:
    triggered = validated(WebhookEnvelope, payload).freshdesk_webhook.triggered_event
    if not is_creation(triggered):
        return Ignored(f"Freshdesk rule fired for {triggered!r}, not a ticket creation", event=triggered)
    hook = validated(TicketCreated, payload).freshdesk_webhook
    return IncomingTicket(
        external_id=hook.ticket_id,
        subject=hook.ticket_subject,
        body=html_to_text(hook.ticket_description),
        requester=hook.ticket_contact_email or hook.ticket_requester_email,
        tags=hook.ticket_tags,
        delivery_id=headers.get("X-Request-Id") or "",
        event="ticket_created",
    )


class Client(HelpdeskClient):
    """https://developers.freshdesk.com/api/ (basic auth: API key and 'X')."""

    vendor = "freshdesk"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{self.api_token}:X".encode()).decode()}

    def replies(self, *, ticket_id: str) -> list[str]:
        answer = self.http.send("GET", f"/api/v2/tickets/{quote(ticket_id)}/conversations")
        return [c.get("body_text") or c.get("body") or "" for c in answer if isinstance(c, dict)]

    def post_reply(self, *, ticket_id: str, body: str, requester: str, key: str, before_retry: Any) -> Any:
        markup = "<br>".join(html.escape(line) for line in body.split("\n"))
        return self.http.send(
            "POST",
            f"/api/v2/tickets/{quote(ticket_id)}/reply",
            body={"body": markup},
            idempotency_key=key,
            before_retry=before_retry,
        )

    def add_tags(self, *, ticket_id: str, tags: list[str], key: str) -> Any:
        # Updating tags replaces them: read the ticket's tags and send the union.
        current = self.http.send("GET", f"/api/v2/tickets/{quote(ticket_id)}").get("tags") or []
        union = list(dict.fromkeys([*current, *tags]))
        return self.http.send("PUT", f"/api/v2/tickets/{quote(ticket_id)}", body={"tags": union}, idempotency_key=key)

    def set_priority(self, *, ticket_id: str, priority: str, key: str) -> Any:
        return self.http.send(
            "PUT", f"/api/v2/tickets/{quote(ticket_id)}", body={"priority": PRIORITY[priority]}, idempotency_key=key
        )

    def solve(self, *, ticket_id: str, key: str) -> Any:
        return self.http.send(
            "PUT", f"/api/v2/tickets/{quote(ticket_id)}", body={"status": RESOLVED}, idempotency_key=key
        )
