"""Where a run's actions land: recorded inside the product (API, demo), or written back to the helpdesk
a ticket came from. `writer_for` picks the writer from the ticket's source; `run_actions_execute`
carries a run's actions out, each exactly once, with no transaction open during a helpdesk call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from integrations.helpdesks import vendor_module
from integrations.helpdesks.breaker import open_until
from integrations.models import HelpdeskSource
from integrations.tracing import outbound_call, span_error
from integrations.vendors import VENDORS
from triage.contracts import ActionKind, ProposedAction
from triage.instruments import writeback_count
from triage.models import Action, PipelineRun, Ticket

logger = logging.getLogger(__name__)


def record_only(*, action: Action, ticket: Ticket) -> dict[str, Any]:
    """The action is carried out inside the product: recorded on the ticket's run, nothing sent out."""
    return {"recorded": True, "kind": action.kind, "ticket": ticket.pk}


_record_only = record_only  # the parameter of run_actions_execute shadows the name


def helpdesk(*, action: Action, ticket: Ticket) -> dict[str, Any]:
    """Carry out the action on the ticket in its helpdesk (source ``<vendor>:<HelpdeskSource id>``).

    The action's idempotency key goes with every request (``Idempotency-Key``), and a reply is looked
    for on the remote ticket before it is posted, so a retried write-back never posts twice. Errors
    propagate: the caller records the action FAILED with the error, and `retry_writebacks` tries again.
    Every request goes through the source's circuit breaker: while it is open nothing is sent and the
    error says until when.
    """
    vendor, _, source_id = ticket.source.partition(":")
    source = HelpdeskSource.objects.filter(pk=int(source_id), vendor=vendor).first()
    if source is None:
        raise LookupError(f"helpdesk source {ticket.source} no longer exists")
    client = vendor_module(vendor).Client(
        base_url=source.base_url, api_user=source.api_user, api_token=source.api_token, source=ticket.source
    )
    return client.execute(
        kind=action.kind,
        payload=action.payload,
        ticket_id=ticket.external_id,
        requester=ticket.requester,
        key=action.idempotency_key,
    )


def run_actions_execute(
    *, run: PipelineRun, actions: Sequence[ProposedAction], reply: str, record_only: bool = False
) -> list[Action]:
    """Carry out a run's actions, each exactly once.

    Every action gets an idempotency key from the run and its position; the row is created once
    (unique key). Each is carried out by `action_carry_out`: no transaction or row lock is held while
    the helpdesk is called, so call this outside any transaction. `record_only` (shadow runs of an
    evaluation) records the actions and sends nothing anywhere.
    """
    writer = _record_only if record_only else writer_for(run.ticket.source)
    planned: list[tuple[str, str, dict[str, Any]]] = []
    for position, proposed in enumerate(actions):
        payload = proposed.model_dump(mode="json")
        if proposed.kind == ActionKind.SEND_REPLY:
            payload["body"] = reply
        planned.append((f"run:{run.pk}:{position}:{proposed.kind}", proposed.kind, payload))
    if writer is _record_only:
        return _actions_record_only(run=run, planned=planned)
    done: list[Action] = []
    for key, kind, payload in planned:
        action, _ = Action.objects.get_or_create(
            idempotency_key=key, defaults={"run": run, "kind": kind, "payload": payload}
        )
        done.append(action_carry_out(action_id=action.pk, writer=writer))
    return done


def _actions_record_only(*, run: PipelineRun, planned: list[tuple[str, str, dict[str, Any]]]) -> list[Action]:
    """Record-only actions (nothing leaves the product) created and carried out in one transaction.

    The claim / call / record split of `action_carry_out` exists so that no transaction is open during a
    helpdesk call; a record-only writer calls nothing outside, so all of a run's actions are written at
    once: all or none of them, each still exactly once (its unique idempotency key; rows that exist, from
    an earlier attempt, are locked and finished, never duplicated).
    """
    now = timezone.now()
    keys = [key for key, _, _ in planned]
    with transaction.atomic():
        existing = {a.idempotency_key: a for a in Action.objects.select_for_update().filter(idempotency_key__in=keys)}
        done: list[Action] = []
        new: list[Action] = []
        for key, kind, payload in planned:
            action = existing.get(key)
            if action is None:
                action = Action(run=run, kind=kind, payload=payload, idempotency_key=key)
                new.append(action)
            elif action.status == Action.Status.DONE:
                done.append(action)
                continue
            action.status = Action.Status.DONE
            action.attempts += 1
            action.result = record_only(action=action, ticket=run.ticket)
            action.executed_at = now
            action.error = ""
            action.claimed_at = None
            if action.pk is not None:
                action.save(update_fields=["status", "attempts", "result", "executed_at", "error", "claimed_at"])
            done.append(action)
        Action.objects.bulk_create(new)
    return done


