"""Zendesk: webhooks signed with base64 HMAC-SHA256 over timestamp + body; REST API v2 for write-back.

Two payload shapes are accepted: Zendesk's event-subscription webhooks (``type`` is
``zen:event-type:ticket.created``) and a trigger/automation webhook whose JSON body is the template in the
README (``{"ticket": {"id": "{{ticket.id}}", ...}}``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from integrations.helpdesks.base import (
    Ignored,
    IncomingTicket,
    SignatureError,
    html_to_text,
    matches_base64,
    validated,
)
from integrations.helpdesks.client import HelpdeskClient
from integrations.helpdesks.http import quote
from integrations.helpdesks.zendesk.payloads import (
    TICKET_CREATED,
    EventEnvelope,
    TicketCreatedEvent,
    TriggerWebhook,
)

SIGNATURE = "X-Zendesk-Webhook-Signature"
TIMESTAMP = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION = "X-Zendesk-Webhook-Invocation-Id"


def verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    timestamp = headers.get(TIMESTAMP) or ""
    return matches_base64(headers.get(SIGNATURE), secret, timestamp.encode() + body, "sha256")


def signed_at(*, headers: Mapping[str, str]) -> float | None:
    value = headers.get(TIMESTAMP)
    if not value:
        raise SignatureError(f"{TIMESTAMP} is missing")
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise SignatureError(f"{TIMESTAMP} is not an ISO 8601 time") from exc


def parse(*, payload: Any, headers: Mapping[str, str]) -> IncomingTicket | Ignored:
    delivery = headers.get(INVOCATION) or ""
    if isinstance(payload, Mapping) and "type" in payload:  # event-subscription webhook
        envelope = validated(EventEnvelope, payload)
        if envelope.type != TICKET_CREATED:
            return Ignored(f"Zendesk event {envelope.type} carries no new ticket", event=envelope.type)
        event = validated(TicketCreatedEvent, payload)
        # The event names the requester by id only: `requester` stays empty for the Users API lookup.
        return IncomingTicket(
            external_id=event.detail.id,
            subject=event.detail.subject,
            body=html_to_text(event.detail.description),
            requester_id=event.detail.requester_id,
            tags=event.detail.tags,
            delivery_id=delivery or event.id,
            event=TICKET_CREATED,
        )
    ticket = validated(TriggerWebhook, payload).ticket
    return IncomingTicket(
        external_id=ticket.id,
        subject=ticket.subject,
        body=html_to_text(ticket.description),
        requester=ticket.requester.email if ticket.requester else "",
        tags=ticket.tags,
        delivery_id=delivery,
        event="ticket",
    )


class Client(HelpdeskClient):
    """https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/ (basic auth: email/token)."""

    vendor = "zendesk"

    def auth_headers(self) -> dict[str, str]:
        pair = base64.b64encode(f"{self.api_user}/token:{self.api_token}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def replies(self, *, ticket_id: str) -> list[str]:
        answer = self.http.send("GET", f"/api/v2/tickets/{quote(ticket_id)}/comments.json")
        return [c.get("body") or c.get("html_body") or "" for c in answer.get("comments", [])]

    def post_reply(self, *, ticket_id: str, body: str, requester: str, key: str, before_retry: Any) -> Any:
        return self.http.send(
            "PUT",
            f"/api/v2/tickets/{quote(ticket_id)}.json",
            body={"ticket": {"comment": {"body": body, "public": True}}},
            idempotency_key=key,
            before_retry=before_retry,
        )

    def add_tags(self, *, ticket_id: str, tags: list[str], key: str) -> Any:
        # PUT on the tags endpoint adds to the ticket's tags (POST would replace them).
        return self.http.send(
            "PUT", f"/api/v2/tickets/{quote(ticket_id)}/tags.json", body={"tags": tags}, idempotency_key=key
        )

    def set_priority(self, *, ticket_id: str, priority: str, key: str) -> Any:
        return self.http.send(
            "PUT",
            f"/api/v2/tickets/{quote(ticket_id)}.json",
            body={"ticket": {"priority": priority}},
            idempotency_key=key,
        )

    def solve(self, *, ticket_id: str, key: str) -> Any:
        return self.http.send(
            "PUT",
            f"/api/v2/tickets/{quote(ticket_id)}.json",
            body={"ticket": {"status": "solved"}},
            idempotency_key=key,
        )
