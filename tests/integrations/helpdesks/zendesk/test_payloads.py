"""Zendesk payload models over Zendesk-sourced fixtures (integrations/helpdesks/zendesk/fixtures/SOURCE.md)."""

from __future__ import annotations

import base64
import hmac
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
    assert (ticket.subject, ticket.body) == ("ticketinfo_2294a6e9ece2", "ticket_info_desc_2294a6e9ece2")
    assert ticket.tags == ["ticket-info-test-tag"]
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


# Zendesk's documented static signing secret for test deliveries sent from the webhook builder
# (https://developer.zendesk.com/documentation/webhooks/verifying/#signing-secrets-on-new-webhooks), used as
# the key string itself. Zendesk publishes no byte-exact signature over a body: the expected one is computed
# with one hmac call as that page describes (base64(HMACSHA256(TIMESTAMP + BODY))), never with our verify.
ZENDESK_TEST_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="


def test_a_builder_test_delivery_signed_with_zendesks_documented_test_secret_verifies():
    body = fixture_body("zendesk/ticket_created_event.json")
    stamp = "2025-01-08T10:12:08Z"
    expected = base64.b64encode(hmac.new(ZENDESK_TEST_SECRET.encode(), stamp.encode() + body, "sha256").digest())
    headers = {"X-Zendesk-Webhook-Signature": expected.decode(), "X-Zendesk-Webhook-Signature-Timestamp": stamp}

    assert zendesk.verify(headers=headers, body=body, secret=ZENDESK_TEST_SECRET)
    assert not zendesk.verify(headers=headers, body=body + b" ", secret=ZENDESK_TEST_SECRET)
    assert not zendesk.verify(headers=headers, body=body, secret="this_secret_is_for_testing_only")
