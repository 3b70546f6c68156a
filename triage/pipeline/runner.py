"""The durable runner: works a run's steps in order, each attempt a checkpoint, each failure a policy.

Before a step runs, the runner looks for its finished checkpoint (`StepRun`); if there is one, the
step restores its output from it and nothing is recomputed (or paid for) again. What a run costs the
database (see `_run_step` for why durability holds):

- one round trip to take it (`_take`): the advisory lock, the claim, the run and its ticket read back, and
  whether the process's copy of the configuration still holds (`chain_settings_current`);
- a paid attempt's checkpoint, flushed open and close around the call, and anything sent out, recorded as
  it happens; the checkpoints of free attempts (local models, the gates, routing, record-only actions) are
  held in memory and written together with whichever of those comes next;
- one round trip to close it: every held checkpoint, the record-only actions, the run's and ticket's close,
  the commit, and the lock's release after it.

A fresh run that pays for nothing thus costs three round trips (take, the knowledge-base search, close),
none waiting for the disk flush (see `triage.durability.transaction_unflushed`).

The five layers each have a file: hand-off contracts (`triage/contracts.py`), gates (`gates.py`), retry
and fallback (`retry.py`), observability (`checkpoints.py`) and routing (`router.py`); the steps, one
object a file, are in `steps/`. The runner only strings them together.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.db.models.query import get_related_populators
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone
from opentelemetry.trace import Span, SpanKind

from integrations.tracing import carrier_current, link_to, parent_context, span_error, span_inner, span_set, tracer
from triage import instruments
from triage.contracts import Verdict
from triage.durability import (
    RunLock,
    connection_discard,
    connection_lost,
    rows_unflushed,
    run_lock_handle,
    statements_unflushed,
    update_statement,
)
from triage.models import PipelineRun, StepPolicy, StepRun, Ticket
from triage.pipeline import retry
from triage.pipeline.checkpoints import checkpoint_charge, checkpoint_close, checkpoint_open, checkpoints_write
from triage.pipeline.gates import STEP_FAILED
from triage.pipeline.router import AnswerInvalid, ModelCallFailed, Router
from triage.pipeline.steps import CHAIN, Escalate, RunState, Step, StepSkipped
from triage.selectors import ChainSettings, chain_settings_current, chain_settings_fingerprint, step_policies

logger = logging.getLogger(__name__)

STEPS: dict[str, Step] = {step.name: step for step in CHAIN}

# Steps whose succeeded attempt called something outside the product (a look-up tool): its checkpoint is
# written as soon as it finishes (unflushed), not held for the run's close. It paid nothing and changed
# nothing there, but asking again after a crash is a call someone else serves, so it is not redone lightly.
CALLS_OUT = frozenset({"lookup"})


def _attempt_charge(step_run: StepRun, exc: BaseException) -> None:
    """Record what a failed or escalated attempt asked and paid for (the router's errors carry it)."""
    source = exc.__cause__ if isinstance(exc, Escalate) and exc.__cause__ is not None else exc
    if isinstance(source, (ModelCallFailed, AnswerInvalid)):
        attempt = source.attempt
        checkpoint_charge(step_run, model=attempt.model, why=attempt.why, charged=attempt.charged)


def _restore(state: RunState, step_run: StepRun) -> None:
    """Put a finished step's output back into the state, exactly as the step had left it."""
    state.verdicts.extend(Verdict.model_validate(v) for v in step_run.verdicts)
    if step_run.status == StepRun.Status.SUCCEEDED:
        STEPS[step_run.step].restore(state, step_run.output or {})


def _run_step(state: RunState, step: Step, policies: Callable[[], StepPolicy], *, earlier: list[StepRun]) -> None:
    """Work one step to a finished checkpoint: succeeded, skipped or escalated (retries and fallback between).

    Durability, attempt by attempt. The promise is that a step that finished, and anything it paid for,
    is never redone after a crash:

    - An attempt that may pay a provider (`Router.may_pay`: a hosted or any non-local model) is opened
      with a flushed "running" row before the call and closed with a flushed update that records the
      output and the charge. A crash in between leaves the row; the next run closes it as failed, so it
      counts against `max_attempts` and the trace shows an attempt that may have been paid for. Once
      closed, the step is restored from the row, never asked again.
    - An attempt that pays for nothing (retrieval, the local classifier and drafter, the gates, routing,
      execute, whose actions carry their own idempotency keys and rows) is written once, finished, in one
      transaction that does not wait for the disk flush. A crash before that row is durable leaves no trace
      of the attempt, and the step is simply done again: it cost nothing, gives the same answer from the
      same input, and what it writes elsewhere (the approval request, the actions) is idempotent, exactly
      as when a worker died before closing a "running" row. WAL order keeps this safe: a later flushed
      commit (a paid step's checkpoint, an action sent out) makes every earlier free checkpoint durable
      too, so a run can never come back with a later step finished and an earlier one missing. A worker
      crash loses none of them: an unflushed commit is visible to every session as soon as it returns.

    - A free attempt that finished (succeeded, skipped, escalated) and called nothing outside (`CALLS_OUT`)
      is not even written on its own: it is held in `state.folded` and goes out with the run's next write,
      in order, before it. That next write is the run's close for a run that pays for nothing (one round
      trip for all its checkpoints), else whichever comes first of: a paid attempt's flushed open, a failed
      attempt's row, the approval request of a run handed to a person, an action about to be sent out
      (`state.flush`). So nothing paid, sent or shown to a person is ever durable without the checkpoints
      it was decided from, and a resumed run never finds a later step finished and an earlier one missing.
      A worker that dies before that write loses the held checkpoints, and the resumed run does those steps
      again: local work that paid nothing (the embedder's search, the local classifier and drafter, the
      gates, routing, record-only actions), and whose writes elsewhere are idempotent.

    `earlier` holds this step's rows from before this call (a resumed run); a fresh run has none, so the
    attempt numbering starts without a query. `policies` gives the step's retry policy, read only when an
    attempt fails (most runs never need it).
    """
    policy: StepPolicy | None = None
    attempt = max((s.attempt for s in earlier), default=0)
    failures = sum(1 for s in earlier if s.status == StepRun.Status.FAILED)
    last_error: BaseException | None = None
    while True:
        attempt += 1
        with span_inner(
            f"step {step.name}",
            attributes={"triage.step": step.name, "triage.step.attempt": attempt, "triage.run.id": state.run.pk},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            started = time.perf_counter()
            pays = state.router.may_pay(step.name)
            step_run = checkpoint_open(state, step.name, attempt, durable=pays)
            verdicts_before = len(state.verdicts)
            try:
                result = step.run(state)
            except StepSkipped as skip:
                checkpoint_close(
                    state, step_run, StepRun.Status.SKIPPED, started, output={"skipped": str(skip)}, fold=not pays
                )
                _attempt_observed(span, step_run, state)
                return
            except Escalate as esc:
                _attempt_charge(step_run, esc)
                checkpoint_close(
                    state,
                    step_run,
                    StepRun.Status.ESCALATED,
                    started,
                    error=esc.reason,
                    verdicts=esc.verdicts,
                    output={"escalated": esc.reason},
                    fold=not pays,
                )
                state.verdicts.extend(esc.verdicts)
                _attempt_observed(span, step_run, state, verdicts=esc.verdicts)
                return
            except Exception as exc:
                if connection_lost(exc):
                    # Not the step's failure, and nothing can be recorded: the run is left to its lease.
                    span_error(span, exc)
                    raise
                del state.verdicts[verdicts_before:]
                last_error = exc
                _attempt_charge(step_run, exc)
                checkpoint_close(state, step_run, StepRun.Status.FAILED, started, error=f"{type(exc).__name__}: {exc}")
                _attempt_observed(span, step_run, state)
                span_error(span, exc)
                failures += 1
                logger.warning("run %s step %s attempt %s failed: %s", state.run.pk, step.name, attempt, exc)
                policy = policy or policies()
                retrying = retry.retryable(exc) and failures < policy.max_attempts
                span_set(span, triage__step__retried=retrying)
                if not retrying:
                    fallback = policy.fallback_provider and state.router.use_fallback(
                        step.name, policy.fallback_provider
                    )
                    span_set(span, triage__step__fallback=policy.fallback_provider if fallback else None)
                    if not fallback:
                        break
                    policy = retry.fallback_policy(policy, failures)
                    continue
            else:
                # A free attempt's checkpoint is held for the run's next write (see above).
                fold = not pays and not result.cost and step.name not in CALLS_OUT
                checkpoint_close(state, step_run, StepRun.Status.SUCCEEDED, started, result=result, fold=fold)
                state.verdicts.extend(result.verdicts)
                _attempt_observed(span, step_run, state, verdicts=result.verdicts)
                return
        # Outside the attempt's span: the wait before the next attempt belongs to no attempt.
        if last_error is not None and policy is not None:  # always: only a retried failed attempt gets here
            retry.backoff(policy, failures, last_error)
    reason = f"Step '{step.name}' failed after {failures} attempt(s): {type(last_error).__name__}: {last_error}"
    verdict = Verdict(gate=STEP_FAILED, step=step.name, passed=False, reason=reason)
    # Durable for a step that may pay: were it lost, a resumed run would ask the provider once more.
    closing = checkpoint_open(state, step.name, attempt + 1, durable=state.router.may_pay(step.name))
    checkpoint_close(
        state,
        closing,
        StepRun.Status.ESCALATED,
        time.perf_counter(),
        error=reason,
        verdicts=[verdict],
        output={"escalated": reason},
    )
    state.verdicts.append(verdict)
    instruments.gate_failures_count(verdicts=[verdict], step=step.name)


def _attempt_observed(span: Span, step_run: StepRun, state: RunState, *, verdicts: list[Verdict] | None = None) -> None:
    """A closed attempt, as metrics and as its span's attributes: ids, names and figures, never ticket text."""
    verdicts = verdicts or []
    state.spent += step_run.cost or 0
    instruments.step_attempt_observe(
        step=step_run.step,
        status=step_run.status,
        seconds=(step_run.latency_ms or 0) / 1000,
        model=step_run.model,
        cost=step_run.cost,
        tokens_in=step_run.tokens_in,
        tokens_out=step_run.tokens_out,
        verdicts=verdicts,
    )
    if not span.is_recording():
        return
    span_set(
        span,
        triage__step__status=step_run.status,
        triage__step__checkpoint_id=step_run.pk,
        triage__model=step_run.model,
        triage__cost=step_run.cost,
        triage__tokens__input=step_run.tokens_in or None,
        triage__tokens__output=step_run.tokens_out or None,
        triage__route=state.route if step_run.step == "route" else None,
        triage__gates__passed=[v.gate for v in verdicts if v.passed] or None,
        triage__gates__failed=[v.gate for v in verdicts if not v.passed] or None,
    )
    for verdict in verdicts:
        span.add_event("gate verdict", {"triage.gate": verdict.gate, "triage.gate.passed": verdict.passed})


def run_pipeline(*, run_id: int, router: Router | None = None) -> PipelineRun:
    """Run (or resume) a pipeline run to its end: auto-handled, waiting for a person, or failed.

    Safe to call twice, concurrently or after a crash: finished steps are restored, not redone.
    """
    with run_lock_handle(run_id) as lock:
        taken = _take(lock, run_id)
        run = taken.run
        if not taken.claimed:
            if lock.held and run.status in _CLAIMABLE and run.takes >= settings.TRIAGE_RUN_MAX_TAKES:
                with _run_span(run):
                    _close_run(
                        run, PipelineRun.Status.FAILED, Ticket.Status.FAILED, route=run.route, error=_poisoned(run)
                    )
            return run
        stored = dict(run.trace_context or {})
        with _run_span(run) as span:
            carrier = run.trace_context if run.trace_context != stored else None
            return _work(run, router=router, span=span, take=taken, lock=lock, carrier=carrier)


_CLAIMABLE = (PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING)


@dataclass
class _Take:
    """What the first round trip of `run_pipeline` found: the run (and its ticket), whether this worker
    claimed it, whether it was never taken before, and the configuration runs read (`ChainSettings`)."""

    run: PipelineRun
    claimed: bool
    fresh: bool
    chain: ChainSettings


def _take(lock: RunLock, run_id: int) -> _Take:
    """Lock, claim and read the run, and check the process's copy of the configuration, in one round trip.

    Four statements in one message and one unflushed transaction (`rows_unflushed`): the advisory lock is
    tried (`RunLock.take`); the claim is made only if it was got and the run may be worked (queued or running,
    under `TRIAGE_RUN_MAX_TAKES`), and with it the ticket goes to "triaging" and attempts a dead worker left
    "running" are closed as failed; the run and its ticket are read as the claim left them; and the
    configuration's fingerprint is read (`chain_settings_current`). Each statement sees what the ones
    before it wrote, and the claim, taken after the lock in its own statement, sees everything the lock's
    previous holder committed. Lost in a database crash, the claim is simply not there: the run is still
    queued, and the sweeper hands it out again; nothing was paid or sent yet in this take.
    """
    now = timezone.now()
    claim = _claim_statement(
        run_id=run_id, now=now, lease=now + timedelta(seconds=settings.TRIAGE_RUN_LEASE), held=RunLock.HELD
    )
    read_sql = _run_read()[0]
    locked, claimed, rows, fingerprint = rows_unflushed(
        [lock.take(), claim, (read_sql, [run_id]), chain_settings_fingerprint()]
    )
    lock.taken(locked)
    if not rows:
        raise PipelineRun.DoesNotExist(f"PipelineRun {run_id} does not exist")
    run = _run_from(rows)
    return _Take(
        run=run,
        claimed=bool(claimed),
        fresh=bool(claimed) and bool(claimed[0][0]),
        chain=chain_settings_current(fingerprint=fingerprint[0][0]),
    )


def _claim_statement(*, run_id: int, now: datetime, lease: datetime, held: str) -> tuple[str, list[Any]]:
    """The claim, by hand from the models' table and column names (see `_take`); one row when it was made,
    saying whether the run was never taken before (no start stamped, no take counted).

    The lease tells the sweeper this run has a live worker; `takes` counts workers that took it.
    """
    params: list[Any] = [
        PipelineRun.Status.RUNNING,
        now,
        lease,
        run_id,
        *_CLAIMABLE,
        settings.TRIAGE_RUN_MAX_TAKES,
        Ticket.Status.TRIAGING,
        Ticket.Status.NEW,
        StepRun.Status.FAILED,
        "interrupted: the worker stopped during this attempt",
        now,
        StepRun.Status.RUNNING,
    ]
    return _claim_sql(held), [str(p) if isinstance(p, str) else p for p in params]


@functools.cache
def _claim_sql(held: str) -> str:
    """The claim's text (`_claim_statement`), built once from the models' table and column names."""
    runs, tickets, steps = PipelineRun._meta, Ticket._meta, StepRun._meta

    def column(meta: Any, name: str) -> str:
        return f'"{meta.get_field(name).column}"'

    r_id, r_status, r_started, r_takes = (column(runs, n) for n in ("id", "status", "started_at", "takes"))
    sql = (
        f'WITH claimed AS (UPDATE "{runs.db_table}" AS r SET {r_status} = %s, {r_started} = COALESCE(r.{r_started}, '
        f"%s), {r_takes} = r.{r_takes} + 1, {column(runs, 'lease_expires_at')} = %s "
        f'FROM (SELECT {r_id}, {r_started} FROM "{runs.db_table}" WHERE {r_id} = %s) AS before '
        f"WHERE r.{r_id} = before.{r_id} AND {held} AND r.{r_status} IN (%s, %s) AND r.{r_takes} < %s "
        f"RETURNING r.{r_id}, r.{column(runs, 'ticket')}, before.{r_started} IS NULL AND r.{r_takes} = 1 AS fresh), "
        f'triaging AS (UPDATE "{tickets.db_table}" SET {column(tickets, "status")} = %s WHERE {column(tickets, "id")} '
        f"IN (SELECT {column(runs, 'ticket')} FROM claimed) AND {column(tickets, 'status')} = %s), "
        # Attempts left "running" by a worker that died are closed as failed before resuming.
        f'interrupted AS (UPDATE "{steps.db_table}" SET {column(steps, "status")} = %s, {column(steps, "error")} = %s, '
        f"{column(steps, 'finished_at')} = %s WHERE {column(steps, 'run')} IN (SELECT {r_id} FROM claimed) "
        f"AND {column(steps, 'status')} = %s) "
        f"SELECT fresh FROM claimed"
    )
    return sql


@functools.cache
def _run_read() -> tuple[str, QuerySet[PipelineRun], SQLCompiler, dict[int, Any]]:
    """The run-and-ticket read (`select_related`), compiled once: its text, and the queryset, compiler and field
    converters (the JSON fields') that turn its rows into instances exactly as the queryset would. The
    converters are what `results_iter` would ask the compiler for on every read (~50 µs, half of building
    the two instances); they are the fields' own `from_db_value`, the same for every connection."""
    queryset = PipelineRun.objects.select_related("ticket").filter(pk=0)
    compiler = queryset.query.get_compiler(using=queryset.db)
    sql, params = compiler.as_sql()
    assert list(params) == [0], params  # the run's id is the one parameter
    converters = compiler.get_converters([s[0] for s in compiler.select[: compiler.col_count]])
    return sql, queryset, compiler, converters


def _run_from(rows: list[tuple[Any, ...]]) -> PipelineRun:
    """The run (with its ticket) from a row of `_run_read`, built as Django's `ModelIterable` builds it."""
    _, queryset, compiler, converters = _run_read()
    select, klass_info = compiler.select, compiler.klass_info
    assert klass_info is not None
    fields = klass_info["select_fields"]
    start, end = fields[0], fields[-1] + 1
    names = [f[0].target.attname for f in select[start:end]]
    db, fetch_mode = queryset.db, cast(Any, queryset)._fetch_mode
    row = next(compiler.apply_converters([list(rows[0])], converters))
    run = PipelineRun.from_db(db, names, row[start:end], fetch_mode=fetch_mode)
    for populator in get_related_populators(klass_info, select, db, fetch_mode):
        populator.populate(row, run)
    return run


@contextmanager
def _run_span(run: PipelineRun) -> Iterator[Span]:
    """The span of one take of a run: one trace per run, linked to the request that created the run.

    The first take starts the run's trace (a root span: the run is worked later, by a worker, not inside the
    request) with a link to the request's span, whose W3C context the run stored at intake. Later takes (a
    crashed worker's run resumed, a person's decision carried out) are children of the first take's span, so
    the whole life of a run is one trace.
    """
    stored = run.trace_context or {}
    first_take = stored.get("run")
    with tracer().start_as_current_span(
        "run",
        context=parent_context(first_take),
        kind=SpanKind.CONSUMER,
        links=[] if first_take else link_to(stored.get("request"), triage__link="created by"),
        attributes={
            "triage.run.id": run.pk,
            "triage.ticket.id": run.ticket_id,
            "triage.ticket.source": run.ticket.source,
            "triage.run.take": run.takes + 1,
            "triage.run.resumed": bool(first_take),
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        if not first_take:
            carrier = carrier_current()
            if carrier:
                run.trace_context = {**stored, "run": carrier}
        try:
            yield span
        except BaseException as exc:
            span_error(span, exc)
            raise


def _work(
    run: PipelineRun,
    *,
    router: Router | None,
    span: Span,
    take: _Take,
    lock: RunLock,
    carrier: dict[str, Any] | None,
) -> PipelineRun:
    """One take of a run, claimed by `_take`, inside its span and under its lock (see `run_pipeline`)."""
    # Never taken before this claim (no start, no take counted): no attempt of it can exist yet, so none is
    # looked for. The claim stamped both, in the commit before any attempt's row, so a run with rows is never
    # fresh.
    fresh = take.fresh
    state = RunState(
        run=run,
        ticket=run.ticket,
        policy=take.chain.policy,
        categories=take.chain.categories,
        router=router or Router.for_run(run),
        action_kinds=take.chain.action_kinds,
    )

    def flush() -> None:
        checkpoints_write(state)

    state.flush = flush
    if carrier is not None:
        # The first take's trace, for later takes to join (`_run_span`): written with the run's next write.
        state.deferred.append(update_statement(PipelineRun.objects.filter(pk=run.pk), trace_context=carrier))
    # Every earlier attempt in one query, and none for a fresh run: what to restore, and how to number retries.
    earlier = [] if fresh else list(StepRun.objects.filter(run=run).order_by("id"))
    finished = {s.step: s for s in earlier if s.status in StepRun.FINISHED}
    policies = functools.cache(step_policies)  # read on a step's first failure, once per run
    renewed = time.monotonic()
    try:
        for name, step in STEPS.items():
            if name in finished:
                _restore(state, finished[name])
                continue
            if name == "execute" and state.route == PipelineRun.Route.HUMAN and run.resolution is None:
                break  # waits for a person; their decision re-queues the run to carry out this step
            # Renewed once a third of the lease has gone, not before every step: most runs finish well
            # inside one lease, and each renewal is a write the disk must flush.
            if time.monotonic() - renewed > settings.TRIAGE_RUN_LEASE / 3:
                _heartbeat(run.pk)
                renewed = time.monotonic()
            policy = functools.partial(_policy, policies, name)
            _run_step(state, step, policy, earlier=[s for s in earlier if s.step == name])
    except Exception as exc:
        if connection_lost(exc):
            # The database went away (restart, network, terminated backend): no verdict on the run. It
            # stays RUNNING; its lease expires and the sweeper hands it back once the database is back.
            logger.warning("run %s: database connection lost (%s); left for the sweeper", run.pk, exc)
            connection_discard()
            raise
        logger.exception("run %s failed outside any step", run.pk)
        _close_run(
            run,
            PipelineRun.Status.FAILED,
            Ticket.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            state=state,
            lock=lock,
        )
        raise
    unexecuted = [v for v in state.verdicts if v.gate == STEP_FAILED and v.step == "execute"]
    if unexecuted:
        _close_run(
            run,
            PipelineRun.Status.FAILED,
            Ticket.Status.FAILED,
            route=state.route,
            error=unexecuted[0].reason,
            state=state,
            lock=lock,
        )
    elif state.route == PipelineRun.Route.AUTO:
        _close_run(
            run, PipelineRun.Status.COMPLETED, Ticket.Status.AUTO_HANDLED, route=state.route, state=state, lock=lock
        )
    elif run.resolution is None:
        _close_run(
            run,
            PipelineRun.Status.WAITING,
            Ticket.Status.AWAITING_APPROVAL,
            route=PipelineRun.Route.HUMAN,
            state=state,
            lock=lock,
        )
    else:
        rejected = run.resolution.get("verdict") == "reject"
        _close_run(
            run,
            PipelineRun.Status.COMPLETED,
            Ticket.Status.REJECTED if rejected else Ticket.Status.RESOLVED,
            route=PipelineRun.Route.HUMAN,
            state=state,
            lock=lock,
        )
    span_set(
        span,
        triage__run__status=run.status,
        triage__route=run.route,
        triage__cost=state.spent,
        triage__gates__failed=sorted({v.gate for v in state.verdicts if not v.passed}) or None,
        triage__run__error=run.error[:300] if run.status == PipelineRun.Status.FAILED else None,
    )
    return run


def _ticket_follows(run: PipelineRun, *, run_status: str, status: str, now: datetime) -> tuple[str, list[Any]]:
    """The ticket's update for a run's close, made only when the close's update (before it, in the same
    transaction) stamped the run with `now`: a run decided before it closed as waiting leaves its ticket alone.

    Written by hand, from the models' own table and column names: the ORM compiles this join into an
    `id IN (subquery)` update at about 1.4 ms a time, as much as the rest of the close together.
    """
    ticket, runs = Ticket._meta, PipelineRun._meta

    def column(meta: Any, name: str) -> str:
        return f'"{meta.get_field(name).column}"'

    sql = (
        f'UPDATE "{ticket.db_table}" SET {column(ticket, "status")} = %s, {column(ticket, "updated_at")} = %s '
        f'WHERE {column(ticket, "id")} = %s AND EXISTS (SELECT 1 FROM "{runs.db_table}" WHERE {column(runs, "id")} '
        f"= %s AND {column(runs, 'status')} = %s AND {column(runs, 'finished_at')} = %s)"
    )
    return sql, [status, now, run.ticket_id, run.pk, run_status, now]


def _run_close(run_id: int, values: dict[str, Any], *, waiting: bool) -> tuple[str, list[Any]]:
    """The run's close: `values` set, by hand from the model's table and column names (the ORM compiles an
    update in about 0.3 ms, a tenth of what a whole run's Python costs now).

    A run that reached a person starts counting afresh when their decision re-queues it (`takes` = 0). The
    approval request is committed (route step) before the run closes as waiting: a person quick enough decides
    in between, and their decision re-queued the run. Closing it as waiting then would leave a decided run that
    nothing works, so that close applies only to an undecided run; left queued, the sweeper hands it over.
    """
    meta: Any = PipelineRun._meta

    def column(name: str) -> str:
        return f'"{meta.get_field(name).column}"'

    assignments = [f"{column(name)} = %s" for name in values]
    if waiting:
        assignments.append(f"{column('takes')} = 0")
    sql = f'UPDATE "{meta.db_table}" SET {", ".join(assignments)} WHERE {column("id")} = %s'
    if waiting:
        sql += f" AND {column('resolution')} IS NULL"
    return sql, [*values.values(), run_id]


def _policy(policies: Callable[[], dict[str, StepPolicy]], name: str) -> StepPolicy:
    return policies()[name]


def _heartbeat(run_id: int) -> None:
    """Renew the lease between steps, so only a run whose worker died looks abandoned to the sweeper.

    A step longer than the lease is re-enqueued by the sweeper while it still runs; the advisory lock
    turns that second job away, so a lease too short costs a no-op job, never a second execution.
    """
    PipelineRun.objects.filter(pk=run_id).update(
        lease_expires_at=timezone.now() + timedelta(seconds=settings.TRIAGE_RUN_LEASE)
    )


def _poisoned(run: PipelineRun) -> str:
    last = StepRun.objects.filter(run=run).order_by("-pk").values_list("step", flat=True).first()
    where = f"while working the '{last}' step" if last else "before its first step"
    return (
        f"Stopped after {run.takes} attempts: each worker that took this run stopped {where} before the run "
        "finished (a worker crash, a kill or a restart each time). The ticket may be what crashes the worker, "
        "so it is not retried again; please handle it by hand."
    )


def _close_run(
    run: PipelineRun,
    status: str,
    ticket_status: str,
    *,
    route: str = "",
    error: str = "",
    state: RunState | None = None,
    lock: RunLock | None = None,
) -> None:
    """Close the run and its ticket, with the run's held checkpoints, and leave `run` as the database has it.

    One round trip and one transaction, unflushed (`statements_unflushed`): whatever the run paid for or
    sent out was flushed when it was recorded (a paid step's checkpoint, an action's own record), and that
    flush made every earlier write durable with it. A database crash that loses the close leaves the run
    running; its lease expires, the sweeper hands it out, and the worker restores its finished steps
    (doing again only free ones whose rows were lost with it) and closes it again, paying nothing.

    The run's lock (`lock`) is released in the same message, after the commit (`statements_unflushed`'s
    `after_commit`): the next holder finds the run closed.
    """
    now = timezone.now()
    values: dict[str, Any] = {
        "status": status,
        "route": route,
        "error": error[:5000],
        "finished_at": now,
        "lease_expires_at": None,
    }
    waiting = status == PipelineRun.Status.WAITING
    statements: list[tuple[str, Sequence[Any]]] = [
        _run_close(run.pk, values, waiting=waiting),
        _ticket_follows(run, run_status=status, status=ticket_status, now=now),
    ]
    if waiting:
        # Decided before it closed: as a close as waiting would have, the decision starts the take count
        # afresh, and no lease is held. Matches nothing when the run closed (it carries `now`).
        statements.append(
            update_statement(
                PipelineRun.objects.filter(pk=run.pk).exclude(finished_at=now), takes=0, lease_expires_at=None
            )
        )
    # Inside a caller's transaction there is no commit of ours to follow: the lock is released on the way out.
    release = [lock.release()] if lock is not None and lock.owed and not connection.in_atomic_block else []
    if state is not None:
        closed = checkpoints_write(state, *statements, after_commit=release)[0]
    else:
        closed = statements_unflushed(statements, after_commit=release)[0]
    if release and lock is not None:
        lock.released()
    if not closed:
        logger.info("run %s was decided before it closed as waiting; left queued for its decision", run.pk)
        run.refresh_from_db()  # the decision changed the row: read what it wrote
        return
    # What the update wrote, set on the instance instead of read back (one round trip fewer per run).
    for field, value in values.items():
        setattr(run, field, value)
    if waiting:
        run.takes = 0
    run.ticket.status, run.ticket.updated_at = ticket_status, now
    instruments.run_finished_count(outcome=ticket_status)
