"""Help Scout payload models over integrations/helpdesks/helpscout/fixtures (SOURCE.md)."""

from __future__ import annotations

import json

import pytest

from integrations.helpdesks import helpscout
from integrations.helpdesks.base import Ignored, IncomingTicket, PayloadError
from tests.integrations.helpdesks.stubs import fixture_body

CREATED = {"X-HelpScout-Event": "convo.created"}


def doc() -> dict:
    return json.loads(fixture_body("helpscout/convo_created.json"))


def test_convo_created_is_a_ticket_from_the_customer_thread():
    ticket = helpscout.parse(payload=doc(), headers=CREATED)

    assert isinstance(ticket, IncomingTicket)
    assert ticket.external_id == "2391938111"
    assert ticket.body == "I reset my password but the site still says it's wrong.\nI tried twice."
    assert (ticket.requester, ticket.tags) == ("lee.wong@example.net", ["account"])


def test_without_threads_the_preview_is_the_text():
    payload = doc()
    del payload["_embedded"]

    ticket = helpscout.parse(payload=payload, headers=CREATED)

    assert isinstance(ticket, IncomingTicket)
    assert ticket.body == "I reset my password but the site still says it's wrong..."


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
    payload = doc()
    change(payload)

    with pytest.raises(PayloadError) as raised:
        helpscout.parse(payload=payload, headers=CREATED)

    assert raised.value.field == field
