"""Webhook intake: verify, parse, then one transaction for the delivery row, the ticket and its run.

Domain code is reached through settings (`TRIAGE_TICKET_CONTRACT`, `TRIAGE_INGEST_SERVICE`), so
integrations never imports triage.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
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
from integrations.helpdesks.base import IncomingTicket, PayloadError, SignatureError, json_load
from integrations.helpdesks.connection import FetchFailed, connection_module
from integrations.models import HelpdeskSource, WebhookDelivery

logger = logging.getLogger(__name__)

# NUL and lone surrogates: PostgreSQL stores neither in text. (The contract cleans the ticket's own
# fields; this is for what the delivery row keeps besides them.)
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class IntakeOutcome:
    status: int
    body: dict[str, Any]
    # A delivery that passed its signature check and made no ticket: the caller keeps it as a FailedDelivery
    # (integrations.helpdesks.deliveries). `retryable`: a remote API failed, a later replay may succeed.
    failed: bool = False
    retryable: bool = False


def _error(status: int, message: str, field: str | None = None) -> IntakeOutcome:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    # Every 400 is answered after the signature was checked: the delivery is genuine and is kept.
    return IntakeOutcome(status, body, failed=status == 400)


def _fetch_failed(vendor: str, source_id: int, exc: FetchFailed) -> IntakeOutcome:
    # Answered 2xx: the delivery is kept and replayed from here (Front does not retry rule webhooks, and a
    # vendor that does would only add attempts to the same kept delivery).
    logger.warning("webhook %s/%s kept as failed: %s", vendor, source_id, exc.reason)
    return IntakeOutcome(
        202, {"kept": True, "error": exc.reason, "retryable": exc.retryable}, failed=True, retryable=exc.retryable
    )


def webhook_authenticate(
    *, source: HelpdeskSource, headers: Mapping[str, str], body: bytes, url_token: str = ""
) -> float | None:
    """Check a delivery is the helpdesk's own; the signed time (epoch seconds), None where none is signed.

    A source that opted into URL tokens (Chatwoot releases that sign nothing) accepts a delivery that carries
    no signature header when its URL `token` matches, compared in constant time; a delivery that does carry
    a signature is always checked by it. Raises `SignatureError`.
    """
    module = vendor_module(source.vendor)
    unsigned_header = getattr(connection_module(source.vendor), "URL_TOKEN_SIGNATURE", "")
    if source.accept_url_token and unsigned_header and not headers.get(unsigned_header):
        if not source.url_token or not hmac.compare_digest(url_token.encode(), source.url_token.encode()):
            raise SignatureError("no signature, and the URL token does not match")
        return None
    if not any(module.verify(headers=headers, body=body, secret=s) for s in source_secrets(source=source)):
        raise SignatureError("signature does not match")
    signed: float | None = module.signed_at(headers=headers)
    return signed


def source_secrets(*, source: HelpdeskSource, now: Any = None) -> list[str]:
    """The current secret, and the previous one while its grace period lasts."""
    now = now or timezone.now()
    secrets = [source.secret]
    if source.previous_secret and source.previous_secret_valid_until and source.previous_secret_valid_until > now:
        secrets.append(source.previous_secret)
    return [s for s in secrets if s]


def helpdesk_source_secret_rotate(
    *, source: HelpdeskSource, new_secret: str, grace: timedelta | None = None
) -> HelpdeskSource:
    """Put a new secret in place; the old one stays valid for `grace` (TRIAGE_WEBHOOK_SECRET_GRACE_SECONDS)."""
    if grace is None:
        grace = timedelta(seconds=int(getattr(settings, "TRIAGE_WEBHOOK_SECRET_GRACE_SECONDS", 24 * 3600)))
    if new_secret and new_secret != source.secret:
        if source.secret:
            source.previous_secret = source.secret
            source.previous_secret_valid_until = timezone.now() + grace
        source.secret = new_secret
    return source


def webhook_receive(
    *,
    vendor: str,
    source_id: int,
    headers: Mapping[str, str],
    body: bytes,
    url_token: str = "",
    verified: bool = False,
) -> IntakeOutcome:
    """Everything a webhook endpoint does after reading the body (size already checked).

    `verified`: the body was authenticated when it was received (a replay of a kept `FailedDelivery`).
    """
    source = HelpdeskSource.objects.filter(pk=source_id, vendor=vendor, active=True).first()
    if source is None:
        return _error(404, "no active helpdesk source with this vendor and id")
    module = vendor_module(vendor)

    # 1. The signature, on the raw body, against every secret still valid.
    try:
        signed = (
            None if verified else webhook_authenticate(source=source, headers=headers, body=body, url_token=url_token)
        )
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

    # 2. The payload. An integer too long for Python is kept as a marker, refused only if a field that is
    # read holds it (a vendor's unused metadata must not turn a ticket away).
    try:
        payload = json_load(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _error(400, f"malformed JSON: {exc}"[:300], "(root)")
    connection = connection_module(vendor)
    if (prepare := getattr(connection, "prepare", None)) is not None:
        try:  # what the delivery only points at (Front's event preview), read through the vendor's API
            payload = prepare(source=source, payload=payload, headers=headers)
        except FetchFailed as exc:
            return _fetch_failed(vendor, source_id, exc)
    try:
        incoming = module.parse(payload=payload, headers=headers)
    except PayloadError as exc:
        return _error(400, f"{exc.field} {exc.reason}", exc.field)
    if incoming is None:
        event = (
            payload.get("topic") or payload.get("type") or payload.get("event") if isinstance(payload, dict) else None
        )
        logger.info("webhook %s/%s: event %r ignored", vendor, source_id, event or headers.get("X-HelpScout-Event"))
        return IntakeOutcome(202, {"ignored": True})

    if (complete := getattr(connection, "complete", None)) is not None:
        try:  # what the delivery names only by id (Zendesk's requester), read through the vendor's API
            incoming = complete(source=source, payload=payload, incoming=incoming)
        except FetchFailed as exc:
            return _fetch_failed(vendor, source_id, exc)

    # 3. The contract. The helpdesk cannot correct a delivery, and one that is refused is retried until it
    # gives up and the ticket is lost; so free text is fitted to the limits (cut with a visible marker,
    # unstorable characters cleaned) and the change recorded on the delivery, where the API refuses the
    # same input with a 400 its client can act on. An identifier is never cut (two tickets would become
    # one): an unusable external id is a 400 naming it on both paths.
    ticket_contract = import_string(settings.TRIAGE_TICKET_CONTRACT)
    body_digest = hashlib.sha256(body).hexdigest()
    delivery_id = _delivery_key(
        incoming.delivery_id or "sha256:" + body_digest,
        limit=ticket_contract.max_length("delivery_id"),
    )
    fields, adjustments = ticket_contract.fitted(
        fields={
            "source": source.ticket_source,
            "external_id": incoming.external_id,
            "subject": incoming.subject.strip(),
            "body": incoming.body,
            "requester": incoming.requester,
            "tags": incoming.tags,
            "delivery_id": delivery_id,
        }
    )
    try:
        ticket_in = ticket_contract.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        logger.warning("webhook %s/%s refused: %s: %s", vendor, source_id, field, err["msg"])
        return _error(400, f"{field}: {err['msg']}", field)
    if adjustments:
        logger.warning(
            "webhook %s/%s delivery %s fitted to the limits: %s", vendor, source_id, delivery_id, "; ".join(adjustments)
        )
    return _store(
        source=source,
        incoming=incoming,
        ticket_in=ticket_in,
        delivery_id=delivery_id,
        adjustments=adjustments,
        body_digest=body_digest,
        digest_dedup=signed is None,
    )


def _delivery_key(delivery_id: str, *, limit: int) -> str:
    """The delivery id as stored: one too long or unstorable as text is replaced by its sha256, which still
    tells a retry of the same delivery from a new one (cutting it could make two deliveries one)."""
    if len(delivery_id) <= limit and not _UNSTORABLE.search(delivery_id):
        return delivery_id
    return "sha256:" + hashlib.sha256(delivery_id.encode("utf-8", "surrogatepass")).hexdigest()


def _storable_label(value: str, *, limit: int) -> str:
    """An informational label (the event name) as text PostgreSQL can store, cut to `limit`."""
    return _UNSTORABLE.sub("", value)[:limit]


def replay_retention() -> timedelta:
    """How long a delivery's body digest is remembered against replays (`TRIAGE_WEBHOOK_REPLAY_RETENTION_DAYS`)."""
    return timedelta(days=float(getattr(settings, "TRIAGE_WEBHOOK_REPLAY_RETENTION_DAYS", 30)))


