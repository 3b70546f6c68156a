"""Intercom: webhook notifications signed with ``X-Hub-Signature: sha1=<hex>`` (HMAC-SHA1 of the body with
the app's client secret). A new conversation from a user is topic ``conversation.user.created``; the
notification id is the delivery id. REST API (bearer token, ``Intercom-Version``) for write-back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.html import linebreaks

from integrations.helpdesks.base import Ignored, IncomingTicket, html_to_text, matches_hex, validated
from integrations.helpdesks.client import HelpdeskClient
from integrations.helpdesks.http import quote
from integrations.helpdesks.intercom.payloads import CREATED, ConversationUserCreated, NotificationEnvelope

SIGNATURE = "X-Hub-Signature"


def verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    return matches_hex(headers.get(SIGNATURE), secret, body, "sha1", prefix="sha1=")


def signed_at(*, headers: Mapping[str, str]) -> float | None:
    return None


def parse(*, payload: Any, headers: Mapping[str, str]) -> IncomingTicket | Ignored:
    topic = validated(NotificationEnvelope, payload).topic
    if topic != CREATED:
        return Ignored(f"Intercom topic {topic or '(none)'} carries no new ticket", event=topic)
    notification = validated(ConversationUserCreated, payload)
    item = notification.data.item
    return IncomingTicket(
        external_id=item.id,
        subject=html_to_text(item.source.subject),
        body=html_to_text(item.source.body),
        requester=item.source.author.email if item.source.author else "",
        tags=item.tags,
        delivery_id=notification.id,
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
        # No stable API version (2.11 to 2.16) can set a conversation's priority: "Update a conversation"
        # takes only read, title, custom_attributes and company_id (descriptions/<version>/api.intercom.io.yaml
        # in github.com/intercom/Intercom-OpenAPI; `priority` there is only in the Preview version). So it is
        # written as a tag, as for Help Scout and Front; see SOURCE.md in tests/integrations/helpdesks.
        return self.add_tags(ticket_id=ticket_id, tags=[f"priority-{priority}"], key=key)

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
