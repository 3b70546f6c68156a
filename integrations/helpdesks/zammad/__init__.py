"""Zammad: trigger webhooks signed with ``X-Hub-Signature: sha1=<hex>`` (HMAC-SHA1 of the body with the
webhook's signature token); ``X-Zammad-Delivery`` is the delivery id. The default payload holds
``ticket`` and ``article``. REST API (``Authorization: Token token=…``) for write-back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.helpdesks.base import Ignored, IncomingTicket, html_to_text, matches_hex, validated
from integrations.helpdesks.client import HelpdeskClient
from integrations.helpdesks.http import quote
from integrations.helpdesks.zammad.payloads import TriggerEnvelope, TriggerWithArticle

SIGNATURE = "X-Hub-Signature"
DELIVERY = "X-Zammad-Delivery"
PRIORITY = {"low": "1 low", "normal": "2 normal", "high": "3 high", "urgent": "3 high"}


def verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    return matches_hex(headers.get(SIGNATURE), secret, body, "sha1", prefix="sha1=")


def signed_at(*, headers: Mapping[str, str]) -> float | None:
    return None


def parse(*, payload: Any, headers: Mapping[str, str]) -> IncomingTicket | Ignored:
    trigger = headers.get("X-Zammad-Trigger") or "trigger"
    if not validated(TriggerEnvelope, payload).article:
        return Ignored('the trigger fired without an article ("article": {}): no new customer text', trigger)
    hook = validated(TriggerWithArticle, payload)
    article = hook.article
    if article.sender not in ("", "Customer") or article.internal:
        return Ignored(f"the article is from {article.sender or 'nobody'}, not a customer message", event=trigger)
    return IncomingTicket(
        external_id=hook.ticket.id,
        subject=hook.ticket.title,
        body=html_to_text(article.body) if article.content_type == "text/html" else article.body,
        requester=hook.ticket.customer.email if hook.ticket.customer else "",
        tags=hook.ticket.tags,
        delivery_id=headers.get(DELIVERY) or "",
        event=trigger,
    )


class Client(HelpdeskClient):
    """https://docs.zammad.org/en/latest/api/intro.html (token access)."""

    vendor = "zammad"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token token={self.api_token}"}

    def replies(self, *, ticket_id: str) -> list[str]:
        answer = self.http.send("GET", f"/api/v1/ticket_articles/by_ticket/{quote(ticket_id)}")
        return [a.get("body") or "" for a in answer if isinstance(a, dict) and a.get("sender") == "Agent"]

    def post_reply(self, *, ticket_id: str, body: str, requester: str, key: str, before_retry: Any) -> Any:
        article = {
            "ticket_id": int(ticket_id) if ticket_id.isdigit() else ticket_id,
            "body": body,
            "content_type": "text/plain",
            "type": "email" if requester else "note",
            "internal": False,
            "sender": "Agent",
        }
        if requester:
            article["to"] = requester
        return self.http.send(
            "POST", "/api/v1/ticket_articles", body=article, idempotency_key=key, before_retry=before_retry
        )

    def add_tags(self, *, ticket_id: str, tags: list[str], key: str) -> Any:
        for tag in tags:  # adding a tag the ticket has is a no-op
            self.http.send(
                "POST",
                "/api/v1/tags/add",
                body={"object": "Ticket", "o_id": ticket_id, "item": tag},
                idempotency_key=f"{key}:{tag}",
            )
        return {}

    def set_priority(self, *, ticket_id: str, priority: str, key: str) -> Any:
        return self.http.send(
            "PUT", f"/api/v1/tickets/{quote(ticket_id)}", body={"priority": PRIORITY[priority]}, idempotency_key=key
        )

    def solve(self, *, ticket_id: str, key: str) -> Any:
        return self.http.send(
            "PUT", f"/api/v1/tickets/{quote(ticket_id)}", body={"state": "closed"}, idempotency_key=key
        )
