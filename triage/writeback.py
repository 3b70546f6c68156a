"""Where a run's actions land: recorded inside the product (API, demo), or written back to the helpdesk
a ticket came from. `writer_for` picks the writer from the ticket's source; `run_actions_execute`
carries a run's actions out, each exactly once, with no transaction open during a helpdesk call.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils import timezone
from django.utils.module_loading import import_string

from integrations.helpdesks import vendor_module
from integrations.helpdesks.breaker import open_until
from integrations.models import HelpdeskSource
from integrations.tracing import outbound_call, span_error
from integrations.vendors import VENDORS
from triage.contracts import ActionKind, ProposedAction
from triage.durability import (
    connection_lost,
    insert_statement,
    returning_unflushed,
    run_lock,
    transaction_unflushed,
    unsaved,
)
from triage.instruments import writeback_count
from triage.models import Action, PipelineRun, StepRun, Ticket
from triage.selectors import action_kinds_mapped
from triage.tools import action_tool_write

logger = logging.getLogger(__name__)


# A writer is called as ``writer(action=, ticket=) -> dict`` (what happened, for the trace) and raises when
# its call did not take effect. It may also offer ``reconcile(action=, ticket=) -> dict | None``, asked
# instead of a blind second call when an earlier attempt was claimed and never recorded (its worker died
# between the call and the record): a dict means the effect is there (recorded as done, nothing is sent); None
# means it is not there, or that carrying it out again changes nothing, so the writer is called. A writer
# without `reconcile` is never called twice on a guess: such an action is left for a person to check.


class RecordOnly:
    """The action is carried out inside the product: recorded on the ticket's run, nothing sent out."""

    def __call__(self, *, action: Action, ticket: Ticket) -> dict[str, Any]:
        return {"recorded": True, "kind": action.kind, "ticket": ticket.pk}

    def reconcile(self, *, action: Action, ticket: Ticket) -> dict[str, Any] | None:
        return None  # nothing left the product: recording it again is the same record


record_only = RecordOnly()
_record_only = record_only  # the parameter of run_actions_execute shadows the name


class HelpdeskWriter:
    """Carry out the action on the ticket in its helpdesk (source ``<vendor>:<HelpdeskSource id>``).

    The action's idempotency key goes with every request (``Idempotency-Key``), and a reply is looked
    for on the remote ticket before it is posted, so a retried write-back never posts twice. Errors
    propagate: the caller records the action FAILED with the error, and `retry_writebacks` tries again.
    Every request goes through the source's circuit breaker: while it is open nothing is sent and the
    error says until when.
    """

    def _client(self, ticket: Ticket) -> Any:
        vendor, _, source_id = ticket.source.partition(":")
        source = HelpdeskSource.objects.filter(pk=int(source_id), vendor=vendor).first()
        if source is None:
            raise LookupError(f"helpdesk source {ticket.source} no longer exists")
        return vendor_module(vendor).Client(
            base_url=source.base_url, api_user=source.api_user, api_token=source.api_token, source=ticket.source
        )

    def __call__(self, *, action: Action, ticket: Ticket) -> dict[str, Any]:
        return self._client(ticket).execute(
            kind=action.kind,
            payload=action.payload,
            ticket_id=ticket.external_id,
            requester=ticket.requester,
            key=action.idempotency_key,
        )

    def reconcile(self, *, action: Action, ticket: Ticket) -> dict[str, Any] | None:
        """What the helpdesk shows of an attempt never recorded (`HelpdeskClient.reconcile`, per vendor)."""
        return self._client(ticket).reconcile(kind=action.kind, payload=action.payload, ticket_id=ticket.external_id)


helpdesk = HelpdeskWriter()


