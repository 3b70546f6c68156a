"""Webhook intake: verify, parse, then one transaction for the delivery row, the ticket and its run.

Domain code is reached through settings (`TRIAGE_TICKET_CONTRACT`, `TRIAGE_INGEST_SERVICE`), so
integrations never imports triage.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from pydantic import ValidationError

from integrations.helpdesks import vendor_module
from integrations.helpdesks.base import IncomingTicket, PayloadError, SignatureError
from integrations.models import HelpdeskSource, WebhookDelivery

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeOutcome:
    status: int
    body: dict[str, Any]


def _error(status: int, message: str, field: str | None = None) -> IntakeOutcome:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return IntakeOutcome(status, body)


def source_secrets(*, source: HelpdeskSource, now: Any = None) -> list[str]:
    """The current secret, and the previous one while its grace period lasts."""
    now = now or timezone.now()
    secrets = [source.secret]
    if source.previous_secret and source.previous_secret_valid_until and source.previous_secret_valid_until > now:
        secrets.append(source.previous_secret)
    return [s for s in secrets if s]


def helpdesk_source_secret_rotate(*, source: HelpdeskSource, new_secret: str, grace: timedelta | None = None) -> HelpdeskSource:
    """Put a new secret in place; the old one stays valid for `grace` (TRIAGE_WEBHOOK_SECRET_GRACE_SECONDS)."""
    if grace is None:
        grace = timedelta(seconds=int(getattr(settings, "TRIAGE_WEBHOOK_SECRET_GRACE_SECONDS", 24 * 3600)))
    if new_secret and new_secret != source.secret:
        if source.secret:
            source.previous_secret = source.secret
            source.previous_secret_valid_until = timezone.now() + grace
        source.secret = new_secret
    return source


def webhook_receive(*, vendor: str, source_id: int, headers: Mapping[str, str], body: bytes) -> IntakeOutcome:
    """Everything a webhook endpoint does after reading the body (size already checked)."""
    source = HelpdeskSource.objects.filter(pk=source_id, vendor=vendor, active=True).first()
    if source is None:
        return _error(404, "no active helpdesk source with this vendor and id")
    module = vendor_module(vendor)

    # 1. The signature, on the raw body, against every secret still valid.
    try:
        if not any(module.verify(headers=headers, body=body, secret=s) for s in source_secrets(source=source)):
            raise SignatureError("signature does not match")
        signed = module.signed_at(headers=headers)
    except SignatureError as exc:
        logger.warning("webhook %s/%s refused: %s", vendor, source_id, exc)
        return _error(401, str(exc))
    window = float(getattr(settings, "TRIAGE_WEBHOOK_REPLAY_SECONDS", 300))
    if signed is not None and abs(time.time() - signed) > window:
        logger.warning("webhook %s/%s refused: signed timestamp outside the %ss window", vendor, source_id, window)
        return _error(401, "signed timestamp is outside the replay window")
    handshake = getattr(module, "handshake", None)
    if handshake is not None and (answer := handshake(headers=headers)) is not None:
        return IntakeOutcome(200, answer)

    # 2. The payload.
    import json

    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return _error(400, f"malformed JSON: {exc}"[:300], "(root)")
    try:
        incoming = module.parse(payload=payload, headers=headers)
    except PayloadError as exc:
        return _error(400, f"{exc.field} {exc.reason}", exc.field)
    if incoming is None:
        event = payload.get("topic") or payload.get("type") or payload.get("event") if isinstance(payload, dict) else None
        logger.info("webhook %s/%s: event %r ignored", vendor, source_id, event or headers.get("X-HelpScout-Event"))
        return IntakeOutcome(202, {"ignored": True})

    ticket_contract = import_string(settings.TRIAGE_TICKET_CONTRACT)
    delivery_id = incoming.delivery_id or "sha256:" + hashlib.sha256(body).hexdigest()
    try:
        ticket_in = ticket_contract.model_validate(_contract_fields(incoming, source=source, delivery_id=delivery_id))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        return _error(400, f"{field}: {err['msg']}", field)
    return _store(source=source, incoming=incoming, ticket_in=ticket_in, delivery_id=delivery_id)


def _contract_fields(incoming: IncomingTicket, *, source: HelpdeskSource, delivery_id: str) -> dict[str, Any]:
    return {
        "source": source.ticket_source,
        "external_id": incoming.external_id[:200],
        "subject": incoming.subject.strip()[:500],
        "body": incoming.body[:100_000],
        "requester": incoming.requester,
        "tags": incoming.tags,
        "delivery_id": delivery_id[:200],
    }


def _store(*, source: HelpdeskSource, incoming: IncomingTicket, ticket_in: Any, delivery_id: str) -> IntakeOutcome:
    ingest = import_string(settings.TRIAGE_INGEST_SERVICE)
    # One transaction: the delivery row, the ticket and its run exist together or not at all; the run
    # is enqueued by the ingest service on commit.
    with transaction.atomic():
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    source=source, delivery_id=delivery_id[:200], event=incoming.event[:100], external_id=incoming.external_id[:200]
                )
        except IntegrityError:
            logger.info("webhook %s: delivery %s already received", source.ticket_source, delivery_id)
            return IntakeOutcome(200, {"duplicate": True, "delivery_id": delivery_id})
        result = ingest(ticket_in=ticket_in)
        delivery.ticket_id = result.ticket.pk
        delivery.outcome = WebhookDelivery.Outcome.CREATED if result.created else WebhookDelivery.Outcome.DUPLICATE
        delivery.save(update_fields=["ticket_id", "outcome"])
    if not result.created:
        return IntakeOutcome(200, {"duplicate": True, "ticket": result.ticket.pk})
    return IntakeOutcome(202, {"ticket": result.ticket.pk, "run": result.run.pk})
