"""Deliveries as the helpdesks really send them (issue 12), end to end through the webhook endpoint, over the
vendor-sourced fixtures: none answered in a way that loses the ticket, none making two tickets."""

from __future__ import annotations

import json

from integrations.models import FailedDelivery, WebhookDelivery
from triage.models import PipelineRun, Ticket


def nothing_stored() -> bool:
    return not Ticket.objects.exclude(source__in=["demo", "test"]).exists() and not WebhookDelivery.objects.exists()


# --- Front --------------------------------------------------------------------------------------------


def test_front_preview_without_an_api_token_is_kept_naming_the_event_and_the_way_out(
    helpdesk_source, deliver, sign, payload
):
    # given: a rule webhook with "Send full event data" off (Front does not retry rule webhooks), and a source
    # with no API token to read the event with
    source = helpdesk_source("front")
    body = payload("front/inbound_preview.json")

    # when
    response = deliver(source, body, sign("front", body))

    # then: no ticket yet, but the delivery is kept to replay once a token is set; the answer says which
    # event and why
    answer = response.json()
    assert response.status_code == 202 and answer["kept"] is True, response.content
    assert "preview" in answer["error"] and "evt_3c4a2f9d" in answer["error"]
    assert "Send full event data" in answer["error"]
    kept = FailedDelivery.objects.get(pk=answer["failed_delivery"])
    assert kept.vendor == "front" and bytes(kept.body) == body
    assert not Ticket.objects.exclude(source__in=["demo", "test"]).exists()


def test_front_application_preview_is_kept_too(helpdesk_source, deliver, sign, payload):
    source = helpdesk_source("front")
    event = json.loads(payload("front/inbound_preview.json"))
    body = json.dumps({"type": "inbound_received", "authorization": {"id": "cmp_1"}, "payload": event}).encode()

    response = deliver(source, body, sign("front", body, app=True))

    assert response.status_code == 202 and response.json()["kept"] is True
    assert FailedDelivery.objects.count() == 1


# --- Chatwoot -----------------------------------------------------------------------------------------


def message_in(conversation: dict, payload, *, message_id: int, content: str) -> bytes:
    """An incoming `message_created` of `conversation` (a `conversation_created` body), built from the fixture."""
    message = json.loads(payload("chatwoot/message_created.json"))
    message["id"] = message_id
    message["content"] = content
    message["conversation"] = {k: v for k, v in conversation.items() if k != "event"}
    message["sender"]["email"] = conversation["meta"]["sender"]["email"]
    return json.dumps(message).encode()


def test_chatwoot_conversation_created_before_its_message_waits_and_the_message_makes_the_ticket(
    helpdesk_source, deliver, sign, payload
):
    # given: Chatwoot creates the conversation, then its first message
    source = helpdesk_source("chatwoot")
    created = payload("chatwoot/conversation_created_empty.json")
    conversation = json.loads(created)

    # when: conversation_created with messages: []
    first = deliver(source, created, sign("chatwoot", created))

    # then: 2xx, so Chatwoot is done with it; nothing stored yet
    assert first.status_code == 202 and first.json()["ignored"] is True
    assert first.json()["reason"].startswith("no message yet")
    assert nothing_stored()

    # when: the first incoming message_created of that conversation
    message = message_in(conversation, payload, message_id=6001, content="Can I pause my Club for a month?")
    second = deliver(source, message, sign("chatwoot", message))

    # then: the ticket, keyed by the conversation's display id
    assert second.status_code == 202, second.content
    ticket = Ticket.objects.get(pk=second.json()["ticket"])
    assert (ticket.external_id, ticket.requester) == ("320", "kai.lind@example.com")
    assert ticket.body == "Can I pause my Club for a month?"

    # when: a later message in the same conversation
    later = message_in(conversation, payload, message_id=6002, content="Or skip one delivery?")
    third = deliver(source, later, sign("chatwoot", later))

    # then: the same ticket, no second one
    assert third.status_code == 200 and third.json() == {"duplicate": True, "ticket": ticket.pk}
    assert Ticket.objects.filter(source=source.ticket_source).count() == 1
    assert PipelineRun.objects.filter(ticket__source=source.ticket_source).count() == 1


def test_chatwoot_conversation_created_with_its_message_and_that_message_make_one_ticket(
    helpdesk_source, deliver, sign, payload
):
    source = helpdesk_source("chatwoot")
    created = payload("chatwoot/conversation_created.json")
    conversation = json.loads(created)
    message = message_in(conversation, payload, message_id=5590, content=conversation["messages"][0]["content"])

    first = deliver(source, created, sign("chatwoot", created))
    second = deliver(source, message, sign("chatwoot", message))

    assert first.status_code == 202, first.content
    assert second.status_code == 200 and second.json()["ticket"] == first.json()["ticket"]
    assert Ticket.objects.filter(source=source.ticket_source).count() == 1
    assert PipelineRun.objects.filter(ticket__source=source.ticket_source).count() == 1


# --- Zammad -------------------------------------------------------------------------------------------


def test_zammad_trigger_without_an_article_is_answered_2xx_each_time_it_is_sent(
    helpdesk_source, deliver, sign, payload
):
    # given: Zammad retries a non-2xx answer five times with the same X-Zammad-Delivery
    source = helpdesk_source("zammad")
    body = payload("zammad/trigger_no_article.json")
    headers = sign("zammad", body)

    # when
    answers = [deliver(source, body, headers) for _ in range(2)]

    # then: 2xx both times (no retries), with the reason; nothing stored
    assert [a.status_code for a in answers] == [202, 202]
    assert all("without an article" in a.json()["reason"] for a in answers)
    assert nothing_stored()


# --- Freshdesk ----------------------------------------------------------------------------------------


def test_freshdesk_rule_with_filled_triggered_event_makes_the_ticket_and_its_update_rule_is_ignored(
    helpdesk_source, deliver, sign, payload
):
    source = helpdesk_source("freshdesk")
    created = payload("freshdesk/ticket_created.json")
    updated = payload("freshdesk/ticket_updated.json")
    assert json.loads(created)["freshdesk_webhook"]["triggered_event"] == "{ticket_action:created}"

    first = deliver(source, created, sign("freshdesk", created))
    second = deliver(source, updated, sign("freshdesk", updated))

    assert first.status_code == 202 and "run" in first.json(), first.content
    assert second.status_code == 202 and second.json()["ignored"] is True
    assert "{status:{from:Open,to:Pending}}" in second.json()["reason"]
    assert Ticket.objects.filter(source=source.ticket_source).count() == 1
