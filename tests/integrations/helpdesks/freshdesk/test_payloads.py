"""Freshdesk payload models over the fixtures of integrations/helpdesks/freshdesk/fixtures (SOURCE.md)."""

from __future__ import annotations

import json

import pytest

from integrations.helpdesks import freshdesk
from integrations.helpdesks.base import Ignored, IncomingTicket, PayloadError
from tests.integrations.helpdesks.stubs import fixture_body


def doc(name: str) -> dict:
    return json.loads(fixture_body(f"freshdesk/{name}"))


@pytest.mark.parametrize(
    "triggered_event",
    ["{ticket_action:created}", "{ ticket_action : created }", "{{triggered_event}}", "ticket_created", ""],
)
def test_a_creation_is_a_ticket_however_the_rule_fills_triggered_event(triggered_event):
    payload = doc("ticket_created.json")
    payload["freshdesk_webhook"]["triggered_event"] = triggered_event

    ticket = freshdesk.parse(payload=payload, headers={"X-Request-Id": "req-9"})

    assert isinstance(ticket, IncomingTicket)
    assert (ticket.external_id, ticket.delivery_id) == ("1042", "req-9")


def test_without_triggered_event_the_rule_is_taken_as_a_creation():
    payload = doc("ticket_created.json")
    del payload["freshdesk_webhook"]["triggered_event"]

    assert isinstance(freshdesk.parse(payload=payload, headers={}), IncomingTicket)


@pytest.mark.parametrize("triggered_event", ["{status:{from:Open,to:Pending}}", "{note_type:public}"])
def test_an_update_rule_is_ignored_naming_what_fired_it(triggered_event):
    payload = doc("ticket_updated.json")
    payload["freshdesk_webhook"]["triggered_event"] = triggered_event

    result = freshdesk.parse(payload=payload, headers={})

    assert isinstance(result, Ignored)
    assert triggered_event in result.reason


def test_simple_mode_requester_is_ticket_requester_email():
    ticket = freshdesk.parse(payload=doc("ticket_created_simple.json"), headers={})

    assert isinstance(ticket, IncomingTicket)
    assert (ticket.external_id, ticket.requester, ticket.tags) == ("1043", "ola.berg@example.org", ["equipment"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda h: h.pop("ticket_id"), "freshdesk_webhook.ticket_id"),
        (lambda h: h.update(ticket_description=None), "freshdesk_webhook.ticket_description"),
        (lambda h: h.update(ticket_subject=12), "freshdesk_webhook.ticket_subject"),
        (lambda h: h.update(triggered_event=[]), "freshdesk_webhook.triggered_event"),
    ],
)
def test_a_field_we_read_that_is_missing_or_wrong_is_named(change, field):
    payload = doc("ticket_created.json")
    change(payload["freshdesk_webhook"])

    with pytest.raises(PayloadError) as raised:
        freshdesk.parse(payload=payload, headers={})

    assert raised.value.field == field
