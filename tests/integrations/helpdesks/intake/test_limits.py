"""Signed webhooks with input PostgreSQL or Python cannot take: NUL, lone surrogates, huge integers, over-long
fields. The helpdesk cannot correct a delivery, so free text is fitted and the change recorded; an
unusable identifier is a 400 naming it; never a 500, never a partial row."""

from __future__ import annotations

import json

import pytest

from integrations.models import WebhookDelivery
from triage.contracts import TicketIn
from triage.models import PipelineRun, Ticket

# vendor -> (fixture, where the ticket id, subject, body, tags, an unused field and the delivery id are)
VENDORS = {
    "zendesk": (
        "zendesk/trigger_ticket.json",
        {
            "external_id": ("ticket", "id"),
            "subject": ("ticket", "subject"),
            "body": ("ticket", "description"),
            "tags": ("ticket", "tags"),
            "unused": ("ticket", "priority"),
            "requester": ("ticket", "requester", "email"),
        },
    ),
    "front": (
        "front/inbound_rule.json",
        {
            "external_id": ("conversation", "id"),
            "subject": ("conversation", "subject"),
            "body": ("target", "data", "text"),
            "tags": ("conversation", "tags"),
            "unused": ("emitted_at",),
            "requester": ("target", "data", "recipients", 0, "handle"),
            "delivery_id": ("id",),
        },
    ),
    "freshdesk": (
        "freshdesk/ticket_created.json",
        {
            "external_id": ("freshdesk_webhook", "ticket_id"),
            "subject": ("freshdesk_webhook", "ticket_subject"),
            "body": ("freshdesk_webhook", "ticket_description"),
            "tags": ("freshdesk_webhook", "ticket_tags"),
            "unused": ("freshdesk_webhook", "ticket_priority"),
            "requester": ("freshdesk_webhook", "ticket_contact_email"),
        },
    ),
}
HUGE = "__huge_integer__"


def body_with(vendor: str, payload, **values) -> bytes:
    """The vendor's fixture with the named fields set; HUGE becomes a 5,000-digit integer in the JSON text."""
    name, paths = VENDORS[vendor]
    doc = json.loads(payload(name))
    if vendor == "front":
        doc["target"]["data"].pop("body")  # the text part is the one read; one body field keeps the test plain
    for field, value in values.items():
        node = doc
        *parents, last = paths[field]
        for key in parents:
            node = node[key]
        node[last] = value
    # json.dumps writes NUL and lone surrogates as \u escapes, as a helpdesk's serializer would
    return json.dumps(doc).replace(json.dumps(HUGE), "9" * 5000).encode()


def counts() -> tuple[int, int, int]:
    return Ticket.objects.count(), PipelineRun.objects.count(), WebhookDelivery.objects.count()


@pytest.fixture(params=sorted(VENDORS))
def vendor(request):
    return request.param


def test_nul_and_lone_surrogates_in_free_text_are_cleaned_and_recorded(vendor, helpdesk_source, deliver, sign, payload):
    # given
    source = helpdesk_source(vendor)
    body = body_with(vendor, payload, subject="Late\x00 parcel \ud800", body="Where\x00 is my parcel\x00?")
    before = counts()

    # when
    response = deliver(source, body, sign(vendor, body))

    # then
    assert response.status_code == 202, response.content
    ticket = Ticket.objects.get(pk=response.json()["ticket"])
    assert (ticket.subject, ticket.body) == ("Late parcel \ufffd", "Where is my parcel?")
    assert counts() == (before[0] + 1, before[1] + 1, before[2] + 1)
    adjustments = WebhookDelivery.objects.get(ticket_id=ticket.pk).adjustments
    assert adjustments == response.json()["adjusted"]
    assert adjustments == [
        "subject: 2 unstorable characters (NUL, lone surrogates) cleaned",
        "body: 2 unstorable characters (NUL, lone surrogates) cleaned",
    ]


@pytest.mark.parametrize("bad_id", ["51\x0060", "5160\udc00"])
def test_nul_or_lone_surrogate_in_the_ticket_id_is_400_naming_it_and_nothing_stored(
    vendor, bad_id, helpdesk_source, deliver, sign, payload
):
    source = helpdesk_source(vendor)
    body = body_with(vendor, payload, external_id=bad_id)
    before = counts()

    response = deliver(source, body, sign(vendor, body))

    assert response.status_code == 400, response.content
    assert response.json()["field"] == "external_id"
    assert counts() == before


def test_huge_integer_as_the_ticket_id_is_400_naming_the_vendor_field(vendor, helpdesk_source, deliver, sign, payload):
    source = helpdesk_source(vendor)
    body = body_with(vendor, payload, external_id=HUGE)
    before = counts()

    response = deliver(source, body, sign(vendor, body))

    assert response.status_code == 400, response.content
    assert response.json()["field"] == ".".join(VENDORS[vendor][1]["external_id"])
    assert "5000 digits" in response.json()["error"]
    assert counts() == before


def test_huge_integer_in_a_field_not_read_does_not_turn_the_ticket_away(
    vendor, helpdesk_source, deliver, sign, payload
):
    source = helpdesk_source(vendor)
    body = body_with(vendor, payload, unused=HUGE)
    before = counts()

    response = deliver(source, body, sign(vendor, body))

    assert response.status_code == 202, response.content
    assert counts() == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert "adjusted" not in response.json()


