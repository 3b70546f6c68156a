"""Zendesk payload models over Zendesk-sourced fixtures (integrations/helpdesks/zendesk/fixtures/SOURCE.md)."""

from __future__ import annotations

import json

import pytest

from integrations.helpdesks import zendesk
from integrations.helpdesks.base import Ignored, IncomingTicket, PayloadError
from integrations.helpdesks.zendesk.payloads import TicketCreatedEvent, TriggerWebhook
from tests.integrations.helpdesks.stubs import fixture_body


def doc(name: str) -> dict:
    return json.loads(fixture_body(f"zendesk/{name}"))


def test_ticket_created_event_keeps_the_requester_id_for_the_users_api_lookup():
    # given: the documented event, which names the requester by id only
    payload = doc("ticket_created_event.json")

    # when
    ticket = zendesk.parse(payload=payload, headers={"X-Zendesk-Webhook-Invocation-Id": "inv-1"})

    # then: a ticket all the same, requester left empty, the id kept
    assert isinstance(ticket, IncomingTicket)
    assert (ticket.external_id, ticket.requester, ticket.requester_id) == ("5158", "", "8447388090494")
    assert ticket.body == "Hi, my grinder arrived with a cracked hopper. Can you help?"
    assert ticket.delivery_id == "inv-1"


def test_without_an_invocation_id_the_event_id_is_the_delivery_id():
    ticket = zendesk.parse(payload=doc("ticket_created_event.json"), headers={})

    assert isinstance(ticket, IncomingTicket)
    assert ticket.delivery_id == "cbe4028c-7239-495d-b020-f22348516046"


def test_other_events_are_ignored_with_their_type():
    result = zendesk.parse(payload=doc("ticket_comment_added.json"), headers={})

    assert result == Ignored(
        "Zendesk event zen:event-type:ticket.comment_added carries no new ticket",
        event="zen:event-type:ticket.comment_added",
    )


def test_models_ignore_fields_zendesk_adds_and_validate_the_ones_read():
    payload = doc("ticket_created_event.json")
    payload["detail"]["brand_new_field"] = {"anything": [1, 2]}
    payload["a_new_top_level_field"] = True

    assert TicketCreatedEvent.model_validate(payload).detail.id == "5158"
    assert TriggerWebhook.model_validate(doc("trigger_ticket.json")).ticket.tags == ["order_status", "web_form"]


@pytest.mark.parametrize(
    ("fixture", "change", "field"),
    [
        ("ticket_created_event.json", lambda d: d["detail"].pop("description"), "detail.description"),
        ("ticket_created_event.json", lambda d: d["detail"].update(id=True), "detail.id"),
        ("ticket_created_event.json", lambda d: d["detail"].update(subject=["x"]), "detail.subject"),
        ("ticket_created_event.json", lambda d: d.update(type=7), "type"),
        ("trigger_ticket.json", lambda d: d["ticket"].update(description="  "), "ticket.description"),
        ("trigger_ticket.json", lambda d: d.pop("ticket"), "ticket"),
    ],
)
def test_a_field_we_read_that_is_missing_or_wrong_is_named(fixture, change, field):
    payload = doc(fixture)
    change(payload)

    with pytest.raises(PayloadError) as raised:
        zendesk.parse(payload=payload, headers={})

    assert raised.value.field == field


def test_a_trigger_requester_that_is_not_an_object_is_left_out_rather_than_refused():
    payload = doc("trigger_ticket.json")
    payload["ticket"]["requester"] = "sam.carter@example.com"

    ticket = zendesk.parse(payload=payload, headers={})

    assert isinstance(ticket, IncomingTicket) and ticket.requester == ""
