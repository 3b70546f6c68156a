"""What intake reads through a vendor's API, what an admin's credentials check says, and Chatwoot's opt-in URL
token: against loopback helpdesks that speak the vendors' documented API."""

from __future__ import annotations

import copy
import json

import pytest

from integrations.helpdesks.connection import credentials_check
from integrations.models import FailedDelivery, WebhookDelivery
from triage.models import Ticket

# A Front rule webhook without "Send full event data": the event's id and links, the conversation's id
# and links, the target's id, no message (https://dev.frontapp.com/reference/webhooks: "event preview").
FRONT_PREVIEW = {
    "_links": {"self": "https://attacker.example/events/evt_55c8c149"},
    "id": "evt_55c8c149",
    "type": "inbound",
    "emitted_at": 1764000123.041,
    "conversation": {
        "_links": {"self": "https://api2.frontapp.com/conversations/cnv_55c8c149"},
        "id": "cnv_55c8c149",
    },
    "target": {"_meta": {"type": "message"}, "data": {"_links": {}, "id": "msg_1q2w3e"}},
}


@pytest.fixture
def front_event(payload):
    return json.loads(payload("front/inbound_rule.json"))


def test_a_front_preview_is_read_through_the_core_api_before_the_ticket_is_made(
    helpdesk_source, deliver, sign, stub_helpdesk, front_event
):
    # given
    stub = stub_helpdesk("front")
    stub.expect(token="front-token-1")
    stub.events["evt_55c8c149"] = front_event
    source = helpdesk_source("front", base_url=stub.base_url, api_token="front-token-1")
    body = json.dumps(FRONT_PREVIEW).encode()

    # when
    response = deliver(source, body, sign("front", body))

    # then: the event was read from the source's own API root (never the host in the preview's links)
    assert response.status_code == 202, response.json()
    ticket = Ticket.objects.get(pk=response.json()["ticket"])
    assert "kettle arrived dented" in ticket.body and ticket.external_id == "cnv_55c8c149"
    assert [(m, p) for m, p, _, _ in stub.requests] == [("GET", "/events/evt_55c8c149")]
    assert stub.violations == []


def test_a_front_preview_without_an_api_token_is_kept_with_the_reason_and_replayed_once_one_is_set(
    helpdesk_source, deliver, sign, stub_helpdesk, front_event
):
    from integrations.helpdesks.deliveries import failed_delivery_replay

    # given: no API token
    stub = stub_helpdesk("front")
    stub.events["evt_55c8c149"] = front_event
    source = helpdesk_source("front", base_url=stub.base_url)
    body = json.dumps(FRONT_PREVIEW).encode()

    # when
    response = deliver(source, body, sign("front", body))

    # then: 2xx (Front does not retry rule webhooks), kept, no ticket, the reason says what to do
    assert response.status_code == 202 and response.json()["kept"] is True
    kept = FailedDelivery.objects.get()
    assert "no API token" in kept.error and "Send full event data" in kept.error and not kept.retryable
    assert Ticket.objects.count() == 0 and stub.requests == []

    # when: the token is set and the delivery replayed
    source.api_token = "front-token-2"
    source.save()
    failed_delivery_replay(failed=kept)

    # then
    assert Ticket.objects.get().external_id == "cnv_55c8c149"


def test_a_front_api_failure_keeps_the_preview_as_retryable(helpdesk_source, deliver, sign, stub_helpdesk):
    stub = stub_helpdesk("front")  # knows no such event: 404
    source = helpdesk_source("front", base_url=stub.base_url, api_token="front-token-1")
    body = json.dumps(FRONT_PREVIEW).encode()

    response = deliver(source, body, sign("front", body))

    assert response.status_code == 202
    kept = FailedDelivery.objects.get()
    assert kept.retryable and "HTTP 404" in kept.error and Ticket.objects.count() == 0