def run_actions_execute(
    *,
    run: PipelineRun,
    actions: Sequence[ProposedAction],
    reply: str,
    record_only: bool = False,
    mapped_kinds: frozenset[str] | None = None,
    deferred: list[tuple[str, Sequence[Any]]] | None = None,
    before_send: Callable[[], None] | None = None,
) -> list[Action]:
    """Carry out a run's actions, each exactly once.

    Every action gets an idempotency key from the run and its position; the row is created once
    (unique key). Each is carried out by `action_carry_out`: no transaction or row lock is held while
    the helpdesk is called, so call this outside any transaction. `record_only` (shadow runs of an
    evaluation) records the actions and sends nothing anywhere.

    The runner passes the tool-mapped kinds it already read (`mapped_kinds`; None: read here), a list to
    hold the statement of record-only actions (`deferred`: it is written with the run's close, see
    `_actions_record_only_statement`), and `before_send`, called once before the first action that may
    leave the product (a tool's, a helpdesk's), so that what the runner holds is written first.
    """
    writer = _record_only if record_only else writer_for(run.ticket.source)
    planned: list[tuple[str, str, dict[str, Any]]] = []
    for position, proposed in enumerate(actions):
        payload = proposed.model_dump(mode="json")
        if proposed.kind == ActionKind.SEND_REPLY:
            payload["body"] = reply
        planned.append((f"run:{run.pk}:{position}:{proposed.kind}", proposed.kind, payload))
    # Actions mapped to an MCP tool (a refund to the shop's create_refund) go first, one by one: while one
    # of them has not succeeded, the rest wait, so the customer is never told of a refund the shop refused.
    tool_kinds = frozenset() if record_only else mapped_kinds if mapped_kinds is not None else action_kinds_mapped()
    through_tools = [p for p in planned if p[1] in tool_kinds]
    done: list[Action] = []
    if before_send is not None and planned and (through_tools or writer is not _record_only):
        before_send()
    for key, kind, payload in through_tools:
        action, _ = Action.objects.get_or_create(
            idempotency_key=key, defaults={"run": run, "kind": kind, "payload": payload}
        )
        done.append(action_carry_out(action_id=action.pk, writer=action_tool_write))
        if done[-1].status != Action.Status.DONE:
            return done
    planned = [p for p in planned if p[1] not in tool_kinds]
    if writer is _record_only:
        if deferred is not None:
            held = _actions_done(run=run, planned=planned)
            if held:
                deferred.append(_actions_record_only_statement(held))
            return done + held
        return done + _actions_record_only(run=run, planned=planned)
    for key, kind, payload in planned:
        action, _ = Action.objects.get_or_create(
            idempotency_key=key, defaults={"run": run, "kind": kind, "payload": payload}
        )
        done.append(action_carry_out(action_id=action.pk, writer=writer))
    return done


def _actions_done(*, run: PipelineRun, planned: list[tuple[str, str, dict[str, Any]]]) -> list[Action]:
    """The record-only actions of `planned`, done now (unsaved)."""
    now = timezone.now()
    done = []
    for key, kind, payload in planned:
        action = unsaved(
            Action, run=run, kind=kind, payload=payload, idempotency_key=key, status=Action.Status.DONE, attempts=1
        )
        action.result, action.executed_at = record_only(action=action, ticket=run.ticket), now
        done.append(action)
    return done


def _actions_record_only_statement(actions: list[Action]) -> tuple[str, Sequence[Any]]:
    """One statement that records `actions` done, each exactly once, whether or not an earlier attempt wrote it.

    What `_actions_record_only` does in up to three round trips, as one upsert for the runner to send with the
    run's close: a key not there yet is inserted done; one there and not done (an earlier attempt's) is
    finished as `_actions_record_only` finishes it (one attempt more, the new result, no error, no claim); one
    already done is left as it is. Free work (nothing leaves the product), so it may wait for the close: a
    crash before it only means the run's execute step records them again when the run is resumed.
    """
    return insert_statement(Action, actions, suffix=_record_only_upsert())


@functools.cache
def _record_only_upsert() -> str:
    meta: Any = Action._meta
    table = meta.db_table

    def column(name: str) -> str:
        return f'"{meta.get_field(name).column}"'

    return (
        f"ON CONFLICT ({column('idempotency_key')}) DO UPDATE SET {column('status')} = EXCLUDED.{column('status')}, "
        f'{column("attempts")} = "{table}".{column("attempts")} + 1, {column("result")} = EXCLUDED.{column("result")}, '
        f"{column('executed_at')} = EXCLUDED.{column('executed_at')}, {column('error')} = '', "
        f'{column("claimed_at")} = NULL WHERE "{table}".{column("status")} <> EXCLUDED.{column("status")}'
    )


def _actions_record_only(*, run: PipelineRun, planned: list[tuple[str, str, dict[str, Any]]]) -> list[Action]:
    """Record-only actions (nothing leaves the product), each exactly once, in as few round trips as can be.

    The claim / call / record split of `action_carry_out` exists so that no transaction is open during a
    helpdesk call; a record-only writer calls nothing outside, so a run's actions are written at once, done:
    one INSERT that skips the keys already there (`_actions_insert_done`, the common case: the run's first
    execute attempt), then, only when some were there (an earlier attempt), those rows locked and finished,
    never duplicated (unique idempotency key). Neither waits for the disk flush (`transaction_unflushed`):
    nothing left the product, so a database crash that loses these rows only means the run's execute step
    records them again when the run is resumed.
    """
    fresh = {action.idempotency_key: action for action in _actions_done(run=run, planned=planned)}
    inserted = _actions_insert_done(list(fresh.values()))
    left = [p for p in planned if p[0] not in inserted]
    if not left:
        return list(fresh.values())
    now = timezone.now()
    with transaction_unflushed():
        existing = {
            a.idempotency_key: a
            for a in Action.objects.select_for_update().filter(idempotency_key__in=[key for key, _, _ in left])
        }
        for key, _, _ in left:
            action = existing[key]
            if action.status != Action.Status.DONE:
                action.status = Action.Status.DONE
                action.attempts += 1
                action.result = record_only(action=action, ticket=run.ticket)
                action.executed_at = now
                action.error = ""
                action.claimed_at = None
                action.save(update_fields=["status", "attempts", "result", "executed_at", "error", "claimed_at"])
            fresh[key] = action
    return list(fresh.values())


