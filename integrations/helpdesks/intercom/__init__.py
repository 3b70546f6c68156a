"""Intercom: webhook notifications signed with ``X-Hub-Signature: sha1=<hex>`` (HMAC-SHA1 of the body with
the app's client secret). A new conversation from a user is topic ``conversation.user.created``; the
notification id is the delivery id. REST API (bearer token, ``Intercom-Version``) for write-back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.html import linebreaks

from integrations.helpdesks.base import (
    IncomingTicket,
    PayloadError,
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

SIGNATURE = "X-Hub-Signature"
CREATED = "conversation.user.created"


def verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    return matches_hex(headers.get(SIGNATURE), secret, body, "sha1", prefix="sha1=")


def signed_at(*, headers: Mapping[str, str]) -> float | None:
    return None


def parse(*, payload: Any, headers: Mapping[str, str]) -> IncomingTicket | None:
    if not isinstance(payload, Mapping):
        raise PayloadError("(root)", "must be a JSON object")
    if payload.get("topic") != CREATED:
        return None
    item = require(payload, "data.item")
    return IncomingTicket(
        external_id=text_id(require(item, "id", at="data.item"), "data.item.id"),
        subject=html_to_text(text_of(optional(item, "source.subject"), "data.item.source.subject")),
        body=html_to_text(text_of(require(item, "source.body", at="data.item"), "data.item.source.body")),
        requester=requester_email(optional(item, "source.author.email")),
        tags=tag_list(optional(item, "tags", [])),
        delivery_id=text_id(optional(payload, "id", ""), "id"),
        event=CREATED,
    )


class Client(HelpdeskClient):
    """https://developers.intercom.com/docs/references/rest-api/api.intercom.io/conversations (bearer token;
    `api_user` is the admin id replies and notes are written as)."""

    vendor = "intercom"
    # Closing posts a "close" conversation part: a second one is a second part, not a no-op. Read the state back.
    read_back_kinds = frozenset({"solve"})

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}", "Intercom-Version": "2.11"}

    def replies(self, *, ticket_id: str) -> list[str]:
        answer = self.http.send("GET", f"/conversations/{quote(ticket_id)}")
        parts = (answer.get("conversation_parts") or {}).get("conversation_parts") or []
        return [
            p.get("body") or ""
            for p in parts
            if p.get("part_type") == "comment" and (p.get("author") or {}).get("type") == "admin"
        ]

    def reply_posted(self, *, ticket_id: str, body: str) -> bool:
        # Compared as posted (escaped HTML), so a reply that contains "<" is still recognised.
        return super().reply_posted(ticket_id=ticket_id, body=linebreaks(body, autoescape=True))

    def post_reply(self, *, ticket_id: str, body: str, requester: str, key: str, before_retry: Any) -> Any:
        return self.http.send(
            "POST",
            f"/conversations/{quote(ticket_id)}/reply",
            # Intercom renders a reply body as HTML: the reply is text, so it is escaped, its lines kept.
            body={
                "message_type": "comment",
                "type": "admin",
                "admin_id": self.api_user,
                "body": linebreaks(body, autoescape=True),
            },
            idempotency_key=key,
            before_retry=before_retry,
        )

    def add_tags(self, *, ticket_id: str, tags: list[str], key: str) -> Any:
        for name in tags:
            tag = self.http.send(
                "POST", "/tags", body={"name": name}, idempotency_key=f"{key}:{name}"
            )  # create or find
            self.http.send(
                "POST",
                f"/conversations/{quote(ticket_id)}/tags",
                body={"id": str(tag.get("id")), "admin_id": self.api_user},
                idempotency_key=f"{key}:{name}:attach",
            )
        return {}

    def set_priority(self, *, ticket_id: str, priority: str, key: str) -> Any:
        value = "priority" if priority in ("high", "urgent") else "not_priority"
        return self.http.send(
            "PUT", f"/conversations/{quote(ticket_id)}", body={"priority": value}, idempotency_key=key
        )

    def reconcile_kind(self, *, kind: str, ticket_id: str) -> dict[str, Any] | None:
        answer = self.http.send("GET", f"/conversations/{quote(ticket_id)}")
        return {"vendor": self.vendor, "status": "solved"} if answer.get("state") == "closed" else None

    def solve(self, *, ticket_id: str, key: str) -> Any:
        return self.http.send(
            "POST",
            f"/conversations/{quote(ticket_id)}/parts",
            body={"message_type": "close", "type": "admin", "admin_id": self.api_user},
            idempotency_key=key,
        )
