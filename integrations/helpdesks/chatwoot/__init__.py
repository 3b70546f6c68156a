"""Chatwoot: webhooks signed with ``X-Chatwoot-Signature: sha256=<hex>``, HMAC-SHA256 of
``<timestamp>.<body>`` with the timestamp (unix seconds) in ``X-Chatwoot-Timestamp``. A ticket starts at an
incoming ``message_created`` (or ``conversation_created``); the ticket is the conversation. Application
API (``api_access_token`` header; `api_user` is the account id) for write-back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.helpdesks.base import (
    IncomingTicket,
    PayloadError,
    epoch_seconds,
    html_to_text,
    matches_hex,
    optional,
    requester_email,
    require,
    tag_list,
    text_id,
    text_of,
)
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


def parse(*, payload: Any, headers: Mapping[str, str]) -> IncomingTicket | None:
    if not isinstance(payload, Mapping):
        raise PayloadError("(root)", "must be a JSON object")
    event = payload.get("event")
    if event == "message_created":
        if payload.get("message_type") != "incoming" or payload.get("private"):
            return None  # our own replies and notes come back as events too
        conversation = require(payload, "conversation")
        return IncomingTicket(
            external_id=text_id(require(conversation, "id", at="conversation"), "conversation.id"),
            subject=text_of(
                optional(conversation, "additional_attributes.mail_subject"),
                "conversation.additional_attributes.mail_subject",
            ),
            body=html_to_text(text_of(require(payload, "content"), "content")),
            requester=requester_email(optional(payload, "sender.email")),
            tags=tag_list(optional(conversation, "labels", [])),
            delivery_id=headers.get(DELIVERY) or f"message:{text_id(require(payload, 'id'), 'id')}",
            event=event,
        )
    if event == "conversation_created":
        messages = optional(payload, "messages", [])
        first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], Mapping) else {}
        return IncomingTicket(
            external_id=text_id(require(payload, "id"), "id"),
            subject=text_of(
                optional(payload, "additional_attributes.mail_subject"), "additional_attributes.mail_subject"
            ),
            body=html_to_text(
                text_of(
                    require(first, "content", at="messages.0") if first else require(payload, "messages.0.content"),
                    "messages.0.content",
                )
            ),
            requester=requester_email(optional(payload, "meta.sender.email")),
            tags=tag_list(optional(payload, "labels", [])),
            delivery_id=headers.get(DELIVERY) or f"conversation:{payload['id']}",
            event=event,
        )
    return None


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