def _actions_insert_done(actions: list[Action]) -> set[str]:
    """Insert `actions` (done) in one round trip, unflushed, skipping keys already there; the keys inserted.

    Django's `bulk_create(ignore_conflicts=True)` cannot say which rows went in, so the ORM's own insert
    query is compiled with `ON CONFLICT DO NOTHING RETURNING` and sent behind `SET LOCAL synchronous_commit
    = off` in the same message (one implicit transaction in autocommit; see `statements_unflushed`).
    """
    if not actions:
        return set()
    meta = Action._meta
    query = InsertQuery(Action, on_conflict=OnConflict.IGNORE)
    rows: list[Model] = list(actions)
    query.insert_values([f for f in meta.local_concrete_fields if f is not meta.auto_field], rows)
    compiler = query.get_compiler(connection=connection)
    compiler.returning_fields = [meta.pk, meta.get_field("idempotency_key")]
    ((sql, params),) = compiler.as_sql()
    by_key = {a.idempotency_key: a for a in actions}
    for pk, key in returning_unflushed(sql, params):
        by_key[key].pk = pk
        by_key[key]._state.adding = False
    return {a.idempotency_key for a in actions if a.pk is not None}


class OutcomeUnknown(Exception):
    """An action whose earlier attempt may have taken effect, and whose writer cannot tell: a person checks."""


OUTCOME_UNKNOWN = (
    "Outcome unknown: a worker stopped after calling out for this action and before recording the answer, and "
    "this integration cannot read back whether it took effect. Check the ticket in the helpdesk (or the system "
    "the action goes to), then mark it carried out, or carry it out again."
)


def action_carry_out(*, action_id: int, writer: Callable[..., dict]) -> Action:
    """Claim the action, call `writer` with no transaction open, record the outcome: exactly once.

    Three steps instead of one locked transaction: a helpdesk that does not answer must not hold a row
    lock (and with it the run's staff pages and the retry command) for as long as it takes. Whoever carries
    out an action holds its run's advisory lock (`run_lock`; `run_pipeline` already does), so one worker at
    a time does, and an action found claimed but never recorded was left by a worker that is gone: the
    session that held the lock ended with it. Such an action is not called blindly again but reconciled: the
    writer's `reconcile` reads back whether it took effect (a reply on the ticket) or says that repeating it
    is harmless (a tag, a priority, a status); a writer that can do neither leaves it UNKNOWN for a person.
    An action that is done, unknown, or whose run another worker holds is returned as it is.
    """
    with run_lock(Action.objects.values_list("run_id", flat=True).get(pk=action_id)) as held:
        if not held:
            return Action.objects.get(pk=action_id)
        claim = _action_claim(action_id=action_id)
        if claim is None:
            return Action.objects.get(pk=action_id)
        action, unrecorded = claim
        if unrecorded:
            reconcile = getattr(writer, "reconcile", None)
            if reconcile is None:
                logger.warning("action %s: earlier attempt unrecorded and not readable; left to a person", action.pk)
                return _action_record(action=action, error=OUTCOME_UNKNOWN, unknown=True)
            try:
                found = reconcile(action=action, ticket=action.run.ticket)
            except Exception as exc:  # noqa: BLE001 - could not check: still unsettled, checked again next time
                logger.warning("action %s: could not read back its earlier attempt: %s", action.idempotency_key, exc)
                return _action_record(action=action, error=f"{type(exc).__name__}: {exc}"[:5000], unsettled=True)
            if found is not None:
                return _action_record(action=action, result=found)
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
            except Exception as exc:
                span_error(span, exc)
                if connection_lost(exc):
                    raise  # nothing can be recorded; the claim stays, and is reconciled on resume
                logger.warning("action %s failed: %s", action.idempotency_key, exc)
                writeback_count(writer=destination, failed=True)
                return _action_record(action=action, error=f"{type(exc).__name__}: {exc}"[:5000])
        writeback_count(writer=destination, failed=False)
        return _action_record(action=action, result=result)


def _destination(writer: Callable[..., dict], ticket: Ticket) -> str:
    """Where a write-back goes, for its span and metrics: the helpdesk vendor, else the writer's name."""
    if writer is helpdesk:
        return ticket.source.partition(":")[0]
    return getattr(writer, "__name__", type(writer).__name__)