def action_carry_out(*, action_id: int, writer: Callable[..., dict]) -> Action:
    """Claim the action, call `writer` with no transaction open, record the outcome.

    Three steps instead of one locked transaction: a helpdesk that does not answer must not hold a row
    lock (and with it the run's staff pages and the retry command) for as long as it takes. The claim
    (status IN_FLIGHT, one more attempt, `claimed_at`) is what keeps two workers from calling the
    helpdesk for the same action at once. An action that is done, or claimed by another worker within
    TRIAGE_WRITEBACK_LEASE, is returned as it is.
    """
    action = _action_claim(action_id=action_id)
    if action is None:
        return Action.objects.get(pk=action_id)
    ticket = action.run.ticket
    destination = _destination(writer, ticket)
    with outbound_call(
        f"write-back {action.kind}",
        triage__writer=destination,
        triage__action__kind=action.kind,
        triage__action__key=action.idempotency_key,
        triage__action__attempt=action.attempts,
        triage__run__id=action.run_id,
        triage__ticket__id=ticket.pk,
    ) as span:
        try:
            result = writer(action=action, ticket=ticket)
        except Exception as exc:  # noqa: BLE001 - recorded and retried later, never dropped
            logger.warning("action %s failed: %s", action.idempotency_key, exc)
            span_error(span, exc)
            writeback_count(writer=destination, failed=True)
            return _action_record(action=action, error=f"{type(exc).__name__}: {exc}"[:5000])
    writeback_count(writer=destination, failed=False)
    return _action_record(action=action, result=result)


def _destination(writer: Callable[..., dict], ticket: Ticket) -> str:
    """Where a write-back goes, for its span and metrics: the helpdesk vendor, else the writer's name."""
    if writer is helpdesk:
        return ticket.source.partition(":")[0]
    return getattr(writer, "__name__", type(writer).__name__)


def _action_claim(*, action_id: int) -> Action | None:
    """Mark the action in flight in a short transaction of its own; None when it is not ours to carry out."""
    now = timezone.now()
    lease = timedelta(seconds=float(getattr(settings, "TRIAGE_WRITEBACK_LEASE", 600)))
    with transaction.atomic():
        action = Action.objects.select_for_update(of=("self",)).select_related("run__ticket").get(pk=action_id)
        if action.status == Action.Status.DONE:
            return None
        if (
            action.status == Action.Status.IN_FLIGHT
            and action.claimed_at is not None
            and action.claimed_at > now - lease
        ):
            return None
        action.status = Action.Status.IN_FLIGHT
        action.attempts += 1
        action.claimed_at = now
        action.save(update_fields=["status", "attempts", "claimed_at"])
    return action


def _action_record(*, action: Action, result: dict | None = None, error: str = "") -> Action:
    """Record the outcome of a claimed attempt in a second short transaction.

    A success is always recorded: the helpdesk has it. A failure is recorded only while the claim is still
    this attempt's; if the lease ran out and another worker claimed the action meanwhile, its outcome wins.
    """
    with transaction.atomic():
        current = Action.objects.select_for_update().get(pk=action.pk)
        if current.status == Action.Status.DONE:
            return current
        if not error:
            current.status = Action.Status.DONE
            current.result = result
            current.executed_at = timezone.now()
            current.error = ""
        elif current.status == Action.Status.IN_FLIGHT and current.attempts == action.attempts:
            current.status = Action.Status.FAILED
            current.error = error
        else:
            logger.warning(
                "action %s: attempt %s failed after another worker claimed it; left to that worker",
                action.idempotency_key,
                action.attempts,
            )
            return current
        current.claimed_at = None
        current.save(update_fields=["status", "result", "executed_at", "error", "claimed_at"])
    return current


def writer_for(source: str) -> Callable[..., dict[str, Any]]:
    """The writer for a ticket's source: a setting per source, else the helpdesk it came from
    (`<vendor>:<source id>`, a vendor of `integrations.vendors`), else recorded only."""
    backends: dict[str, str] = getattr(settings, "TRIAGE_WRITEBACK_BACKENDS", {})
    if source in backends:
        return import_string(backends[source])
    vendor, _, source_id = source.partition(":")
    if source_id.isdigit() and vendor in VENDORS:
        return helpdesk
    return record_only


def writebacks_retry(*, limit: int = 100, max_attempts: int = 20) -> dict[str, int]:
    """Try again, oldest first, the actions that FAILED and those left IN_FLIGHT by a worker that stopped
    (claimed longer ago than TRIAGE_WRITEBACK_LEASE); DONE ones are never touched.

    Actions of a helpdesk whose circuit is open are left for a later run without spending an attempt.
    Each action is claimed, called and recorded like a run's own (`action_carry_out`): no row lock is held
    during the call, and a second retry command running at the same time skips what this one claimed.
    """
    counts = {"done": 0, "failed": 0, "waiting": 0}
    stale = timezone.now() - timedelta(seconds=float(getattr(settings, "TRIAGE_WRITEBACK_LEASE", 600)))
    candidates = (
        Action.objects.filter(attempts__lt=max_attempts)
        .filter(Q(status=Action.Status.FAILED) | Q(status=Action.Status.IN_FLIGHT, claimed_at__lt=stale))
        .order_by("pk")
        .values_list("pk", "run__ticket__source")[:limit]
    )
    for pk, source in list(candidates):
        writer = writer_for(source)
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
