"""Front: rule webhooks are signed with base64 HMAC-SHA1 of the body (``X-Front-Signature``); application
webhooks with base64 HMAC-SHA256 of ``<timestamp>:<body>``, the timestamp (ms) in
``X-Front-Request-Timestamp``. An inbound message event carries the new conversation. Core API for
write-back (bearer token)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.html import linebreaks

from integrations.helpdesks.base import (
    Ignored,
    IncomingTicket,
    NeedsFetch,
    PayloadError,
    epoch_seconds,
    html_to_text,
    matches_base64,
    requester_email,
    validated,
)
from integrations.helpdesks.client import HelpdeskClient
from integrations.helpdesks.front.payloads import (
    INBOUND,
    EventEnvelope,
    InboundEvent,
    InboundPreview,
    is_preview,
    is_wrapped,
)
from integrations.helpdesks.http import quote

SIGNATURE = "X-Front-Signature"
TIMESTAMP = "X-Front-Request-Timestamp"
CHALLENGE = "X-Front-Challenge"


def verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    timestamp = headers.get(TIMESTAMP)
    if timestamp:  # application webhook
        return matches_base64(headers.get(SIGNATURE), secret, timestamp.encode() + b":" + body, "sha256")
    return matches_base64(headers.get(SIGNATURE), secret, body, "sha1")  # rule webhook


def handshake(*, headers: Mapping[str, str]) -> dict[str, str] | None:
    """Saving an application webhook sends a signed challenge that must be echoed back."""
    challenge = headers.get(CHALLENGE)
    return {"challenge": challenge} if challenge else None


def signed_at(*, headers: Mapping[str, str]) -> float | None:
    if not headers.get(TIMESTAMP):
        return None  # rule webhooks sign no time; a replay is a duplicate event id
    return epoch_seconds(headers.get(TIMESTAMP), header=TIMESTAMP)


def parse(*, payload: Any, headers: Mapping[str, str]) -> IncomingTicket | Ignored:
    """An inbound message event as a ticket. A preview (Send full event data off) raises `NeedsFetch` with the
    event id and conversation link: the ticket can only be made once the event is read through Front's API."""
    at = "payload" if is_wrapped(payload) else ""
    event_data = payload["payload"] if at else payload
    event_type = validated(EventEnvelope, event_data, at=at).type
    if event_type not in INBOUND:
        return Ignored(f"Front event {event_type or '(none)'} carries no new ticket", event=event_type)
    if is_preview(event_data):
        preview = validated(InboundPreview, event_data, at=at)
        raise NeedsFetch(
            vendor="front",
            event_id=preview.id,
            event_type=preview.type,
            conversation_id=preview.conversation.id,
            conversation_link=preview.conversation_link,
            field=f"{at}.target.data".lstrip("."),
            hint="or switch on 'Send full event data' in Front's Webhooks app settings",
        )
    event = validated(InboundEvent, event_data, at=at)
    message = event.target.data
    text = message.text if message.text.strip() else message.body
    if not text.strip():
        raise PayloadError(f"{at}.target.data.body".lstrip("."), "Field required")
    return IncomingTicket(
        external_id=event.conversation.id,
        subject=event.conversation.subject,
        body=html_to_text(text),
        requester=requester_email(event.requester),
        tags=event.conversation.tags,
        delivery_id=event.id,
        event=event_type,
    )


class Client(HelpdeskClient):
    """https://dev.frontapp.com/reference/ (bearer token; `api_user` is the teammate id replies are sent as)."""

    vendor = "front"

    def replies(self, *, ticket_id: str) -> list[str]:
        answer = self.http.send("GET", f"/conversations/{quote(ticket_id)}/messages")
        return [m.get("text") or m.get("body") or "" for m in answer.get("_results") or [] if not m.get("is_inbound")]

    def reply_posted(self, *, ticket_id: str, body: str) -> bool:
        # Compared as posted (escaped HTML), so a reply that contains "<" is still recognised.
        return super().reply_posted(ticket_id=ticket_id, body=linebreaks(body, autoescape=True))

    def post_reply(self, *, ticket_id: str, body: str, requester: str, key: str, before_retry: Any) -> Any:
        # Front renders a message body as HTML: the reply is text, so it is escaped, its lines kept.
        payload: dict[str, Any] = {"body": linebreaks(body, autoescape=True)}
        if self.api_user:
            payload["author_id"] = self.api_user
        return self.http.send(
            "POST",
            f"/conversations/{quote(ticket_id)}/messages",
            body=payload,
            idempotency_key=key,
            before_retry=before_retry,
        )

    def add_tags(self, *, ticket_id: str, tags: list[str], key: str) -> Any:
        known = {t.get("name"): t.get("id") for t in self.http.send("GET", "/tags").get("_results") or []}
        ids = []
        for name in tags:
            if name not in known:
                known[name] = self.http.send("POST", "/tags", body={"name": name}, idempotency_key=f"{key}:{name}").get(
                    "id"
                )
            ids.append(known[name])
        return self.http.send(
            "POST", f"/conversations/{quote(ticket_id)}/tags", body={"tag_ids": ids}, idempotency_key=key
        )

    def set_priority(self, *, ticket_id: str, priority: str, key: str) -> Any:
        return self.add_tags(ticket_id=ticket_id, tags=[f"priority-{priority}"], key=key)  # Front has no priority field

    def solve(self, *, ticket_id: str, key: str) -> Any:
        return self.http.send(
            "PATCH", f"/conversations/{quote(ticket_id)}", body={"status": "archived"}, idempotency_key=key
        )
