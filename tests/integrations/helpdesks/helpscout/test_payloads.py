"""Help Scout payload models over integrations/helpdesks/helpscout/fixtures (SOURCE.md)."""

from __future__ import annotations

import json

import pytest

from integrations.helpdesks import helpscout
from integrations.helpdesks.base import Ignored, IncomingTicket, PayloadError
from tests.integrations.helpdesks.stubs import fixture_body

CREATED = {"X-HelpScout-Event": "convo.created"}


def doc(name: str = "convo_created.json") -> dict:
    return json.loads(fixture_body(f"helpscout/{name}"))


def test_convo_created_as_help_scouts_sdk_sends_it_is_a_ticket_from_the_preview():
    # Help Scout's own SDK webhook test body: no threads embedded, the primary customer as an id only
    ticket = helpscout.parse(payload=doc(), headers=CREATED)

    assert isinstance(ticket, IncomingTicket)
    assert (ticket.external_id, ticket.subject) == ("123", "Need Help")
    assert ticket.body == "I'm having a hard time resolving this"
    assert (ticket.requester, ticket.tags) == ("bear@acme.com", ["vip"])  # createdBy, a customer


def test_with_its_thread_embedded_the_customer_thread_is_the_text():
    ticket = helpscout.parse(payload=doc("convo_created_with_thread.json"), headers=CREATED)

    assert isinstance(ticket, IncomingTicket)
    assert (ticket.external_id, ticket.body, ticket.tags) == ("123", "This is a test", ["vip"])
    assert ticket.requester == "bear@acme.com"


def test_a_thread_body_in_html_becomes_text():
    payload = doc("convo_created_with_thread.json")
    payload["_embedded"]["threads"][0]["body"] = "<p>I tried twice.</p><script>alert(1)</script><p>Still wrong.</p>"

    ticket = helpscout.parse(payload=payload, headers=CREATED)

    assert isinstance(ticket, IncomingTicket)
    assert "<" not in ticket.body and "alert" not in ticket.body
    assert "I tried twice." in ticket.body and "Still wrong." in ticket.body


def test_the_requester_falls_back_to_the_customer_thread_when_an_agent_created_the_conversation():
    payload = doc("convo_created_with_thread.json")
    payload["createdBy"] = {"id": 1, "type": "user", "email": "agent@example.net"}

    ticket = helpscout.parse(payload=payload, headers=CREATED)

    assert isinstance(ticket, IncomingTicket) and ticket.requester == "john.doe@example.com"


def test_other_events_are_ignored():
    result = helpscout.parse(payload=doc(), headers={"X-HelpScout-Event": "convo.agent.reply.created"})

    assert isinstance(result, Ignored) and "convo.agent.reply.created" in result.reason


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.pop("id"), "id"),
        (lambda d: d["_embedded"]["threads"][0].update(body=5), "_embedded.threads.0.body"),
        (lambda d: (d.pop("_embedded"), d.update(preview="")), "_embedded.threads"),
    ],
)
def test_a_field_we_read_that_is_missing_or_wrong_is_named(change, field):
    payload = doc("convo_created_with_thread.json")
    change(payload)

    with pytest.raises(PayloadError) as raised:
        helpscout.parse(payload=payload, headers=CREATED)

    assert raised.value.field == field
