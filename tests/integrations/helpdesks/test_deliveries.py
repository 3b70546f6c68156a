"""Nothing a helpdesk sends is lost: genuine deliveries that made no ticket are kept whole and replayable;
forged ones are refused and leave nothing; bodies replayed where the vendor signs no time are duplicates."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from integrations.helpdesks.deliveries import (
    deliveries_prune,
    failed_delivery_replay,
    failed_delivery_retention,
    storable_headers,
)
from integrations.models import FailedDelivery, WebhookDelivery
from triage.models import Ticket


def test_a_genuine_delivery_we_cannot_parse_is_kept_whole_without_its_credentials(helpdesk_source, deliver):
    # given: a Freshdesk rule whose body lacks the ticket id, authenticated by its shared token
    source = helpdesk_source("freshdesk")
    body = json.dumps({"freshdesk_webhook": {"ticket_subject": "Refund", "ticket_description": "twice"}}).encode()

    # when
    response = deliver(source, body, {"X-Webhook-Token": source.secret, "X-Request-Id": "req-1"})

    # then: a 400 naming the field, and the delivery kept byte for byte, minus the token
    assert response.status_code == 400
    answer = response.json()
    kept = FailedDelivery.objects.get(pk=answer["failed_delivery"])
    assert bytes(kept.body) == body and kept.vendor == "freshdesk" and kept.source == source
    assert "ticket_id" in kept.error and kept.answered == 400 and kept.status == FailedDelivery.Status.FAILED
    assert kept.headers.get("X-Request-Id") == "req-1"
    assert not any(source.secret in str(v) for v in kept.headers.values())
    assert not {"X-Webhook-Token", "Authorization"} & set(kept.headers)
    assert Ticket.objects.count() == 0


def test_the_vendors_retries_of_one_body_count_on_one_kept_row(helpdesk_source, deliver):
    source = helpdesk_source("freshdesk")
    body = b'{"freshdesk_webhook": {}}'

    for _ in range(3):
        deliver(source, body, {"X-Webhook-Token": source.secret})

    kept = FailedDelivery.objects.get(source=source)
    assert kept.attempts == 3


def test_a_forged_delivery_is_refused_and_nothing_is_kept(helpdesk_source, deliver):
    source = helpdesk_source("freshdesk")

    response = deliver(source, b"not even json", {"X-Webhook-Token": "guessed"})

    assert response.status_code == 401
    assert FailedDelivery.objects.count() == 0 and WebhookDelivery.objects.count() == 0


def test_credentials_are_never_stored_with_a_kept_delivery():
    headers = {
        "Authorization": "Basic c2VjcmV0Olg=",
        "X-Webhook-Token": "t",
        "api_access_token": "a",
        "X-Custom-Secret": "s",
        "X-Hub-Signature": "sha1=ab",
        "Content-Type": "application/json",
    }

    assert storable_headers(headers) == {"X-Hub-Signature": "sha1=ab", "Content-Type": "application/json"}


def test_a_replay_after_the_fix_makes_exactly_one_ticket(helpdesk_source, deliver, payload, sign, stub_helpdesk):
    # given: a Zendesk delivery kept because the Users API did not answer for its requester
    stub = stub_helpdesk("zendesk")
    stub.fail_all = True
    stub.users["8447388090494"] = {"id": 8447388090494, "email": "maria.lopez@example.com"}
    source = helpdesk_source("zendesk", base_url=stub.base_url, api_user="a@example.com", api_token="t")
    event = json.loads(payload("zendesk/ticket_created_event.json"))
    event["event"].pop("requester", None)  # the documented event names the requester by id only
    body = json.dumps(event).encode()
    response = deliver(source, body, sign("zendesk", body))
    assert response.status_code == 202 and response.json()["kept"] is True
    kept = FailedDelivery.objects.get(pk=response.json()["failed_delivery"])
    assert "HTTP 503" in kept.error and Ticket.objects.count() == 0

    # when: the API answers again and the delivery is replayed twice
    stub.fail_all = False
    first = failed_delivery_replay(failed=kept)
    second = failed_delivery_replay(failed=kept)

    # then: one ticket, with its requester; the second replay is a duplicate
    ticket = Ticket.objects.get()
    assert first.status == 202 and second.status == 200 and second.body["duplicate"] is True
    assert ticket.requester == "maria.lopez@example.com" and ticket.external_id == "5158"
    kept.refresh_from_db()
    assert kept.status == FailedDelivery.Status.REPLAYED and kept.ticket_id == ticket.pk and kept.replays == 2
    assert WebhookDelivery.objects.filter(source=source).count() == 1


def test_a_zendesk_source_without_an_api_token_still_makes_the_ticket(helpdesk_source, deliver, payload, sign):
    source = helpdesk_source("zendesk")
    event = json.loads(payload("zendesk/ticket_created_event.json"))
    event["event"].pop("requester", None)  # the documented event names the requester by id only
    body = json.dumps(event).encode()

    response = deliver(source, body, sign("zendesk", body))

    assert response.status_code == 202 and Ticket.objects.get().requester == ""
    assert FailedDelivery.objects.count() == 0


def test_replay_command_replays_retryable_ones_by_default_and_every_open_one_with_all(helpdesk_source, deliver, capsys):
    source = helpdesk_source("freshdesk")
    deliver(source, b'{"freshdesk_webhook": {}}', {"X-Webhook-Token": source.secret})

    call_command("replay_deliveries")
    assert "0 done, 0 still failing" in capsys.readouterr().out

    call_command("replay_deliveries", "--all")
    out = capsys.readouterr().out
    assert "0 done, 1 still failing" in out and "ticket_id" in out
    assert FailedDelivery.objects.get().replays == 1


def test_a_body_replayed_with_a_new_delivery_id_is_a_duplicate_where_no_time_is_signed(
    helpdesk_source, deliver, payload, sign
):
    # given: Zammad signs the body only; X-Zammad-Delivery is an unsigned header an attacker can change
    source = helpdesk_source("zammad")
    body = payload("zammad/ticket_created.json")
    first = deliver(source, body, sign("zammad", body))

    # when: the captured body comes again with a fresh delivery id (sign() makes a new one)
    again = deliver(source, body, sign("zammad", body))

    # then
    assert first.status_code == 202
    assert again.status_code == 200 and again.json() == {"duplicate": True, "ticket": first.json()["ticket"]}
    assert WebhookDelivery.objects.filter(source=source).count() == 1
    assert WebhookDelivery.objects.get(source=source).body_digest


def test_the_digest_is_remembered_for_the_replay_retention_period_only(
    helpdesk_source, deliver, payload, sign, settings
):
    source = helpdesk_source("zammad")
    body = payload("zammad/ticket_created.json")
    deliver(source, body, sign("zammad", body))
    settings.TRIAGE_WEBHOOK_REPLAY_RETENTION_DAYS = 0  # the period is over

    again = deliver(source, body, sign("zammad", body))

    # a new delivery row, but the ticket is still the one ticket (its external id is known)
    assert again.status_code == 200 and "ticket" in again.json()
    assert WebhookDelivery.objects.filter(source=source).count() == 2
    assert Ticket.objects.filter(source=source.ticket_source).count() == 1


def test_a_fault_of_ours_keeps_the_genuine_delivery_for_a_later_replay(
    helpdesk_source, deliver, payload, sign, monkeypatch
):
    # given: the ticket service fails (a bug, the database gone)
    source = helpdesk_source("intercom")
    body = payload("intercom/conversation_user_created.json")

    def broken(**kwargs):
        raise RuntimeError("database is gone")

    monkeypatch.setattr("triage.services.ticket_ingest", broken)

    # when
    response = deliver(source, body, sign("intercom", body))

    # then: the vendor is asked to retry (5xx), and the delivery is kept as retryable meanwhile
    assert response.status_code == 503 and "RuntimeError" in response.json()["error"]
    kept = FailedDelivery.objects.get()
    assert kept.retryable and Ticket.objects.count() == 0 and WebhookDelivery.objects.count() == 0

    # when: fixed, the retryable deliveries are replayed
    monkeypatch.undo()
    call_command("replay_deliveries")

    # then
    assert Ticket.objects.count() == 1
    kept.refresh_from_db()
    assert kept.status == FailedDelivery.Status.REPLAYED


def test_a_forged_delivery_that_meets_a_fault_of_ours_is_not_kept(helpdesk_source, deliver, monkeypatch):
    source = helpdesk_source("intercom")

    def broken(**kwargs):
        raise RuntimeError("parser bug")

    monkeypatch.setattr("integrations.helpdesks.deliveries.webhook_receive", broken)

    with pytest.raises(RuntimeError):
        deliver(source, b"{}", {"X-Hub-Signature": "sha1=" + "0" * 40})

    assert FailedDelivery.objects.count() == 0


def test_the_retention_pass_prunes_delivery_records_only_after_the_replay_retention_period(
    helpdesk_source, deliver, payload, sign, settings
):
    # given: the replay-retention period of 30 days and a 90-day keep for failed deliveries never replayed
    settings.TRIAGE_WEBHOOK_REPLAY_RETENTION_DAYS = 30
    settings.TRIAGE_FAILED_DELIVERY_RETENTION_DAYS = 90
    source = helpdesk_source("zammad")
    now = timezone.now()
    fresh_body = payload("zammad/ticket_created.json")
    deliver(source, fresh_body, sign("zammad", fresh_body))
    old_digest = hashlib.sha256(b"an older delivery").hexdigest()
    WebhookDelivery.objects.create(source=source, delivery_id="older", body_digest=old_digest)
    WebhookDelivery.objects.filter(body_digest=old_digest).update(received_at=now - timedelta(days=31))
    WebhookDelivery.objects.exclude(body_digest=old_digest).update(received_at=now - timedelta(days=29))

    def failed(label: str, status: str, *, received_days: float, replayed_days: float | None) -> FailedDelivery:
        row = FailedDelivery.objects.create(
            source=source,
            vendor="zammad",
            body=label.encode(),
            body_digest=hashlib.sha256(label.encode()).hexdigest(),
            error="x",
            answered=400,
            status=status,
        )
        FailedDelivery.objects.filter(pk=row.pk).update(
            last_received_at=now - timedelta(days=received_days),
            last_replayed_at=None if replayed_days is None else now - timedelta(days=replayed_days),
        )
        return row

    replayed_old = failed("replayed-old", FailedDelivery.Status.REPLAYED, received_days=40, replayed_days=31)
    replayed_recent = failed("replayed-recent", FailedDelivery.Status.REPLAYED, received_days=40, replayed_days=29)
    open_recent = failed("open-recent", FailedDelivery.Status.FAILED, received_days=89, replayed_days=None)
    open_old = failed("open-old", FailedDelivery.Status.FAILED, received_days=91, replayed_days=None)

    # when: one pass, in batches of one row
    result = deliveries_prune(now=now, batch_size=1)

    # then: only what is older than its period went
    assert (result.webhook_deliveries, result.replayed, result.unresolved, result.done) == (1, 1, 1, True)
    assert list(WebhookDelivery.objects.values_list("body_digest", flat=True)) == [
        hashlib.sha256(fresh_body).hexdigest()
    ]
    assert set(FailedDelivery.objects.values_list("pk", flat=True)) == {replayed_recent.pk, open_recent.pk}
    assert not FailedDelivery.objects.filter(pk__in=[replayed_old.pk, open_old.pk]).exists()
    # and the body still inside the period is still answered as a replay
    again = deliver(source, fresh_body, sign("zammad", fresh_body))
    assert again.json().get("duplicate") is True
    assert WebhookDelivery.objects.count() == 1


def test_the_retention_pass_never_drops_unresolved_failed_deliveries_before_the_replay_period(settings):
    settings.TRIAGE_WEBHOOK_REPLAY_RETENTION_DAYS = 30

    settings.TRIAGE_FAILED_DELIVERY_RETENTION_DAYS = 7
    assert failed_delivery_retention() == timedelta(days=30)
    settings.TRIAGE_FAILED_DELIVERY_RETENTION_DAYS = 0
    assert failed_delivery_retention() is None


def test_the_retention_pass_stops_at_its_batch_budget_and_says_more_is_left(helpdesk_source, settings):
    settings.TRIAGE_WEBHOOK_REPLAY_RETENTION_DAYS = 1
    source = helpdesk_source("zammad")
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(source=source, delivery_id=f"d{i}", body_digest=f"{i:064d}") for i in range(5)
    )
    WebhookDelivery.objects.update(received_at=timezone.now() - timedelta(days=2))

    first = deliveries_prune(now=timezone.now(), batch_size=2, max_batches=2)
    second = deliveries_prune(now=timezone.now(), batch_size=2, max_batches=2)

    assert (first.webhook_deliveries, first.done) == (4, False)
    assert (second.webhook_deliveries, second.done) == (1, True)
    assert not WebhookDelivery.objects.exists()


def test_replay_command_refuses_an_unknown_id_or_a_limit_under_one_and_replays_nothing(
    helpdesk_source, deliver, capsys
):
    source = helpdesk_source("freshdesk")
    deliver(source, b'{"freshdesk_webhook": {}}', {"X-Webhook-Token": source.secret})
    kept = FailedDelivery.objects.get()

    with pytest.raises(CommandError, match=r"no open failed delivery #999999 .*nothing was replayed"):
        call_command("replay_deliveries", "--id", str(kept.pk), "--id", "999999")
    for limit in ("0", "-1"):
        with pytest.raises(CommandError, match=f"must be at least 1, not {limit}"):
            call_command("replay_deliveries", "--all", "--limit", limit)
    assert FailedDelivery.objects.get().replays == 0

    call_command("replay_deliveries", "--id", str(kept.pk))
    assert "0 done, 1 still failing" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--limit", "0"], ["--max-attempts", "-1"], ["--limit", "ten"]])
def test_retry_writebacks_refuses_a_limit_or_attempts_under_one(db, args):
    with pytest.raises(CommandError, match="must be at least 1|not a whole number"):
        call_command("retry_writebacks", *args)