def _store(
    *,
    source: HelpdeskSource,
    incoming: IncomingTicket,
    ticket_in: Any,
    delivery_id: str,
    adjustments: list[str],
    body_digest: str,
    digest_dedup: bool,
) -> IntakeOutcome:
    # Where the vendor signs no time, a captured body can be sent again at any time, and the delivery id
    # (an unsigned header, where there is one) with it changed: the signed body's digest is what identifies
    # it, for the replay-retention period.
    if digest_dedup:
        earlier = (
            WebhookDelivery.objects.filter(
                source=source, body_digest=body_digest, received_at__gte=timezone.now() - replay_retention()
            )
            .values_list("ticket_id", flat=True)
            .first()
        )
        if earlier is not None:
            logger.info("webhook %s: body %s already received", source.ticket_source, body_digest)
            return IntakeOutcome(200, {"duplicate": True, "ticket": earlier})
    ingest = import_string(settings.TRIAGE_INGEST_SERVICE)
    # One transaction: the delivery row, the ticket and its run exist together or not at all; the run
    # is enqueued by the ingest service on commit.
    with transaction.atomic():
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    source=source,
                    delivery_id=delivery_id,
                    event=_storable_label(incoming.event, limit=100),
                    external_id=ticket_in.external_id,
                    adjustments=adjustments,
                    body_digest=body_digest,
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
    answer: dict[str, Any] = {"ticket": result.ticket.pk, "run": result.run.pk}
    if adjustments:
        answer["adjusted"] = adjustments
    return IntakeOutcome(202, answer)
