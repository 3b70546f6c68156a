"""Nothing a helpdesk sends is lost: a genuine delivery that made no ticket is kept whole (`FailedDelivery`)
and can be replayed through the same intake once the cause is fixed.

Only deliveries that passed their signature (or URL-token) check are kept: a forged body is refused with a
401 and nothing is stored, so nobody can fill the table from outside.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone

from integrations.helpdesks.base import SignatureError
from integrations.helpdesks.intake import IntakeOutcome, replay_retention, webhook_authenticate, webhook_receive
from integrations.models import FailedDelivery, HelpdeskSource, WebhookDelivery

logger = logging.getLogger(__name__)

# Headers that carry a credential (Freshdesk's shared token travels in a custom header or as the basic-auth
# password), never stored. Signatures are not secrets and are kept: they say what was signed.
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-webhook-token", "api_access_token"})
_SECRET_WORDS = ("token", "secret", "password", "api-key", "apikey")


def storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's headers without credentials."""
    kept = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in SECRET_HEADERS or any(word in lower for word in _SECRET_WORDS):
            continue
        kept[name] = str(value)[:2000]
    return kept


def webhook_deliver(
    *, vendor: str, source_id: int, headers: Mapping[str, str], body: bytes, url_token: str = ""
) -> IntakeOutcome:
    """The webhook endpoint's service: intake, and a genuine delivery that made no ticket kept for replay."""
    try:
        outcome = webhook_receive(vendor=vendor, source_id=source_id, headers=headers, body=body, url_token=url_token)
    except Exception as exc:
        # A fault of ours (a parser bug, the database gone) must not lose a genuine delivery either.
        logger.exception("webhook %s/%s: intake failed", vendor, source_id)
        source = HelpdeskSource.objects.filter(pk=source_id, vendor=vendor, active=True).first()
        if source is None or not _authentic(source=source, headers=headers, body=body, url_token=url_token):
            raise
        outcome = IntakeOutcome(503, {"error": f"intake failed: {type(exc).__name__}"}, failed=True, retryable=True)
    if not outcome.failed:
        return outcome
    source = HelpdeskSource.objects.get(pk=source_id)
    kept = _keep(source=source, headers=headers, body=body, outcome=outcome)
    return IntakeOutcome(outcome.status, {**outcome.body, "failed_delivery": kept.pk}, failed=True)


def _authentic(*, source: HelpdeskSource, headers: Mapping[str, str], body: bytes, url_token: str) -> bool:
    try:
        webhook_authenticate(source=source, headers=headers, body=body, url_token=url_token)
    except SignatureError:
        return False
    return True


def _keep(*, source: HelpdeskSource, headers: Mapping[str, str], body: bytes, outcome: IntakeOutcome) -> FailedDelivery:
    digest = hashlib.sha256(body).hexdigest()
    error = str(outcome.body.get("error") or "no ticket made")
    fields: dict[str, Any] = {
        "error": error,
        "field": str(outcome.body.get("field") or "")[:300],
        "answered": outcome.status,
        "retryable": outcome.retryable,
        "headers": storable_headers(headers),
    }
    # The vendor's retries of one body count on one open row (the partial unique constraint decides races).
    open_rows = FailedDelivery.objects.filter(source=source, body_digest=digest, status=FailedDelivery.Status.FAILED)
    if open_rows.update(**fields, attempts=F("attempts") + 1, last_received_at=timezone.now()):
        return open_rows.get()
    try:
        with transaction.atomic():
            return FailedDelivery.objects.create(
                source=source, vendor=source.vendor, body=body, body_digest=digest, **fields
            )
    except IntegrityError:
        open_rows.update(attempts=F("attempts") + 1, last_received_at=timezone.now())
        return open_rows.get()