def test_over_long_subject_and_body_are_cut_with_a_visible_marker_and_recorded(
    vendor, helpdesk_source, deliver, sign, payload
):
    # given: the API would answer 400 (its client can fix the request); a helpdesk cannot
    source = helpdesk_source(vendor)
    body = body_with(vendor, payload, subject="S" * 600, body="B" * 150_000)

    # when
    response = deliver(source, body, sign(vendor, body))

    # then: the ticket arrives, as long as the limits allow, saying it was cut
    assert response.status_code == 202, response.content
    ticket = Ticket.objects.get(pk=response.json()["ticket"])
    assert len(ticket.subject) == TicketIn.max_length("subject") and ticket.subject.endswith("S […]")
    assert len(ticket.body) == TicketIn.max_length("body")
    assert ticket.body.startswith("B" * 99_000)
    assert ticket.body.endswith(
        f"[Truncated at intake: the first {ticket.body.index(chr(10))} of 150000 characters are kept.]"
    )
    assert WebhookDelivery.objects.get(ticket_id=ticket.pk).adjustments == [
        "subject: truncated from 600 to 500 characters, marked in the text",
        "body: truncated from 150000 to 100000 characters, marked in the text",
    ]


def test_over_long_ticket_id_is_400_naming_it_not_cut_into_another_tickets_id(
    vendor, helpdesk_source, deliver, sign, payload
):
    # given: a ticket whose id is the first 200 characters of the next one's
    source = helpdesk_source(vendor)
    first = body_with(vendor, payload, external_id="7" * 200)
    assert deliver(source, first, sign(vendor, first)).status_code == 202
    before = counts()

    # when
    longer = body_with(vendor, payload, external_id="7" * 201)
    response = deliver(source, longer, sign(vendor, longer))

    # then: refused, not merged into the first ticket
    assert response.status_code == 400, response.content
    assert response.json()["field"] == "external_id"
    assert counts() == before


def test_tags_beyond_the_limits_are_cut_and_recorded(vendor, helpdesk_source, deliver, sign, payload):
    source = helpdesk_source(vendor)
    tags = ["x" * 150] + [f"t{i}" for i in range(60)] + ["\x00"]
    if vendor == "front":
        tags = [{"id": f"tag_{i}", "name": t} for i, t in enumerate(tags)]
    elif vendor == "zendesk":
        tags = " ".join(tags)
    body = body_with(vendor, payload, tags=tags)

    response = deliver(source, body, sign(vendor, body))

    assert response.status_code == 202, response.content
    ticket = Ticket.objects.get(pk=response.json()["ticket"])
    assert ticket.tags == ["x" * 100] + [f"t{i}" for i in range(49)]
    assert WebhookDelivery.objects.get(ticket_id=ticket.pk).adjustments == [
        "tags: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'… cleaned or cut to 100 characters",
        "tags: 11 of 61 dropped (at most 50)",
    ]


def test_unusable_requester_is_left_out_rather_than_refusing_the_ticket(
    vendor, helpdesk_source, deliver, sign, payload
):
    source = helpdesk_source(vendor)
    body = body_with(vendor, payload, requester="ana\x00@example.com")

    response = deliver(source, body, sign(vendor, body))

    assert response.status_code == 202, response.content
    assert Ticket.objects.get(pk=response.json()["ticket"]).requester == ""


def test_unstorable_delivery_id_is_kept_as_its_hash_and_still_tells_a_retry(helpdesk_source, deliver, sign, payload):
    # given: a Front rule webhook whose event id (the delivery id) has a NUL
    source = helpdesk_source("front")
    body = body_with("front", payload, delivery_id="evt_\x00" + "9" * 300)

    # when: delivered, then delivered again
    first = deliver(source, body, sign("front", body))
    again = deliver(source, body, sign("front", body))

    # then: one ticket, one delivery row, keyed by the hash
    assert (first.status_code, again.status_code) == (202, 200), (first.content, again.content)
    delivery = WebhookDelivery.objects.get(source=source)
    assert delivery.delivery_id.startswith("sha256:") and len(delivery.delivery_id) == 71
    assert again.json()["duplicate"] is True
    assert counts() == (1, 1, 1)


def test_the_same_over_long_body_is_a_400_on_the_api(client, db):
    # The other half of the choice above: the API client is told, and nothing is stored.
    from integrations.tokens import api_token_issue

    _, raw = api_token_issue(name="crm")
    response = client.post(
        "/api/tickets",
        data=json.dumps({"external_id": "1", "body": "B" * 150_000}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )

    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert counts() == (0, 0, 0)


def test_staff_see_what_was_fitted_in_the_delivery_list(admin_client, helpdesk_source, deliver, sign, payload):
    source = helpdesk_source("zendesk")
    body = body_with("zendesk", payload, body="B" * 150_000)
    assert deliver(source, body, sign("zendesk", body)).status_code == 202

    page = admin_client.get("/admin/integrations/webhookdelivery/").content.decode()

    assert "body: truncated from 150000 to 100000 characters, marked in the text" in page