def _action_claim(*, action_id: int) -> tuple[Action, bool] | None:
    """Mark the action in flight in a short transaction of its own, by the run's lock holder.

    Returns the claimed action and whether an earlier attempt was claimed and never recorded (it was in
    flight when claimed again); None when there is nothing to carry out (done, or waiting for a person).
    """
    with transaction.atomic():
        action = Action.objects.select_for_update(of=("self",)).select_related("run__ticket").get(pk=action_id)
        if action.status in (Action.Status.DONE, Action.Status.UNKNOWN):
            return None
        unrecorded = action.status == Action.Status.IN_FLIGHT
        action.status = Action.Status.IN_FLIGHT
        action.attempts += 1
        action.claimed_at = timezone.now()
        action.save(update_fields=["status", "attempts", "claimed_at"])
    return action, unrecorded


def _action_record(
    *, action: Action, result: dict | None = None, error: str = "", unknown: bool = False, unsettled: bool = False
) -> Action:
    """Record the outcome of a claimed attempt in a second short transaction.

    A success is always recorded: the helpdesk has it. A failure (FAILED: retried later), an unsettled
    attempt (stays IN_FLIGHT with no claim: reconciled again later) and an unknown outcome (UNKNOWN: a person
    checks) are recorded while the claim is this attempt's.
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
            current.status = (
                Action.Status.UNKNOWN if unknown else Action.Status.IN_FLIGHT if unsettled else Action.Status.FAILED
            )
            current.error = error
        else:
            logger.warning(
                "action %s: attempt %s ended after another worker claimed it; left to that worker",
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
    """Try again, oldest first, the actions that FAILED and those left IN_FLIGHT (claimed, never recorded);
    DONE and UNKNOWN (a person checks those) ones are never touched.

    Actions of a helpdesk whose circuit is open are left for a later run without spending an attempt.
    Each action is claimed, called and recorded like a run's own (`action_carry_out`), holding its run's
    lock: an action whose run a worker holds right now is left to it, and one left in flight by a worker
    that is gone is reconciled, not sent again blindly.
    """
    counts = {"done": 0, "failed": 0, "waiting": 0, "unknown": 0, "busy": 0}
    candidates = (
        Action.objects.filter(attempts__lt=max_attempts)
        .filter(status__in=[Action.Status.FAILED, Action.Status.IN_FLIGHT])
        .order_by("pk")
        .values_list("pk", "run__ticket__source", "kind")[:limit]
    )
    tool_kinds = action_kinds_mapped()
    for pk, source, kind in list(candidates):
        writer = action_tool_write if kind in tool_kinds else writer_for(source)
        # Asked for every action: a probe earlier in this pass may have opened the circuit again.
        if writer is helpdesk and open_until(source) is not None:
            counts["waiting"] += 1
            continue
        action = action_carry_out(action_id=pk, writer=writer)
        if action.status == Action.Status.DONE:
            counts["done"] += 1
            if kind in tool_kinds:
                run_execute_reopen(run_id=action.run_id)
        elif action.status == Action.Status.FAILED:
            logger.warning("write-back retry of action %s failed: %s", pk, action.error)
            counts["failed"] += 1
        elif action.status == Action.Status.UNKNOWN:
            counts["unknown"] += 1
        else:
            counts["busy"] += 1  # its run is held by a worker, or it could not be read back yet
    return counts


def run_execute_reopen(*, run_id: int) -> bool:
    """Hand a run whose execute step gave up back to the queue, once the tool action that stopped it is done.

    A run's tool actions go first and the rest wait behind them (`run_actions_execute`), so a refund that
    kept failing left the reply unsent. Its escalated execute checkpoint is closed as failed and the run is
    queued again (the sweeper hands it to a worker): execute runs once more, the done refund is not called
    again, and the actions behind it are carried out. True when the run was reopened.
    """
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().filter(pk=run_id, status=PipelineRun.Status.FAILED).first()
        if run is None or Action.objects.filter(run=run).exclude(status=Action.Status.DONE).exists():
            return False
        reopened = StepRun.objects.filter(run=run, step="execute", status=StepRun.Status.ESCALATED).update(
            status=StepRun.Status.FAILED,
            error="reopened: the action that stopped this step was carried out later (retry_writebacks)",
        )
        if not reopened:
            return False
        PipelineRun.objects.filter(pk=run.pk).update(
            status=PipelineRun.Status.QUEUED, error="", queued_at=timezone.now(), finished_at=None, takes=0
        )
        Ticket.objects.filter(pk=run.ticket_id).update(status=Ticket.Status.TRIAGING, updated_at=timezone.now())
    logger.info("run %s reopened: its failed tool action was carried out; execute runs again", run_id)
    return True