def failed_delivery_replay(*, failed: FailedDelivery) -> IntakeOutcome:
    """Run the intake again on a kept delivery's body and headers (its signature was checked when it came).

    Idempotent: the ticket is created once whatever the number of replays (the delivery row, the body digest
    and the ticket's (source, external id) are unique). Success marks the row replayed with its ticket.
    """
    outcome = webhook_receive(
        vendor=failed.vendor,
        source_id=failed.source_id,
        headers=failed.headers,
        body=bytes(failed.body),
        verified=True,
    )
    now = timezone.now()
    failed.replays += 1
    failed.last_replayed_at = now
    if outcome.failed or outcome.status >= 400:
        failed.error = str(outcome.body.get("error") or failed.error)
        failed.field = str(outcome.body.get("field") or "")[:300]
        failed.retryable = outcome.retryable
        failed.save(update_fields=["replays", "last_replayed_at", "error", "field", "retryable"])
        return outcome
    failed.status = FailedDelivery.Status.REPLAYED
    ticket = outcome.body.get("ticket")
    failed.ticket_id = ticket if isinstance(ticket, int) else failed.ticket_id
    failed.save(update_fields=["replays", "last_replayed_at", "status", "ticket_id"])
    return outcome


@dataclass(frozen=True)
class DeliveriesPruneResult:
    webhook_deliveries: int  # dedup rows older than the replay-retention period, deleted
    replayed: int  # failed deliveries replayed (ticket made or known) before that period, deleted
    unresolved: int  # failed deliveries never replayed, older than TRIAGE_FAILED_DELIVERY_RETENTION_DAYS
    done: bool  # False: stopped at max_batches with more left for the next pass


def failed_delivery_retention() -> timedelta | None:
    """How long an unresolved failed delivery is kept (`TRIAGE_FAILED_DELIVERY_RETENTION_DAYS`; 0 keeps it
    until an admin deletes it). Never shorter than the replay-retention period: its body digest is also what
    counts a vendor's retries of that body."""
    days = float(getattr(settings, "TRIAGE_FAILED_DELIVERY_RETENTION_DAYS", 90))
    if days <= 0:
        return None
    return max(timedelta(days=days), replay_retention())


def _delete_in_batches(queryset: models.QuerySet[Any], *, batch_size: int, budget: int) -> tuple[int, int]:
    """Delete `queryset`'s rows `batch_size` at a time, one short transaction each, at most `budget`
    batches; returns (rows deleted, batches used). Batches keep a pass from holding long locks on tables
    the webhooks write to."""
    deleted = batches = 0
    while batches < budget:
        pks = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not pks:
            break
        with transaction.atomic():
            deleted += queryset.model.objects.filter(pk__in=pks).delete()[0]
        batches += 1
        if len(pks) < batch_size:
            break
    return deleted, batches


def deliveries_prune(*, now: datetime, batch_size: int = 1000, max_batches: int = 100) -> DeliveriesPruneResult:
    """Delete the delivery records that no longer protect or keep anything.

    - `WebhookDelivery` rows received before the replay-retention period: the body-digest dedup reads only
      that period (`intake._store`), so an older row protects nothing; a vendor's retry of an older delivery
      still finds its ticket by (source, external id).
    - `FailedDelivery` rows replayed (their ticket made or known) before that period.
    - `FailedDelivery` rows never replayed, only after `failed_delivery_retention()` (off with 0): they are
      the one copy of a delivery that made no ticket.
    Idempotent and bounded: at most `max_batches` deletes of `batch_size` rows; the rest waits for the next pass.
    """
    cutoff = now - replay_retention()
    budget = max_batches
    webhook, used = _delete_in_batches(
        WebhookDelivery.objects.filter(received_at__lt=cutoff), batch_size=batch_size, budget=budget
    )
    budget -= used
    replayed, used = _delete_in_batches(
        FailedDelivery.objects.filter(status=FailedDelivery.Status.REPLAYED, last_replayed_at__lt=cutoff),
        batch_size=batch_size,
        budget=budget,
    )
    budget -= used
    unresolved = 0
    keep_unresolved = failed_delivery_retention()
    if keep_unresolved is not None:
        unresolved, used = _delete_in_batches(
            FailedDelivery.objects.filter(
                status=FailedDelivery.Status.FAILED, last_received_at__lt=now - keep_unresolved
            ),
            batch_size=batch_size,
            budget=budget,
        )
        budget -= used
    return DeliveriesPruneResult(webhook, replayed, unresolved, done=budget > 0)