def test_full_front_event_data_needs_no_api_read(helpdesk_source, deliver, sign, stub_helpdesk, payload):
    stub = stub_helpdesk("front")
    source = helpdesk_source("front", base_url=stub.base_url)
    body = payload("front/inbound_rule.json")

    response = deliver(source, body, sign("front", body))

    assert response.status_code == 202 and stub.requests == []


def _zendesk_event_without_email(payload, *, ticket_id: str = "5158") -> bytes:
    event = json.loads(payload("zendesk/ticket_created_event.json"))
    del event["event"]["requester"]
    event["detail"]["id"] = ticket_id
    event["id"] = f"evt-{ticket_id}"
    return json.dumps(event).encode()


def test_a_zendesk_requester_named_by_id_is_looked_up_once_and_cached(
    helpdesk_source, deliver, sign, stub_helpdesk, payload
):
    # given
    stub = stub_helpdesk("zendesk")
    stub.expect(user="agent@example.com", token="zd-token")
    stub.users["8447388090494"] = {"id": 8447388090494, "name": "Maria", "email": "Maria.Lopez@example.com"}
    source = helpdesk_source("zendesk", base_url=stub.base_url, api_user="agent@example.com", api_token="zd-token")

    # when: two tickets from the same requester
    for ticket_id in ("5158", "5159"):
        body = _zendesk_event_without_email(payload, ticket_id=ticket_id)
        assert deliver(source, body, sign("zendesk", body)).status_code == 202

    # then: both have the requester; the Users API was asked once
    assert set(Ticket.objects.values_list("requester", flat=True)) == {"maria.lopez@example.com"}
    lookups = [p for m, p, _, _ in stub.requests if p.startswith("/api/v2/users/")]
    assert lookups == ["/api/v2/users/8447388090494.json"] and stub.violations == []


def test_a_zendesk_users_api_failure_keeps_the_delivery_for_retry_not_a_500(
    helpdesk_source, deliver, sign, stub_helpdesk, payload
):
    from django.core.management import call_command

    # given: the helpdesk's API is down
    stub = stub_helpdesk("zendesk")
    stub.fail_all = True
    stub.users["8447388090494"] = {"id": 8447388090494, "email": "maria.lopez@example.com"}
    source = helpdesk_source("zendesk", base_url=stub.base_url, api_user="a@example.com", api_token="t")
    body = _zendesk_event_without_email(payload)

    # when
    response = deliver(source, body, sign("zendesk", body))

    # then: kept as retryable, no ticket, no 500
    assert response.status_code == 202 and response.json()["retryable"] is True
    assert FailedDelivery.objects.get().retryable and Ticket.objects.count() == 0

    # when: the API is back and the retryable deliveries are replayed (cron)
    stub.fail_all = False
    call_command("replay_deliveries")

    # then
    assert Ticket.objects.get().requester == "maria.lopez@example.com"
    assert FailedDelivery.objects.get().status == FailedDelivery.Status.REPLAYED


# --- Chatwoot without signatures ------------------------------------------------------------------


@pytest.fixture
def unsigned_chatwoot(helpdesk_source, payload):
    source = helpdesk_source("chatwoot", accept_url_token=True, url_token="url-token-9f8e7d6c5b4a")
    return source, payload("chatwoot/message_created.json")


def _post(client, source, body, *, token: str | None, headers=None):
    url = f"/webhooks/chatwoot/{source.pk}" + (f"?token={token}" if token is not None else "")
    return client.post(url, data=body, content_type="application/json", headers=headers or {})


def test_an_unsigned_chatwoot_delivery_is_accepted_with_the_url_token_when_opted_in(client, unsigned_chatwoot):
    source, body = unsigned_chatwoot

    first = _post(client, source, body, token=source.url_token)
    replayed = _post(client, source, body, token=source.url_token)

    assert first.status_code == 202 and Ticket.objects.count() == 1
    assert replayed.status_code == 200 and replayed.json()["duplicate"] is True  # no time signed: its digest
    assert WebhookDelivery.objects.filter(source=source).count() == 1


