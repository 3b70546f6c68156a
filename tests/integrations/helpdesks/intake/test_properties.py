"""Property test over the intake endpoints: whatever arrives, no 500s and no partial rows.

Text includes what PostgreSQL cannot store (NUL; lone surrogates, which JSON writes as ``\\ud800``) and
integers longer than Python converts (5,000 digits), anywhere in the document.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from integrations.helpdesks import VENDORS
from integrations.models import WebhookDelivery
from tests.integrations.helpdesks.stubs import vendor_fixtures
from triage.models import PipelineRun, Ticket

HUGE = "__huge_integer__"  # written into the JSON text as a 5,000-digit integer by `encoded`
nasty_text = st.text(alphabet=st.characters() | st.sampled_from(["\x00", "\ud800", "\udfff", "\udc00"]), max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30) | nasty_text | st.just(HUGE),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
# Real-shaped payloads with holes and wrong types, so parsing gets past the first check often.
shaped = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["zen:event-type:ticket.created", "inbound", "inbound_received", "other"])
        | st.text(max_size=10),
        "topic": st.sampled_from(["conversation.user.created", "ping"]),
        "event": st.sampled_from(["message_created", "conversation_created", "x"]),
        "message_type": st.sampled_from(["incoming", "outgoing", 0]),
        "id": json_values,
        "content": json_values,
        "detail": st.dictionaries(st.sampled_from(["id", "subject", "description", "tags"]), json_values, max_size=4),
        "ticket": st.dictionaries(
            st.sampled_from(["id", "title", "subject", "description", "customer", "tags", "requester"]),
            json_values,
            max_size=6,
        ),
        "article": st.dictionaries(
            st.sampled_from(["body", "sender", "content_type", "internal"]), json_values, max_size=4
        ),
        "freshdesk_webhook": st.dictionaries(
            st.sampled_from(
                [
                    "ticket_id",
                    "ticket_subject",
                    "ticket_description",
                    "ticket_contact_email",
                    "ticket_requester_email",
                    "ticket_tags",
                    "triggered_event",
                ]
            ),
            json_values | st.sampled_from(["{ticket_action:created}", "{status:{from:Open,to:Pending}}"]),
            max_size=7,
        ),
        "data": st.fixed_dictionaries(
            {"item": st.dictionaries(st.sampled_from(["id", "source", "tags"]), json_values, max_size=3)}
        ),
        "conversation": st.dictionaries(
            st.sampled_from(["id", "subject", "labels", "tags", "_links", "additional_attributes"]),
            json_values,
            max_size=4,
        ),
        # a Front full event (body/text) or preview (_links and id only)
        "target": st.fixed_dictionaries(
            {"data": st.dictionaries(st.sampled_from(["body", "text", "recipients", "_links", "id"]), json_values)}
        ),
        "payload": json_values,  # a Front application webhook's wrapped event
        "preview": json_values,
        "_embedded": st.fixed_dictionaries(
            {"threads": st.lists(st.dictionaries(st.sampled_from(["type", "body"]), json_values), max_size=2)}
        ),
        "primaryCustomer": json_values,
        "meta": json_values,
        "private": json_values,
        "messages": st.lists(
            st.dictionaries(st.sampled_from(["content", "message_type", "private"]), json_values, max_size=3),
            max_size=2,
        ),
    },
)


def encoded(value) -> bytes:
    """JSON as a helpdesk would write it (NUL and surrogates as \\u escapes), with HUGE as a 5,000-digit integer."""
    return json.dumps(value).replace(json.dumps(HUGE), "9" * 5000).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(encoded),
    shaped.map(encoded),
)


def mutated(draw_data, vendor: str) -> bytes:
    """A real fixture of the vendor with one leaf replaced or removed."""
    files = vendor_fixtures(vendor)
    doc = json.loads(draw_data.draw(st.sampled_from(files)).read_bytes())
    node, path = doc, []
    while isinstance(node, (dict, list)) and node and draw_data.draw(st.booleans()):
        key = draw_data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append((node, key))
        node = node[key]
    if path:
        parent, key = path[-1]
        if isinstance(parent, dict) and draw_data.draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw_data.draw(json_values)
    return encoded(doc)


header_names = st.sampled_from(
    [
        "X-Zendesk-Webhook-Signature",
        "X-Zendesk-Webhook-Signature-Timestamp",
        "X-HelpScout-Signature",
        "X-HelpScout-Event",
        "X-Hub-Signature",
        "X-Front-Signature",
        "X-Front-Request-Timestamp",
        "X-Chatwoot-Signature",
        "X-Chatwoot-Timestamp",
        "X-Webhook-Token",
        "Authorization",
        "X-Zammad-Delivery",
    ]
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


def invariant_holds() -> None:
    # every helpdesk ticket has exactly one run and exactly one delivery that created it
    for ticket in Ticket.objects.filter(source__contains=":"):
        assert PipelineRun.objects.filter(ticket=ticket).count() == 1
        assert WebhookDelivery.objects.filter(ticket_id=ticket.pk, outcome="created").count() == 1
    # every delivery row points at a ticket that exists
    for ticket_id in WebhookDelivery.objects.values_list("ticket_id", flat=True):
        assert Ticket.objects.filter(pk=ticket_id).exists()


@pytest.mark.django_db
@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    vendor=st.sampled_from(VENDORS),
    body=bodies,
    use_fixture=st.booleans(),
    draw_data=st.data(),
    headers=st.dictionaries(header_names, header_values, max_size=4),
    signed=st.booleans(),
    skew=st.sampled_from([0, 0, 0, -1000, 1000]),
)
def test_intake_never_answers_500_nor_leaves_partial_rows(
    client, helpdesk_source, sign, vendor, body, use_fixture, draw_data, headers, signed, skew
):
    from integrations.models import HelpdeskSource

    if use_fixture:
        body = mutated(draw_data, vendor)
    source = HelpdeskSource.objects.filter(vendor=vendor).first() or helpdesk_source(vendor)
    if signed:
        headers = headers | sign(vendor, body, at=time.time() + skew, app=bool(len(body) % 2))
        if vendor == "helpscout" and len(body) % 3:
            headers["X-HelpScout-Event"] = "convo.created"

    response = client.post(
        f"/webhooks/{vendor}/{source.pk}", data=body, content_type="application/json", headers=headers
    )

    event(
        f"HTTP {response.status_code}"
        + (" ticket created" if response.status_code == 202 and "run" in response.json() else "")
    )
    # A set of outcomes on purpose: the body is generated, and the property is "never a 500".
    assert response.status_code in (200, 202, 400, 401, 413), (response.status_code, response.content)
    assert response["Content-Type"] == "application/json"
    invariant_holds()


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    vendor=st.sampled_from(VENDORS),
    document=st.one_of(json_values, shaped),
    use_fixture=st.booleans(),
    draw_data=st.data(),
    event_header=st.sampled_from(["convo.created", "convo.tags", ""]),
)
def test_every_vendor_model_answers_a_ticket_an_ignore_or_a_named_field_for_any_document(
    vendor, document, use_fixture, draw_data, event_header
):
    """The vendor's models never raise anything but the named refusal, whatever JSON arrives: no 500 can come
    out of parsing. A ticket they make has text in every field (the contract sees nothing else)."""
    from integrations.helpdesks import vendor_module
    from integrations.helpdesks.base import Ignored, IncomingTicket, NeedsFetch, PayloadError, json_load

    body = mutated(draw_data, vendor) if use_fixture else encoded(document)
    headers = {"X-HelpScout-Event": event_header} if event_header else {}

    try:
        result = vendor_module(vendor).parse(payload=json_load(body), headers=headers)
    except NeedsFetch as exc:
        event(f"{vendor}: needs fetch")
        assert exc.field and exc.event_id
        return
    except PayloadError as exc:
        event(f"{vendor}: refused")
        assert exc.field
        return

    event(f"{vendor}: {type(result).__name__}")
    assert isinstance(result, (IncomingTicket, Ignored))
    if isinstance(result, IncomingTicket):
        assert result.external_id and result.body.strip()
        fields = (result.external_id, result.subject, result.body, result.requester, result.requester_id)
        assert all(isinstance(value, str) for value in fields)
        assert all(isinstance(tag, str) and tag for tag in result.tags)


# --- the generic API -------------------------------------------------------------------------------

# Mostly well-formed documents, so that cleaning and storing are reached as often as refusing.
api_documents = st.fixed_dictionaries(
    {
        "external_id": st.text(min_size=1, max_size=10) | nasty_text | st.just(HUGE),
        "body": st.text(min_size=1, max_size=30) | nasty_text,
    },
    optional={
        "subject": nasty_text | json_values,
        "requester": st.sampled_from(["kim@example.com", "kim\x00@example.com", "k\ud800@example.com"]) | json_values,
        "tags": st.lists(nasty_text, max_size=3) | json_values,
        "delivery_id": nasty_text | json_values,
        "source": st.just("zendesk:1"),
        "extra": json_values,
    },
)


@pytest.mark.django_db
@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(body=st.one_of(api_documents.map(encoded), json_values.map(encoded), st.binary(max_size=200)))
def test_api_never_answers_500_nor_leaves_partial_rows(client, body):
    from integrations.tokens import api_token_issue

    token, raw = api_token_issue(name=f"crm-{uuid.uuid4().hex}")  # examples share the test's transaction
    before = Ticket.objects.count()

    response = client.post(
        "/api/tickets", data=body, content_type="application/json", headers={"Authorization": f"Bearer {raw}"}
    )

    event(f"HTTP {response.status_code}")
    # A set of outcomes on purpose: the body is generated, and the property is "never a 500".
    assert response.status_code in (200, 201, 400), (response.status_code, response.content)
    if response.status_code == 400:
        assert response.json()["field"]
        assert Ticket.objects.count() == before
    else:
        ticket = Ticket.objects.get(pk=response.json()["id"])
        assert ticket.source == token.source
        assert "\x00" not in ticket.subject + ticket.body + "".join(ticket.tags)
        assert PipelineRun.objects.filter(ticket=ticket).count() == 1
    assert not WebhookDelivery.objects.exists()
