"""Intercom webhook notifications (https://developers.intercom.com/docs/references/webhooks/webhook-models):
a ``notification_event`` whose ``topic`` names the event and whose ``data.item`` is the API object, here a
Conversation (https://developers.intercom.com/docs/references/rest-api/api.intercom.io/conversations/conversation):
the customer's first message is ``source`` (``subject`` and ``body`` are HTML; ``author`` has the e-mail),
tags a ``tag.list``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator

from integrations.helpdesks.base import Email, Id, OptionalId, RequiredText, Tags, Text, VendorPayload, loose_object

CREATED = "conversation.user.created"


class NotificationEnvelope(VendorPayload):
    topic: Text = ""
    id: OptionalId = ""


class Author(VendorPayload):
    type: Text = ""
    email: Email = ""


class Source(VendorPayload):
    subject: Text = ""
    body: RequiredText
    author: Annotated[Author | None, BeforeValidator(loose_object)] = None


class Conversation(VendorPayload):
    id: Id
    source: Source
    tags: Tags = []


class ConversationData(VendorPayload):
    item: Conversation


class ConversationUserCreated(VendorPayload):
    """Topic ``conversation.user.created``: a user or lead started a conversation."""

    topic: Literal["conversation.user.created"]
    id: OptionalId = ""
    data: ConversationData
