"""Deliveries as the helpdesks really send them (issue 12), end to end through the webhook endpoint, over the
vendor-sourced fixtures: none answered in a way that loses the ticket, none making two tickets."""

from __future__ import annotations

import json

from integrations.models import WebhookDelivery
from triage.models import Ticket


def nothing_stored() -> bool:
    return not Ticket.objects.exclude(source__in=["demo", "test"]).exists() and not WebhookDelivery.objects.exists()


# --- Front --------------------------------------------------------------------------------------------


def test_front_preview_is_refused_naming_the_event_and_how_to_get_its_message(helpdesk_source, deliver, sign, payload):
    # given: a rule webhook with "Send full event data" off (Front does not retry rule webhooks)
    source = helpdesk_source("front")
    body = payload("front/inbound_preview.json")

    # when
    response = deliver(source, body, sign("front", body))

    # then: not a 2xx (that would drop the ticket silently); the answer says which event and why
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["field"] == "target.data"
    assert "event preview" in answer["error"] and "evt_3c4a2f9d" in answer["error"]
    assert "cnv_3c4a2f9d" in answer["error"]
    assert nothing_stored()


def test_front_application_preview_names_the_wrapped_field(helpdesk_source, deliver, sign, payload):
    source = helpdesk_source("front")
    event = json.loads(payload("front/inbound_preview.json"))
    body = json.dumps({"type": "inbound_received", "authorization": {"id": "cmp_1"}, "payload": event}).encode()

    response = deliver(source, body, sign("front", body, app=True))

    assert response.status_code == 400
    assert response.json()["field"] == "payload.target.data"
    assert nothing_stored()
