"""Zendesk webhook payloads, as Zendesk documents them.

- Event-subscription webhooks: https://developer.zendesk.com/api-reference/webhooks/event-types/webhook-event-types/
  (the envelope: ``type``, ``id``, ``account_id``, ``time``, ``subject``, ``detail``, ``event``) and
  https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/ (the ticket ``detail``:
  ``id``, ``subject``, ``description``, ``requester_id``, ``tags``, ...). The requester is an id only.
- Trigger/automation webhooks: the JSON body is written by the admin from Zendesk placeholders
  (support.zendesk.com, "Zendesk Support placeholders reference": ``{{ticket.id}}``, ``{{ticket.title}}``,
  ``{{ticket.description}}``, ``{{ticket.requester.email}}``, ``{{ticket.tags}}``); README gives the template.
  Placeholders render as strings, ``{{ticket.tags}}`` as one space-separated string.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator

from integrations.helpdesks.base import Email, Id, OptionalId, RequiredText, Tags, Text, VendorPayload, loose_object

TICKET_CREATED = "zen:event-type:ticket.created"


class EventEnvelope(VendorPayload):
    """What every event-subscription delivery has: which event it is."""

    type: str
    id: OptionalId = ""


class TicketCreatedDetail(VendorPayload):
    id: Id
    subject: Text = ""
    description: RequiredText
    requester_id: OptionalId = ""
    tags: Tags = []


class TicketCreatedEvent(VendorPayload):
    """``zen:event-type:ticket.created``."""

    type: Literal["zen:event-type:ticket.created"]
    id: OptionalId = ""
    detail: TicketCreatedDetail


class TriggerRequester(VendorPayload):
    email: Email = ""


class TriggerTicket(VendorPayload):
    id: Id
    subject: Text = ""
    description: RequiredText
    requester: Annotated[TriggerRequester | None, BeforeValidator(loose_object)] = None
    tags: Tags = []


class TriggerWebhook(VendorPayload):
    """The body of a trigger/automation webhook built from the README template."""

    ticket: TriggerTicket
