"""Front webhook bodies (https://dev.frontapp.com/docs/webhooks-1, https://dev.frontapp.com/reference/events).

- Rule webhooks send the event itself: its full data when the Webhooks app has *Send full event data*
  switched on, otherwise an *event preview* (https://dev.frontapp.com/reference/events, "Event Preview"):
  ids and ``_links`` only, no conversation subject and no message body.
- Application webhooks wrap the event: ``{"type", "authorization": {"id"}, "payload": <event>}``.

An inbound message is event type ``inbound`` (rule) or ``inbound_received`` (application); the ``target``
is the message, ``conversation`` the conversation it opened.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from integrations.helpdesks.base import Email, Id, OptionalId, Tags, Text, VendorPayload, loose_object

INBOUND = ("inbound", "inbound_received")  # rule webhooks / application webhooks


def is_wrapped(payload: Any) -> bool:
    """An application webhook: the event is under ``payload``."""
    return isinstance(payload, dict) and isinstance(payload.get("payload"), dict)


class EventEnvelope(VendorPayload):
    type: Text = ""
    id: OptionalId = ""


class Links(VendorPayload):
    self_link: Text = Field(default="", alias="self")


class ResourcePreview(VendorPayload):
    """A resource in an event preview: its id and the API link to read it."""

    id: OptionalId = ""
    links: Annotated[Links | None, BeforeValidator(loose_object)] = Field(default=None, alias="_links")

    @property
    def link(self) -> str:
        return self.links.self_link if self.links else ""


class TargetPreview(VendorPayload):
    data: Annotated[ResourcePreview | None, BeforeValidator(loose_object)] = None


class InboundPreview(VendorPayload):
    """An ``inbound`` event preview: the event id and links, the conversation's id and link, no message."""

    id: Id
    type: Text
    conversation: ResourcePreview
    target: Annotated[TargetPreview | None, BeforeValidator(loose_object)] = None

    @property
    def conversation_link(self) -> str:
        return self.conversation.link or (
            f"https://api2.frontapp.com/conversations/{self.conversation.id}" if self.conversation.id else ""
        )


def is_preview(event: Any) -> bool:
    """The message (``target.data``) came without its body and text: Send full event data is off."""
    target = event.get("target") if isinstance(event, dict) else None
    data = target.get("data") if isinstance(target, dict) else None
    return not (isinstance(data, dict) and ("body" in data or "text" in data))


class Recipient(VendorPayload):
    handle: Text = ""
    role: Text = ""


class Author(VendorPayload):
    email: Email = ""


class Message(VendorPayload):
    id: OptionalId = ""
    body: Text = ""  # HTML
    text: Text = ""  # the same as plain text, when Front sends it
    author: Annotated[Author | None, BeforeValidator(loose_object)] = None
    recipients: list[Recipient] = []

    @property
    def sender(self) -> str:
        if self.author and self.author.email:
            return self.author.email
        return next((r.handle for r in self.recipients if r.role == "from"), "")


class Target(VendorPayload):
    data: Message


class Conversation(VendorPayload):
    id: Id
    subject: Text = ""
    tags: Tags = []
    recipient: Annotated[Recipient | None, BeforeValidator(loose_object)] = None


class InboundEvent(VendorPayload):
    """An ``inbound``/``inbound_received`` event with full data."""

    id: OptionalId = ""
    type: Text
    conversation: Conversation
    target: Target

    @property
    def requester(self) -> str:
        sender = self.target.data.sender
        if not sender and self.conversation.recipient:
            sender = self.conversation.recipient.handle
        return sender
