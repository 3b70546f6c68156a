"""Help Scout: webhooks signed with base64 HMAC-SHA1 of the body (``X-HelpScout-Signature``), the event in
``X-HelpScout-Event``; the body is the conversation. Mailbox API 2.0 for write-back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.html import linebreaks

from integrations.helpdesks.base import (
    Ignored,
    IncomingTicket,
    PayloadError,
    html_to_text,
    matches_base64,
    tag_list,
    validated,
)
from integrations.helpdesks.client import HelpdeskClient
from integrations.helpdesks.helpscout.api import ClientCredentialsAuth
from integrations.helpdesks.helpscout.payloads import CREATED, Conversation
from integrations.helpdesks.http import WritebackError, quote

SIGNATURE = "X-HelpScout-Signature"
EVENT = "X-HelpScout-Event"


def verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    return matches_base64(headers.get(SIGNATURE), secret, body, "sha1")


def signed_at(*, headers: Mapping[str, str]) -> float | None:
    return None


def parse(*, payload: Any, headers: Mapping[str, str]) -> IncomingTicket | Ignored:
    event = headers.get(EVENT) or ""
    if event != CREATED:
        return Ignored(f"Help Scout event {event or '(none)'} carries no new ticket", event=event)
    conversation = validated(Conversation, payload)
    body = conversation.customer_text
    if not body.strip():
        raise PayloadError("_embedded.threads", "has no customer thread with a body, and preview is empty")
    return IncomingTicket(
        external_id=conversation.id,
        subject=conversation.subject,
        body=html_to_text(body),
        requester=conversation.requester,
        tags=conversation.tags,
        event=CREATED,
    )


class Client(ClientCredentialsAuth, HelpdeskClient):
    """https://developer.helpscout.com/mailbox-api/ (OAuth2 client credentials: `api_user` is the app id,
    `api_token` the app secret; see helpscout/api.py). Help Scout has no priority: it is written as a tag."""

    vendor = "helpscout"

    def replies(self, *, ticket_id: str) -> list[str]:
        answer = self.http.send("GET", f"/v2/conversations/{quote(ticket_id)}/threads")
        threads = (answer.get("_embedded") or {}).get("threads") or []
        return [t.get("body") or "" for t in threads if t.get("type") == "reply"]

    def reply_posted(self, *, ticket_id: str, body: str) -> bool:
        # Compared as posted (escaped HTML), so a reply that contains "<" is still recognised.
        return super().reply_posted(ticket_id=ticket_id, body=linebreaks(body, autoescape=True))

    def post_reply(self, *, ticket_id: str, body: str, requester: str, key: str, before_retry: Any) -> Any:
        # Help Scout stores and e-mails a thread's text as HTML: the reply is text, so it is escaped, its lines kept.
        # `customer` is required by the Mailbox API (https://developer.helpscout.com/mailbox-api/endpoints/
        # conversations/threads/reply/): the requester's e-mail, else the conversation's primary customer.
        payload: dict[str, Any] = {
            "text": linebreaks(body, autoescape=True),
            "customer": self._customer(ticket_id, requester),
        }
        return self.http.send(
            "POST",
            f"/v2/conversations/{quote(ticket_id)}/reply",
            body=payload,
            idempotency_key=key,
            before_retry=before_retry,
        )

    def _customer(self, ticket_id: str, requester: str) -> dict[str, Any]:
        if requester:
            return {"email": requester}
        answer = self.http.send("GET", f"/v2/conversations/{quote(ticket_id)}")
        customer = answer.get("primaryCustomer") if isinstance(answer, dict) else None
        if not isinstance(customer, dict) or not customer.get("id"):
            raise WritebackError(f"conversation {ticket_id} has no primary customer to reply to")
        return {"id": customer["id"]}

    def _tags(self, ticket_id: str) -> list[str]:
        answer = self.http.send("GET", f"/v2/conversations/{quote(ticket_id)}")
        return tag_list(answer.get("tags") or [])

    def add_tags(self, *, ticket_id: str, tags: list[str], key: str) -> Any:
        # PUT .../tags replaces the conversation's tags: send the union.
        union = list(dict.fromkeys([*self._tags(ticket_id), *tags]))
        return self.http.send(
            "PUT", f"/v2/conversations/{quote(ticket_id)}/tags", body={"tags": union}, idempotency_key=key
        )

    def set_priority(self, *, ticket_id: str, priority: str, key: str) -> Any:
        return self.add_tags(ticket_id=ticket_id, tags=[f"priority-{priority}"], key=key)

    def solve(self, *, ticket_id: str, key: str) -> Any:
        return self.http.send(
            "PATCH",
            f"/v2/conversations/{quote(ticket_id)}",
            body={"op": "replace", "path": "/status", "value": "closed"},
            idempotency_key=key,
        )
