"""Intercom payload models over integrations/helpdesks/intercom/fixtures (SOURCE.md)."""

from __future__ import annotations

import json

import pytest

from integrations.helpdesks import intercom
from integrations.helpdesks.base import Ignored, IncomingTicket, PayloadError
from tests.integrations.helpdesks.stubs import fixture_body


def doc(name: str = "conversation_user_created.json") -> dict:
    return json.loads(fixture_body(f"intercom/{name}"))


def test_conversation_user_created_is_a_ticket_and_the_notification_id_the_delivery():
    ticket = intercom.parse(payload=doc(), headers={})

    assert isinstance(ticket, IncomingTicket)
    assert (ticket.external_id, ticket.requester, ticket.tags) == ("504", "admin176@email.com", ["Test tag"])
    assert (ticket.subject, ticket.body) == ("Re: Bug query", "This is the message body")
    assert ticket.delivery_id == "notif_ccd8a4d0-f965-11e3-a367-c779cae3e1b3"


def test_ping_is_ignored():
    assert intercom.parse(payload=doc("ping.json"), headers={}) == Ignored(
        "Intercom topic ping carries no new ticket", event="ping"
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["data"]["item"]["source"].pop("body"), "data.item.source.body"),
        (lambda d: d["data"]["item"].update(id=None), "data.item.id"),
        (lambda d: d["data"].pop("item"), "data.item"),
        (lambda d: d.update(topic=1), "topic"),
    ],
)
def test_a_field_we_read_that_is_missing_or_wrong_is_named(change, field):
    payload = doc()
    change(payload)

    with pytest.raises(PayloadError) as raised:
        intercom.parse(payload=payload, headers={})

    assert raised.value.field == field
