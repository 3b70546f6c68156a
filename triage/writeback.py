"""Where a run's actions land: recorded inside the product (API, demo), or written back to the helpdesk
a ticket came from. `writer_for` picks the writer from the ticket's source; `run_actions_execute`
carries a run's actions out, each exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from triage.contracts import ProposedAction
from triage.models import Action, PipelineRun, Ticket

logger = logging.getLogger(__name__)


def record_only(*, action: Action, ticket: Ticket) -> dict[str, Any]:
    """The action is carried out inside the product: recorded on the ticket's run, nothing sent out."""
    return {"recorded": True, "kind": action.kind, "ticket": ticket.pk}


_record_only = record_only


def helpdesk(*, action: Action, ticket: Ticket) -> dict[str, Any]:
    """Carry out the action on the ticket in its helpdesk (source ``<vendor>:<HelpdeskSource id>``).

    The action's idempotency key goes with every request (``Idempotency-Key``), and a reply is looked
    for on the remote ticket before it is posted, so a retried write-back never posts twice. Errors
    propagate: the caller records the action FAILED with the error, and `retry_writebacks` tries again.
    """
    from integrations.helpdesks import vendor_module
    from integrations.models import HelpdeskSource

    vendor, _, source_id = ticket.source.partition(":")
    source = HelpdeskSource.objects.filter(pk=int(source_id), vendor=vendor).first()
    if source is None:
        raise LookupError(f"helpdesk source {ticket.source} no longer exists")
    client = vendor_module(vendor).Client(base_url=source.base_url, api_user=source.api_user, api_token=source.api_token)
    return client.execute(
        kind=action.kind, payload=action.payload, ticket_id=ticket.external_id, requester=ticket.requester,
        key=action.idempotency_key,
    )


def run_actions_execute(
    *, run: PipelineRun, actions: Sequence[ProposedAction], reply: str, record_only: bool = False
) -> list[Action]:
    """Carry out a run's actions, each exactly once.

    Every action gets an idempotency key from the run and its position; the row is created once
    (unique key) and locked while it executes, so a retry or a resumed run finds it done.
    `record_only` (shadow runs of an evaluation) records the actions and sends nothing anywhere.
    """
    writer = _record_only if record_only else writer_for(run.ticket.source)
    done: list[Action] = []
    for position, proposed in enumerate(actions):
        payload = proposed.model_dump(mode="json")
        if proposed.kind == "send_reply":
            payload["body"] = reply
        key = f"run:{run.pk}:{position}:{proposed.kind}"
        action, _ = Action.objects.get_or_create(idempotency_key=key, defaults={"run": run, "kind": proposed.kind, "payload": payload})
        with transaction.atomic():
            action = Action.objects.select_for_update().get(pk=action.pk)
            if action.status != Action.Status.DONE:
                action.attempts += 1
                try:
                    action.result = writer(action=action, ticket=run.ticket)
                    action.status = Action.Status.DONE
                    action.executed_at = timezone.now()
                    action.error = ""
                except Exception as exc:  # noqa: BLE001 - recorded and retried later, never dropped
                    logger.warning("action %s failed: %s", key, exc)
                    action.status = Action.Status.FAILED
                    action.error = f"{type(exc).__name__}: {exc}"[:5000]
                action.save()
        done.append(action)
    return done


def writer_for(source: str) -> Callable[..., dict[str, Any]]:
    """The writer for a ticket's source: a setting per source, else the helpdesk it came from
    (`<vendor>:<source id>`), else recorded only."""
    backends: dict[str, str] = getattr(settings, "TRIAGE_WRITEBACK_BACKENDS", {})
    if source in backends:
        return import_string(backends[source])
    vendor, _, source_id = source.partition(":")
    if source_id.isdigit() and vendor in getattr(settings, "TRIAGE_WRITEBACK_VENDORS", ()):
        return import_string("triage.writeback.helpdesk")
    return import_string("triage.writeback.record_only")


def writebacks_retry(*, limit: int = 100, max_attempts: int = 20) -> dict[str, int]:
    """Try FAILED actions again (oldest first), each under its row lock; DONE ones are never touched."""
    counts = {"done": 0, "failed": 0}
    ids = list(
        Action.objects.filter(status=Action.Status.FAILED, attempts__lt=max_attempts).order_by("pk").values_list("pk", flat=True)[:limit]
    )
    for pk in ids:
        with transaction.atomic():
            action = Action.objects.select_for_update(skip_locked=True).select_related("run__ticket").filter(pk=pk).first()
            if action is None or action.status != Action.Status.FAILED:
                continue
            ticket = action.run.ticket
            action.attempts += 1
            try:
                action.result = writer_for(ticket.source)(action=action, ticket=ticket)
                action.status = Action.Status.DONE
                action.executed_at = timezone.now()
                action.error = ""
                counts["done"] += 1
            except Exception as exc:  # noqa: BLE001 - stays FAILED with its error, tried again next time
                logger.warning("write-back retry of action %s failed: %s", pk, exc)
                action.error = f"{type(exc).__name__}: {exc}"[:5000]
                counts["failed"] += 1
            action.save()
    return counts
