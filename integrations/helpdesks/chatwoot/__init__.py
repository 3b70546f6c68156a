"""Chatwoot: webhooks signed with ``X-Chatwoot-Signature: sha256=<hex>``, HMAC-SHA256 of
``<timestamp>.<body>`` with the timestamp (unix seconds) in ``X-Chatwoot-Timestamp``. A ticket starts at an
incoming ``message_created`` (or ``conversation_created``); the ticket is the conversation. Application
API (``api_access_token`` header; `api_user` is the account id) for write-back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.helpdesks.base import (
    Ignored,
    IncomingTicket,
    epoch_seconds,
    html_to_text,
    matches_hex,
    validated,
)
from integrations.helpdesks.chatwoot.payloads import INCOMING, ConversationCreated, EventEnvelope, MessageCreated
from integrations.helpdesks.client import HelpdeskClient
from integrations.helpdesks.http import quote

SIGNATURE = "X-Chatwoot-Signature"
TIMESTAMP = "X-Chatwoot-Timestamp"
DELIVERY = "X-Chatwoot-Delivery"


def verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    timestamp = headers.get(TIMESTAMP) or ""
    return matches_hex(headers.get(SIGNATURE), secret, timestamp.encode() + b"." + body, "sha256", prefix="sha256=")


def signed_at(*, headers: Mapping[str, str]) -> float | None:
    return epoch_seconds(headers.get(TIMESTAMP), header=TIMESTAMP)


def parse(*, payload: Any, headers: Mapping[str, str]) -> IncomingTicket | Ignored:
    """A ticket from the customer's first message. The ticket is the conversation (its display id), so a
    ``conversation_created`` that carries the message and the ``message_created`` of that message make one
    ticket; a ``conversation_created`` sent before any message (``messages`` empty) is answered 2xx and the
    ``message_created`` that follows makes the ticket."""
    event = validated(EventEnvelope, payload).event
    if event == "message_created":
        message = validated(MessageCreated, payload)
        if not message.from_customer:
            return Ignored("an outgoing, activity or private message (our own replies come back too)", event=event)
        if not message.content.strip():
            return Ignored("the message has no text (attachments only); the next text message makes the ticket", event)
        return IncomingTicket(
            external_id=message.conversation.id,
            subject=message.conversation.subject,
            body=html_to_text(message.content),
            requester=message.sender.email if message.sender else "",
            tags=message.conversation.labels,
            delivery_id=headers.get(DELIVERY) or f"message:{message.id}",
            event=event,
        )
    if event == "conversation_created":
        conversation = validated(ConversationCreated, payload)
        last = conversation.messages[-1] if conversation.messages else None
        if last is None:
            return Ignored("no message yet: the conversation's first incoming message_created makes the ticket", event)
        if last.message_type not in INCOMING or last.private or not last.content.strip():
            return Ignored("no customer text yet (started by an agent, or attachments only)", event=event)
        return IncomingTicket(
            external_id=conversation.id,
            subject=conversation.subject,
            body=html_to_text(last.content),
            requester=conversation.requester,
            tags=conversation.labels,
            delivery_id=headers.get(DELIVERY) or f"conversation:{conversation.id}",
            event=event,
        )
    return Ignored(f"Chatwoot event {event or '(none)'} carries no new ticket", event=event)


class Client(HelpdeskClient):
    """https://developers.chatwoot.com/api-reference/ (Application API)."""

    vendor = "chatwoot"

    def auth_headers(self) -> dict[str, str]:
        return {"api_access_token": self.api_token}

    def _path(self, ticket_id: str, rest: str = "") -> str:
        return f"/api/v1/accounts/{quote(self.api_user)}/conversations/{quote(ticket_id)}{rest}"

    def replies(self, *, ticket_id: str) -> list[str]:
        answer = self.http.send("GET", self._path(ticket_id, "/messages"))
        return [m.get("content") or "" for m in answer.get("payload") or [] if m.get("message_type") in (1, "outgoing")]

    def post_reply(self, *, ticket_id: str, body: str, requester: str, key: str, before_retry: Any) -> Any:
        return self.http.send(
            "POST",
            self._path(ticket_id, "/messages"),
            body={"content": body, "message_type": "outgoing", "private": False},
            idempotency_key=key,
            before_retry=before_retry,
        )

    def add_tags(self, *, ticket_id: str, tags: list[str], key: str) -> Any:
        # Posting labels replaces them: send the union with the current ones.
        current = self.http.send("GET", self._path(ticket_id, "/labels")).get("payload") or []
        union = list(dict.fromkeys([*current, *tags]))
        return self.http.send("POST", self._path(ticket_id, "/labels"), body={"labels": union}, idempotency_key=key)

    def set_priority(self, *, ticket_id: str, priority: str, key: str) -> Any:
        return self.http.send(
            "POST",
            self._path(ticket_id, "/toggle_priority"),
            body={"priority": priority if priority != "normal" else "medium"},
            idempotency_key=key,
        )

    def solve(self, *, ticket_id: str, key: str) -> Any:
        return self.http.send(
            "POST", self._path(ticket_id, "/toggle_status"), body={"status": "resolved"}, idempotency_key=key
        )