@pytest.mark.parametrize("token", [None, "", "url-token-wrong", "url-token-9f8e7d6c5b4"])
def test_an_unsigned_chatwoot_delivery_with_a_wrong_token_is_refused(client, unsigned_chatwoot, token):
    source, body = unsigned_chatwoot

    response = _post(client, source, body, token=token)

    assert response.status_code == 401
    assert Ticket.objects.count() == 0 and FailedDelivery.objects.count() == 0


def test_the_url_token_is_never_enough_when_the_source_has_not_opted_in(client, helpdesk_source, payload):
    source = helpdesk_source("chatwoot", accept_url_token=False, url_token="url-token-9f8e7d6c5b4a")

    response = _post(client, source, payload("chatwoot/message_created.json"), token=source.url_token)

    assert response.status_code == 401 and Ticket.objects.count() == 0


def test_a_signed_delivery_to_an_opted_in_source_is_still_checked_by_its_signature(client, unsigned_chatwoot, sign):
    source, body = unsigned_chatwoot
    forged = sign("chatwoot", body, secret="not-the-secret")

    response = _post(client, source, body, token=source.url_token, headers=forged)

    assert response.status_code == 401 and Ticket.objects.count() == 0


# --- the credentials check --------------------------------------------------------------------------

CHECKED = {
    "zendesk": "/api/v2/users/me.json",
    "freshdesk": "/api/v2/agents/me",
    "helpscout": "/v2/users/me",
    "intercom": "/me",
    "front": "/me",
    "chatwoot": "/api/v1/profile",
    "zammad": "/api/v1/users/me",
}


@pytest.mark.parametrize("vendor", list(CHECKED))
def test_the_credentials_check_makes_one_read_only_request_with_the_documented_auth(
    vendor, helpdesk_source, stub_helpdesk
):
    stub = stub_helpdesk(vendor)
    stub.expect(user="agent@example.com", token="good-token")
    source = helpdesk_source(vendor, base_url=stub.base_url, api_user="agent@example.com", api_token="good-token")

    result = credentials_check(source=source)

    assert result.ok, result
    assert result.request == f"GET {stub.base_url}{CHECKED[vendor]}"
    assert [m for m, _, _, kind in stub.requests if kind != "token"] == ["GET"]
    assert stub.violations == []


@pytest.mark.parametrize("vendor", ["zendesk", "freshdesk", "intercom", "front", "chatwoot", "zammad"])
def test_the_credentials_check_says_what_failed(vendor, helpdesk_source, stub_helpdesk):
    stub = stub_helpdesk(vendor)
    stub.expect(user="agent@example.com", token="good-token")
    source = helpdesk_source(vendor, base_url=stub.base_url, api_user="agent@example.com", api_token="bad-token")

    result = credentials_check(source=source)

    assert not result.ok and result.status == 401
    assert "HTTP 401" in result.message and "authentication header not as documented" in result.message


def test_an_anonymous_zendesk_answer_is_not_a_success(helpdesk_source, stub_helpdesk):
    stub = stub_helpdesk("zendesk")
    stub.me = {"user": {"id": None, "name": "Anonymous user"}}
    source = helpdesk_source("zendesk", base_url=stub.base_url, api_user="a@example.com", api_token="t")

    result = credentials_check(source=source)

    assert not result.ok and "not as an authenticated user" in result.message


def test_the_credentials_check_without_a_token_sends_nothing(helpdesk_source, stub_helpdesk):
    stub = stub_helpdesk("zammad")
    source = helpdesk_source("zammad", base_url=stub.base_url)

    result = credentials_check(source=source)

    assert not result.ok and result.message == "the source has no API token" and stub.requests == []


def test_a_vendor_preview_fixture_is_not_mutated_by_intake(front_event):
    # FRONT_PREVIEW is shared between tests: intake must not change what it is given
    before = copy.deepcopy(FRONT_PREVIEW)
    from integrations.helpdesks.front.connection import preview_event_id

    assert preview_event_id(FRONT_PREVIEW) == "evt_55c8c149" and preview_event_id(front_event) is None
    assert before == FRONT_PREVIEW
