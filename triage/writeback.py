"""Where a run's actions land: recorded inside the product (API, demo), or written back to the helpdesk
a ticket came from. `triage.services._writeback_for` picks the writer from the ticket's source.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from triage.models import Action, Ticket

logger = logging.getLogger(__name__)


def record_only(*, action: Action, ticket: Ticket) -> dict[str, Any]:
    """The action is carried out inside the product: recorded on the ticket's run, nothing sent out."""
    return {"recorded": True, "kind": action.kind, "ticket": ticket.pk}


def helpdesk(*, action: Action, ticket: Ticket) -> dict[str, Any]:
    """Carry out the action on the ticket in its helpdesk (source ``<vendor>:<HelpdeskSource id>``).

    The action's idempotency key goes with every request (``Idempotency-Key``), and a reply is looked
    for on the remote ticket before it is posted, so a retried write-back never posts twice. Errors
    propagate: the caller records the action FAILED with the error, and `retry_writebacks` tries again.
    Every request goes through the source's circuit breaker: while it is open nothing is sent and the
    error says until when.
    """
    from integrations.helpdesks import vendor_module
    from integrations.models import HelpdeskSource

    vendor, _, source_id = ticket.source.partition(":")
    source = HelpdeskSource.objects.filter(pk=int(source_id), vendor=vendor).first()
    if source is None:
        raise LookupError(f"helpdesk source {ticket.source} no longer exists")
    client = vendor_module(vendor).Client(base_url=source.base_url, api_user=source.api_user, api_token=source.api_token,
                                          source=ticket.source)
    return client.execute(
        kind=action.kind, payload=action.payload, ticket_id=ticket.external_id, requester=ticket.requester,
        key=action.idempotency_key,
    )


def writebacks_retry(*, limit: int = 100, max_attempts: int = 20) -> dict[str, int]:
    """Try again, oldest first, the actions that FAILED and those left IN_FLIGHT by a worker that stopped
    (claimed longer ago than TRIAGE_WRITEBACK_LEASE); DONE ones are never touched.

    Actions of a helpdesk whose circuit is open are left for a later run without spending an attempt.
    Each action is claimed, called and recorded like a run's own (`action_carry_out`): no row lock is held
    during the call, and a second retry command running at the same time skips what this one claimed.
    """
    from integrations.helpdesks.breaker import open_until
    from triage.services import _writeback_for, action_carry_out

    counts = {"done": 0, "failed": 0, "waiting": 0}
    stale = timezone.now() - timedelta(seconds=float(getattr(settings, "TRIAGE_WRITEBACK_LEASE", 600)))
    candidates = (
        Action.objects.filter(attempts__lt=max_attempts)
        .filter(Q(status=Action.Status.FAILED) | Q(status=Action.Status.IN_FLIGHT, claimed_at__lt=stale))
        .order_by("pk")
        .values_list("pk", "run__ticket__source")[:limit]
    )
    for pk, source in list(candidates):
        writer = _writeback_for(source)
        # Asked for every action: a probe earlier in this pass may have opened the circuit again.
        if writer is helpdesk and open_until(source) is not None:
            counts["waiting"] += 1
            continue
        action = action_carry_out(action_id=pk, writer=writer)
        if action.status == Action.Status.DONE:
            counts["done"] += 1
        elif action.status == Action.Status.FAILED:
            logger.warning("write-back retry of action %s failed: %s", pk, action.error)
            counts["failed"] += 1
    return counts
