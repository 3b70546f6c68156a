"""Chatwoot payload models over payloads built the way Chatwoot's code builds them
(integrations/helpdesks/chatwoot/fixtures/SOURCE.md)."""

from __future__ import annotations

import json

import pytest

from integrations.helpdesks import chatwoot
from integrations.helpdesks.base import Ignored, IncomingTicket, PayloadError
from tests.integrations.helpdesks.stubs import fixture_body


def doc(name: str) -> dict:
    return json.loads(fixture_body(f"chatwoot/{name}"))


def test_an_incoming_message_is_a_ticket_keyed_by_the_conversation_display_id():
    ticket = chatwoot.parse(payload=doc("message_created.json"), headers={})

    assert isinstance(ticket, IncomingTicket)
    assert (ticket.external_id, ticket.requester) == ("312", "rui.costa@example.com")
    assert ticket.delivery_id == "message:5561"


def test_the_delivery_header_is_the_delivery_id_when_sent():
    ticket = chatwoot.parse(payload=doc("message_created.json"), headers={"X-Chatwoot-Delivery": "d-1"})

    assert isinstance(ticket, IncomingTicket) and ticket.delivery_id == "d-1"


def test_a_conversation_created_with_its_first_message_is_a_ticket():
    ticket = chatwoot.parse(payload=doc("conversation_created.json"), headers={})

    assert isinstance(ticket, IncomingTicket)
    assert (ticket.external_id, ticket.subject) == ("318", "Promo code rejected")
    assert ticket.body == "The code WELCOME10 is rejected at checkout."
    assert ticket.requester == "eve.stone@example.com"


def test_a_conversation_created_before_its_first_message_waits_for_the_message():
    result = chatwoot.parse(payload=doc("conversation_created_empty.json"), headers={})

    assert isinstance(result, Ignored)
    assert result.reason.startswith("no message yet")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda m: m.update(message_type=1), "no customer text"),
        (lambda m: m.update(private=True), "no customer text"),
        (lambda m: m.update(content=None), "no customer text"),
    ],
)
def test_a_conversation_created_without_customer_text_is_ignored(change, says):
    payload = doc("conversation_created.json")
    change(payload["messages"][0])

    result = chatwoot.parse(payload=payload, headers={})

    assert isinstance(result, Ignored) and says in result.reason


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d.update(message_type="outgoing"), "our own replies"),
        (lambda d: d.update(message_type="activity"), "our own replies"),
        (lambda d: d.update(private=True), "our own replies"),
        (lambda d: d.update(content=None), "no text"),
    ],
)
def test_messages_that_are_not_customer_text_are_ignored(change, says):
    payload = doc("message_created.json")
    change(payload)

    result = chatwoot.parse(payload=payload, headers={})

    assert isinstance(result, Ignored) and says in result.reason


def test_other_events_are_ignored():
    payload = doc("conversation_created.json")
    payload["event"] = "conversation_status_changed"

    assert isinstance(chatwoot.parse(payload=payload, headers={}), Ignored)


@pytest.mark.parametrize(
    ("name", "change", "field"),
    [
        ("message_created.json", lambda d: d["conversation"].pop("id"), "conversation.id"),
        ("message_created.json", lambda d: d.update(content=["x"]), "content"),
        ("conversation_created.json", lambda d: d.pop("id"), "id"),
        ("conversation_created.json", lambda d: d.update(messages={"a": 1}), "messages"),
    ],
)
def test_a_field_we_read_that_is_missing_or_wrong_is_named(name, change, field):
    payload = doc(name)
    change(payload)

    with pytest.raises(PayloadError) as raised:
        chatwoot.parse(payload=payload, headers={})

    assert raised.value.field == field
