"""Front payload models over integrations/helpdesks/front/fixtures (SOURCE.md): full events and previews."""

from __future__ import annotations

import json

import pytest

from integrations.helpdesks import front
from integrations.helpdesks.base import Ignored, IncomingTicket, NeedsFetch, PayloadError
from tests.integrations.helpdesks.stubs import fixture_body


def doc(name: str) -> dict:
    return json.loads(fixture_body(f"front/{name}"))


def test_a_full_rule_event_is_a_ticket():
    ticket = front.parse(payload=doc("inbound_rule.json"), headers={})

    assert isinstance(ticket, IncomingTicket)
    assert (ticket.external_id, ticket.subject, ticket.requester) == (
        "cnv_55c8c149",
        "Damaged kettle",
        "ana@example.com",
    )
    assert ticket.body == "My kettle arrived dented and the lid won't close.\nOrder 55121."
    assert (ticket.tags, ticket.delivery_id, ticket.event) == (["equipment"], "evt_55c8c149", "inbound")


def test_an_application_event_is_read_inside_its_wrapper():
    ticket = front.parse(payload=doc("inbound_app.json"), headers={})

    assert isinstance(ticket, IncomingTicket)
    assert (ticket.external_id, ticket.delivery_id, ticket.event) == ("cnv_77aa01", "evt_77aa01", "inbound_received")


def test_a_preview_needs_the_event_read_through_the_api_and_says_which():
    with pytest.raises(NeedsFetch) as raised:
        front.parse(payload=doc("inbound_preview.json"), headers={})

    needs = raised.value
    assert (needs.vendor, needs.event_id, needs.event_type) == ("front", "evt_3c4a2f9d", "inbound")
    assert needs.conversation_id == "cnv_3c4a2f9d"
    assert needs.conversation_link == "https://api2.frontapp.com/conversations/cnv_3c4a2f9d"
    assert "evt_3c4a2f9d" in str(needs) and "preview" in str(needs)


def test_a_preview_of_another_event_is_simply_ignored():
    payload = doc("inbound_preview.json")
    payload["type"] = "assign"

    assert isinstance(front.parse(payload=payload, headers={}), Ignored)


@pytest.mark.parametrize(
    ("name", "change", "field"),
    [
        ("inbound_rule.json", lambda d: d["conversation"].pop("id"), "conversation.id"),
        ("inbound_rule.json", lambda d: d["target"]["data"].update(body="", text=""), "target.data.body"),
        ("inbound_rule.json", lambda d: d["target"]["data"].update(text=3), "target.data.text"),
        ("inbound_app.json", lambda d: d["payload"]["conversation"].update(id=False), "payload.conversation.id"),
        ("inbound_preview.json", lambda d: d.pop("id"), "id"),
    ],
)
def test_a_field_we_read_that_is_missing_or_wrong_is_named(name, change, field):
    payload = doc(name)
    change(payload)

    with pytest.raises(PayloadError) as raised:
        front.parse(payload=payload, headers={})

    assert raised.value.field == field
