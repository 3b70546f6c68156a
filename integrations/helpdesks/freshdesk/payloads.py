"""Freshdesk automation-rule webhook bodies (https://support.freshdesk.com/support/solutions/articles/132589).

Freshdesk sends what the rule's *Content* says, under ``freshdesk_webhook``:

- *Advanced* (JSON written by the admin from placeholders): our README template, requester in
  ``ticket_contact_email`` (``{{ticket.contact.email}}``);
- *Simple* (fields ticked in a list): each ticked field as ``ticket_<field>``; the requester is
  ``ticket_requester_email``.

``triggered_event`` is the ``{{triggered_event}}`` placeholder, filled in by Freshdesk with what fired the
rule, e.g. ``{ticket_action:created}`` (a rule on ticket creation) or ``{status:{from:Open,to:Pending}}``.
All placeholders arrive as strings; ``ticket_id`` may also be a number when the template does not quote it.
"""

from __future__ import annotations

import re

from integrations.helpdesks.base import Email, Id, RequiredText, Tags, Text, VendorPayload

# {{triggered_event}} for a ticket creation; the bare placeholder (a rule that leaves it unfilled) and our own
# earlier template value "ticket_created" are taken as creations as well.
_CREATED = re.compile(r"ticket_action\s*:\s*created", re.IGNORECASE)
_CREATION_WORDS = ("", "{{triggered_event}}", "ticket_created")


def is_creation(triggered_event: str) -> bool:
    value = triggered_event.strip()
    return value in _CREATION_WORDS or bool(_CREATED.search(value))


class WebhookEvent(VendorPayload):
    triggered_event: Text = ""


class WebhookEnvelope(VendorPayload):
    """Just enough to tell a creation from an update."""

    freshdesk_webhook: WebhookEvent


class TicketFields(VendorPayload):
    ticket_id: Id
    ticket_subject: Text = ""
    ticket_description: RequiredText
    ticket_contact_email: Email = ""  # advanced: {{ticket.contact.email}}
    ticket_requester_email: Email = ""  # simple mode
    ticket_tags: Tags = []
    triggered_event: Text = ""


class TicketCreated(VendorPayload):
    freshdesk_webhook: TicketFields
