"""Webhook intake, one test per vendor payload fixture: valid, badly signed, replayed."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import FailedDelivery, WebhookDelivery
from triage.models import PipelineRun, Ticket
from triage.tasks import runs_sweep

# Vendor-sourced fixture (integrations/helpdesks/<vendor>/fixtures, see SOURCE.md there) -> (sign as a Front
# app webhook?, what the ticket must say).
TICKET_FIXTURES = {
    "zendesk/ticket_created_event.json": (
        False,
        {
            "external_id": "5158",
            "subject": "ticketinfo_2294a6e9ece2",
            "requester": "",  # the event names the requester by id only: left for the Users API lookup
            "tags": ["ticket-info-test-tag"],
            "body": "ticket_info_desc_2294a6e9ece2",
        },
    ),
    "zendesk/trigger_ticket.json": (
        False,
        {
            "external_id": "5160",
            "subject": "Where is my order #48213?",
            "requester": "sam.carter@example.com",
            "tags": ["order_status", "web_form"],
            "body": "still hasn't arrived",
        },
    ),
    "freshdesk/ticket_created.json": (
        False,
        {
            "external_id": "1042",
            "subject": "Refund for duplicate charge",
            "requester": "priya.n@example.org",
            "tags": ["billing", "club"],
            "body": "charged twice",
        },
    ),
    "freshdesk/ticket_created_simple.json": (
        False,
        {
            "external_id": "1043",
            "subject": "Grinder makes a clicking noise",
            "requester": "ola.berg@example.org",
            "tags": ["equipment"],
            "body": "clicks when it starts",
        },
    ),
    "helpscout/convo_created.json": (
        False,
        {
            "external_id": "123",
            "subject": "Need Help",
            "requester": "bear@acme.com",
            "tags": ["vip"],
            "body": "having a hard time resolving this",
        },
    ),
    "helpscout/convo_created_with_thread.json": (
        False,
        {
            "external_id": "123",
            "subject": "Need Help",
            "requester": "bear@acme.com",
            "tags": ["vip"],
            "body": "This is a test",
        },
    ),
    "intercom/conversation_user_created.json": (
        False,
        {
            "external_id": "504",
            "subject": "Re: Bug query",
            "requester": "admin176@email.com",
            "tags": ["Test tag"],
            "body": "This is the message body",
        },
    ),
    "front/inbound_rule.json": (
        False,
        {
            "external_id": "cnv_55c8c149",
            "subject": "Damaged kettle",
            "requester": "ana@example.com",
            "tags": ["equipment"],
            "body": "arrived dented",
        },
    ),
    "front/inbound_app.json": (
        True,
        {
            "external_id": "cnv_77aa01",
            "subject": "Gift card not working",
            "requester": "max@example.com",
            "tags": [],
            "body": "TW-4431",
        },
    ),
    "chatwoot/message_created.json": (
        False,
        {
            "external_id": "312",
            "subject": "",
            "requester": "rui.costa@example.com",
            "tags": [],
            "body": "never got it",
        },
    ),
    "chatwoot/conversation_created.json": (
        False,
        {
            "external_id": "318",
            "subject": "Promo code rejected",
            "requester": "eve.stone@example.com",
            "tags": [],
            "body": "WELCOME10 is rejected",
        },
    ),
    "zammad/ticket_created.json": (
        False,
        {
            "external_id": "81",
            "subject": "Webhook-Test",
            "requester": "emily@example.com",
            "tags": [],
            "body": "This is a simple Webhook Test.",
        },
    ),
}
SIGNS_TIMESTAMP = {
    "zendesk/ticket_created_event.json",
    "zendesk/trigger_ticket.json",
    "front/inbound_app.json",
    "chatwoot/message_created.json",
    "chatwoot/conversation_created.json",
}
# fixture -> (headers added to the vendor's signed headers, words the "ignored" reason has)
IGNORED_FIXTURES = {
    "zendesk/ticket_comment_added.json": ({}, "ticket.comment_added"),
    "freshdesk/ticket_updated.json": ({}, "not a ticket creation"),
    "intercom/ping.json": ({}, "ping"),
    "chatwoot/message_outgoing.json": ({}, "our own replies"),
    "chatwoot/conversation_created_empty.json": ({}, "no message yet"),
    "zammad/trigger_no_article.json": ({}, "without an article"),
    "helpscout/convo_created.json": ({"X-HelpScout-Event": "convo.tags"}, "convo.tags"),
}


def vendor_of(name: str) -> str:
    return name.split("/")[0]


def nothing_stored() -> bool:
    return not Ticket.objects.exclude(source__in=["demo", "test"]).exists() and not WebhookDelivery.objects.exists()


@pytest.mark.parametrize("name", TICKET_FIXTURES)
def test_fixture_with_valid_signature_becomes_one_ticket_with_its_run(name, helpdesk_source, deliver, sign, payload):
    # given
    app, expected = TICKET_FIXTURES[name]
    source = helpdesk_source(vendor_of(name))
    body = payload(name)

    # when
    response = deliver(source, body, sign(source.vendor, body, app=app))

    # then
    assert response.status_code == 202, response.content
    ticket = Ticket.objects.get(pk=response.json()["ticket"])
    assert ticket.source == f"{source.vendor}:{source.pk}"
    assert ticket.external_id == expected["external_id"]
    assert ticket.subject == expected["subject"]
    assert ticket.requester == expected["requester"]
    assert ticket.tags == expected["tags"]
    assert expected["body"] in ticket.body
    assert "<" not in ticket.body and "alert(1)" not in ticket.body  # HTML became plain text
    assert PipelineRun.objects.filter(ticket=ticket).count() == 1
    assert WebhookDelivery.objects.get(source=source).ticket_id == ticket.pk


@pytest.mark.parametrize("name", TICKET_FIXTURES)
def test_fixture_with_bad_signature_is_refused_and_nothing_stored(name, helpdesk_source, deliver, sign, payload):
    # given: signed with another secret, and once with no signature at all
    app, _ = TICKET_FIXTURES[name]
    source = helpdesk_source(vendor_of(name))
    body = payload(name)

    # when
    wrong = deliver(source, body, sign(source.vendor, body, secret="not-the-secret", app=app))
    missing = deliver(source, body, {})
    tampered = deliver(source, body.replace(b"e", b"E", 1), sign(source.vendor, body, app=app))

    # then
    assert (wrong.status_code, missing.status_code) == (401, 401)
    if source.vendor != "freshdesk":  # Freshdesk sends a shared token, not a signature over the body
        assert tampered.status_code == 401
    assert "error" in wrong.json()
    assert nothing_stored()


@pytest.mark.parametrize("name", TICKET_FIXTURES)
def test_fixture_replayed_is_refused_or_answered_without_a_second_ticket(name, helpdesk_source, deliver, sign, payload):
    # given: one accepted delivery
    app, _ = TICKET_FIXTURES[name]
    source = helpdesk_source(vendor_of(name))
    body = payload(name)
    headers = sign(source.vendor, body, app=app)
    assert deliver(source, body, headers).status_code == 202

    # when: the same delivery again; and, where the vendor signs a time, a correctly signed old one
    again = deliver(source, body, headers)
    stale = (
        deliver(source, body, sign(source.vendor, body, at=time.time() - 600, app=app))
        if name in SIGNS_TIMESTAMP
        else None
    )

    # then
    assert again.status_code == 200 and again.json()["duplicate"] is True
    if stale is not None:
        assert stale.status_code == 401
    assert Ticket.objects.filter(source=source.ticket_source).count() == 1
    assert PipelineRun.objects.filter(ticket__source=source.ticket_source).count() == 1
    assert WebhookDelivery.objects.filter(source=source).count() == 1


@pytest.mark.parametrize("name", ["zendesk/ticket_created_event.json", "zammad/ticket_created.json"])
def test_a_new_delivery_of_a_known_ticket_creates_nothing_new(name, helpdesk_source, deliver, sign, payload):
    # given: the vendor retries with a fresh delivery id (Zendesk invocation id, Zammad delivery id)
    source = helpdesk_source(vendor_of(name))
    body = payload(name)
    first = deliver(source, body, sign(source.vendor, body))

    # when
    second = deliver(source, body, sign(source.vendor, body))

    # then: same source + external id: no second ticket or run
    assert first.status_code == 202
    assert second.status_code == 200 and second.json() == {"duplicate": True, "ticket": first.json()["ticket"]}
    assert Ticket.objects.filter(source=source.ticket_source).count() == 1
    assert PipelineRun.objects.filter(ticket__source=source.ticket_source).count() == 1


@pytest.mark.parametrize("name", IGNORED_FIXTURES)
def test_events_that_carry_no_new_ticket_are_answered_2xx_with_the_reason_and_store_nothing(
    name, helpdesk_source, deliver, sign, payload, caplog
):
    # given: a genuine, correctly signed delivery of an event that is not a new customer message
    extra, says = IGNORED_FIXTURES[name]
    source = helpdesk_source(vendor_of(name))
    body = payload(name)

    # when
    with caplog.at_level("INFO", logger="integrations"):
        response = deliver(source, body, sign(source.vendor, body) | extra)

    # then: 2xx, so the helpdesk does not retry, saying why; logged; nothing stored
    assert response.status_code == 202, response.content
    assert response.json()["ignored"] is True
    assert says in response.json()["reason"]
    assert "ignored" in caplog.text
    assert nothing_stored()


def test_malformed_json_is_400(helpdesk_source, deliver, sign):
    source = helpdesk_source("intercom")
    body = b'{"topic": "conversation.user.created", '

    response = deliver(source, body, sign("intercom", body))

    assert response.status_code == 400
    assert response.json()["field"] == "(root)"
    assert nothing_stored()


def test_missing_required_field_is_400_naming_it(helpdesk_source, deliver, sign, payload):
    source = helpdesk_source("zammad")
    data = json.loads(payload("zammad/ticket_created.json"))
    del data["article"]["body"]
    body = json.dumps(data).encode()

    response = deliver(source, body, sign("zammad", body))

    assert response.status_code == 400
    answer = response.json()
    assert (answer["error"], answer["field"]) == ("article.body: Field required", "article.body")
    # no ticket, but the body is kept as a failed delivery to replay after a fix
    assert not Ticket.objects.exclude(source__in=["demo", "test"]).exists()
    assert FailedDelivery.objects.get(pk=answer["failed_delivery"]).error.startswith("article.body")


def test_invalid_contract_field_is_400_naming_it(helpdesk_source, deliver, sign, payload):
    # given: a body that is only markup, so nothing is left once HTML becomes text
    source = helpdesk_source("freshdesk")
    data = json.loads(payload("freshdesk/ticket_created.json"))
    data["freshdesk_webhook"]["ticket_description"] = "<div><br></div><script>x()</script>"
    body = json.dumps(data).encode()

    response = deliver(source, body, sign("freshdesk", body))

    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert nothing_stored()


def test_body_over_the_limit_is_413(helpdesk_source, deliver, sign, settings):
    settings.TRIAGE_WEBHOOK_MAX_BYTES = 2048
    source = helpdesk_source("intercom")
    body = json.dumps({"topic": "conversation.user.created", "pad": "x" * 4096}).encode()

    response = deliver(source, body, sign("intercom", body))

    assert response.status_code == 413
    assert nothing_stored()


def test_replay_window_is_configurable(helpdesk_source, deliver, sign, payload, settings):
    settings.TRIAGE_WEBHOOK_REPLAY_SECONDS = 30
    source = helpdesk_source("chatwoot")
    body = payload("chatwoot/message_created.json")

    response = deliver(source, body, sign("chatwoot", body, at=time.time() - 60))

    assert response.status_code == 401
    assert nothing_stored()


def test_freshdesk_token_may_come_as_basic_auth_password(helpdesk_source, deliver, payload, sign):
    import base64

    source = helpdesk_source("freshdesk")
    body = payload("freshdesk/ticket_created.json")
    basic = "Basic " + base64.b64encode(f"freshdesk:{sign('freshdesk', body)['X-Webhook-Token']}".encode()).decode()

    response = deliver(source, body, {"Authorization": basic})

    assert response.status_code == 202


def test_previous_secret_is_accepted_during_its_grace_period_only(helpdesk_source, deliver, sign, payload):
    # given: the secret was rotated; the old one is still valid for an hour
    from integrations.helpdesks.intake import helpdesk_source_secret_rotate

    source = helpdesk_source("intercom", secret="old-secret-1111")
    helpdesk_source_secret_rotate(source=source, new_secret="new-secret-2222", grace=timedelta(hours=1))
    source.save()
    body = payload("intercom/conversation_user_created.json")

    # when / then: old and new both verify during the grace period
    assert deliver(source, body, sign("intercom", body, secret="old-secret-1111")).status_code == 202
    assert deliver(source, body, sign("intercom", body, secret="new-secret-2222")).status_code == 200

    # when the grace period is over, the old secret is refused
    source.previous_secret_valid_until = timezone.now() - timedelta(seconds=1)
    source.save()
    assert deliver(source, body, sign("intercom", body, secret="old-secret-1111")).status_code == 401


def test_inactive_or_mismatched_source_is_404(helpdesk_source, client, sign, payload):
    source = helpdesk_source("zammad", active=False)
    body = payload("zammad/ticket_created.json")

    inactive = client.post(
        f"/webhooks/zammad/{source.pk}", data=body, content_type="application/json", headers=sign("zammad", body)
    )
    other_vendor = client.post(
        f"/webhooks/intercom/{source.pk}", data=body, content_type="application/json", headers=sign("intercom", body)
    )
    unknown_vendor = client.post(f"/webhooks/acme/{source.pk}", data=body, content_type="application/json")

    assert (inactive.status_code, other_vendor.status_code, unknown_vendor.status_code) == (404, 404, 404)
    assert nothing_stored()


def test_failure_after_ticket_written_leaves_nothing_half_written(helpdesk_source, client, sign, payload, settings):
    # given: the ingest service writes the ticket and run, then something fails before commit
    settings.TRIAGE_INGEST_SERVICE = "tests_failing_ingest.ingest_then_fail"
    import sys
    import types

    module = types.ModuleType("tests_failing_ingest")

    def ingest_then_fail(*, ticket_in):
        from triage.services import ticket_ingest

        ticket_ingest(ticket_in=ticket_in)
        raise RuntimeError("disk full")

    module.ingest_then_fail = ingest_then_fail
    sys.modules["tests_failing_ingest"] = module
    source = helpdesk_source("zammad")
    body = payload("zammad/ticket_created.json")

    # when
    response = client.post(
        f"/webhooks/zammad/{source.pk}", data=body, content_type="application/json", headers=sign("zammad", body)
    )

    # then: nothing half-written; the genuine delivery is kept whole for a replay, and the vendor told to retry
    assert nothing_stored()
    assert not PipelineRun.objects.filter(ticket__source=source.ticket_source).exists()
    assert response.status_code == 503
    from integrations.models import FailedDelivery

    assert bytes(FailedDelivery.objects.get(source=source).body) == body


def test_run_is_enqueued_only_after_commit(
    helpdesk_source, deliver, sign, payload, django_capture_on_commit_callbacks, settings
):
    settings.TRIAGE_QUEUE_BACKEND = "none"
    source = helpdesk_source("intercom")
    body = payload("intercom/conversation_user_created.json")

    with django_capture_on_commit_callbacks() as callbacks:
        response = deliver(source, body, sign("intercom", body))

    assert response.status_code == 202
    assert len(callbacks) == 1
    assert PipelineRun.objects.get(pk=response.json()["run"]).status == PipelineRun.Status.QUEUED


def test_front_application_webhook_challenge_is_echoed_when_signed(helpdesk_source, deliver, sign):
    source = helpdesk_source("front")
    body = b'{"type": "sync", "authorization": {"id": "cmp_abc"}}'

    signed = deliver(source, body, sign("front", body, app=True) | {"X-Front-Challenge": "ch-8812"})
    unsigned = deliver(source, body, {"X-Front-Challenge": "ch-8812"})

    assert signed.status_code == 200 and signed.json() == {"challenge": "ch-8812"}
    assert unsigned.status_code == 401
    assert nothing_stored()


def test_a_delivery_while_redis_is_down_is_answered_202_and_the_sweeper_works_its_run(
    settings, helpdesk_source, deliver, sign, payload, django_capture_on_commit_callbacks
):
    # given: Redis unreachable when the ticket commits
    settings.TRIAGE_QUEUE_BACKEND = "rq"
    settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:1/11", "DEFAULT_TIMEOUT": 120}}
    source = helpdesk_source("zendesk")
    body = payload("zendesk/ticket_created_event.json")

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(source, body, sign(source.vendor, body, app=False))

    # then: accepted, not a 500 after the commit; the run waits for the sweeper
    assert response.status_code == 202, response.content
    run = PipelineRun.objects.get(ticket_id=response.json()["ticket"])
    assert run.status == PipelineRun.Status.QUEUED

    # when: a worker is back and the grace period is over
    settings.TRIAGE_QUEUE_BACKEND = "immediate"
    PipelineRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    runs_sweep()

    # then: the run reached its end
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.WAITING
