"""Chatwoot webhook bodies, as Chatwoot's code builds them (github.com/chatwoot/chatwoot):

- ``app/listeners/webhook_listener.rb``: ``message_created`` is ``message.webhook_data`` plus ``event``;
  ``conversation_created`` is ``conversation.webhook_data`` plus ``event``.
- ``app/models/message.rb`` ``webhook_data``: ``id``, ``content``, ``message_type`` (the enum *name*:
  ``incoming``, ``outgoing``, ``activity``, ``template``), ``private``, ``sender`` (the contact's
  ``webhook_data``, with ``email``), ``conversation`` (the conversation's ``webhook_data``), ``account``.
- ``app/presenters/conversations/event_data_presenter.rb`` ``push_data`` (the conversation's
  ``webhook_data``): ``id`` is the conversation's *display id*, ``additional_attributes`` (``mail_subject`` for
  e-mail inboxes), ``labels``, ``meta.sender`` (the contact), and ``messages``: ``[last chat message]`` via
  ``messages.chat.last&.push_event_data`` — *empty* when the conversation is created before its first
  message (the widget and the API create the conversation, then the message). In ``push_event_data``
  ``message_type`` is the enum *number* (0 incoming, 1 outgoing).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, StrictInt, StrictStr

from integrations.helpdesks.base import Email, Id, OptionalId, Tags, Text, VendorPayload, loose_object

INCOMING = ("incoming", 0)


class EventEnvelope(VendorPayload):
    event: Text = ""


class Contact(VendorPayload):
    email: Email = ""


class Attributes(VendorPayload):
    mail_subject: Text = ""


class Conversation(VendorPayload):
    """The conversation's ``webhook_data`` (inside a message event)."""

    id: Id
    additional_attributes: Annotated[Attributes | None, BeforeValidator(loose_object)] = None
    labels: Tags = []

    @property
    def subject(self) -> str:
        return self.additional_attributes.mail_subject if self.additional_attributes else ""


class MessageCreated(VendorPayload):
    """``message_created``: ``message.webhook_data``."""

    event: Literal["message_created"]
    id: Id
    content: Text = ""
    message_type: StrictStr | StrictInt = ""
    private: bool = False
    sender: Annotated[Contact | None, BeforeValidator(loose_object)] = None
    conversation: Conversation

    @property
    def from_customer(self) -> bool:
        return self.message_type in INCOMING and not self.private


class PushMessage(VendorPayload):
    """A message's ``push_event_data`` (in a conversation's ``messages``)."""

    id: OptionalId = ""
    content: Text = ""
    message_type: StrictStr | StrictInt = ""
    private: bool = False


class Meta(VendorPayload):
    sender: Annotated[Contact | None, BeforeValidator(loose_object)] = None


class ConversationCreated(VendorPayload):
    """``conversation_created``: ``conversation.webhook_data`` (``push_data``)."""

    event: Literal["conversation_created"]
    id: Id
    additional_attributes: Annotated[Attributes | None, BeforeValidator(loose_object)] = None
    labels: Tags = []
    meta: Annotated[Meta | None, BeforeValidator(loose_object)] = None
    messages: list[PushMessage] = []

    @property
    def subject(self) -> str:
        return self.additional_attributes.mail_subject if self.additional_attributes else ""

    @property
    def requester(self) -> str:
        return self.meta.sender.email if self.meta and self.meta.sender else ""
