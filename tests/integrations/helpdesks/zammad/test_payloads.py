"""Zammad payload models over Zammad's documented example and its code's article-less payload
(integrations/helpdesks/zammad/fixtures/SOURCE.md)."""

from __future__ import annotations

import json

import pytest

from integrations.helpdesks import zammad
from integrations.helpdesks.base import Ignored, IncomingTicket, PayloadError
from tests.integrations.helpdesks.stubs import fixture_body

HEADERS = {"X-Zammad-Trigger": "triage: new ticket", "X-Zammad-Delivery": "job-81"}


def doc(name: str = "ticket_created.json") -> dict:
    return json.loads(fixture_body(f"zammad/{name}"))


def test_the_documented_payload_is_a_ticket_from_the_customer_article():
    ticket = zammad.parse(payload=doc(), headers=HEADERS)

    assert isinstance(ticket, IncomingTicket)
    assert (ticket.external_id, ticket.subject, ticket.requester) == ("81", "Webhook-Test", "emily@example.com")
    assert ticket.body == "This is a simple Webhook Test."
    assert (ticket.delivery_id, ticket.event) == ("job-81", "triage: new ticket")


def test_a_trigger_without_an_article_is_ignored_with_the_reason():
    result = zammad.parse(payload=doc("trigger_no_article.json"), headers=HEADERS)

    assert isinstance(result, Ignored)
    assert "without an article" in result.reason


@pytest.mark.parametrize(("sender", "internal"), [("Agent", False), ("System", False), ("Customer", True)])
def test_an_agent_system_or_internal_article_is_ignored(sender, internal):
    payload = doc()
    payload["article"].update(sender=sender, internal=internal)

    assert isinstance(zammad.parse(payload=payload, headers=HEADERS), Ignored)


def test_a_plain_text_article_is_kept_as_written():
    payload = doc()
    payload["article"].update(content_type="text/plain", body="Use <b> for bold?")

    ticket = zammad.parse(payload=payload, headers=HEADERS)

    assert isinstance(ticket, IncomingTicket) and ticket.body == "Use <b> for bold?"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["article"].pop("body"), "article.body"),
        (lambda d: d["ticket"].pop("id"), "ticket.id"),
        (lambda d: d.pop("article"), "article"),
        (lambda d: d.update(article="none"), "article"),
        (lambda d: d["ticket"].update(title={"t": 1}), "ticket.title"),
    ],
)
def test_a_field_we_read_that_is_missing_or_wrong_is_named(change, field):
    payload = doc()
    change(payload)

    with pytest.raises(PayloadError) as raised:
        zammad.parse(payload=payload, headers=HEADERS)

    assert raised.value.field == field
