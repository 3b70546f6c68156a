"""Observability of the chain: every attempt of every step is a `StepRun` checkpoint.

A checkpoint records the attempt's input digest, output, verdicts, latency, tokens, cost, the model
that answered and why it was chosen. A succeeded checkpoint is what a resumed run restores from.

Two ways to write one, chosen per attempt by the runner (why durability holds either way is written
there, at `_run_step`):

- an attempt that may pay a provider is *opened* first (a "running" row, committed and flushed before
  the call) and closed with an update: a crash in between leaves the row, which the next run closes as
  failed, so the attempt counts against the step's budget and what it may have cost stays visible;
- an attempt that pays for nothing is written once, finished, in one transaction that does not wait for
  the disk flush (`synchronous_commit = off`). Losing it (a worker crash before it, or a database crash
  in the fraction of a second before the WAL writer flushes it) only means the free step is done again;
  the next flushed commit (the next paid checkpoint, the run's close) flushes it with everything before.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from django.db import connection, transaction
from django.db.models.sql import InsertQuery
from django.utils import timezone

from integrations.llm.base import ProviderReply
from triage.contracts import Verdict
from triage.models import StepRun
from triage.pipeline.steps.base import RunState, StepResult


def input_digest(state: RunState, step: str) -> str:
    """What the step saw, as a hash: two attempts with the same digest had the same input."""
    payload = {
        "step": step,
        "text": state.text,
        "retrieval": state.retrieval.model_dump(mode="json") if state.retrieval else None,
        "classification": state.classification.model_dump(mode="json") if state.classification else None,
        "draft": state.draft.model_dump(mode="json") if state.draft else None,
    }
    if state.lookup is not None:  # only when there is one: the digests of runs without look-ups stay as they were
        payload["lookup"] = state.lookup.model_dump(mode="json")
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def checkpoint_open(state: RunState, step: str, attempt: int, *, durable: bool) -> StepRun:
    """The attempt's checkpoint: written now ("running") when `durable`, else only when it is closed."""
    step_run = StepRun(run=state.run, step=step, attempt=attempt, input_digest=input_digest(state, step))
    if durable:
        step_run.save(force_insert=True)
    return step_run


def checkpoint_close(
    step_run: StepRun,
    status: str,
    started: float,
    *,
    result: StepResult | None = None,
    error: str = "",
    verdicts: list[Verdict] | None = None,
    output: dict[str, Any] | None = None,
) -> None:
    step_run.status = status
    step_run.latency_ms = (time.perf_counter() - started) * 1000
    step_run.finished_at = timezone.now()
    step_run.error = error[:5000]
    if result is not None:
        step_run.output = result.output
        step_run.model = result.model[:100]
        step_run.tokens_in = result.tokens_in
        step_run.tokens_out = result.tokens_out
        step_run.cost = result.cost
        step_run.cache_write_tokens = result.cache_write_tokens
        step_run.cache_read_tokens = result.cache_read_tokens
        step_run.route_reason = result.why[:300]
        verdicts = result.verdicts
    if output is not None:
        step_run.output = output
    step_run.verdicts = [v.model_dump(mode="json") for v in verdicts or []]
    if step_run.pk is not None:  # opened durably: closed with a flushed update
        step_run.save()
        return
    _insert_unflushed(step_run)


def _insert_unflushed(step_run: StepRun) -> None:
    """Insert a finished free attempt in one round trip that does not wait for the disk flush.

    The ORM writes the INSERT (field preparation, `started_at`, JSON); the statement goes out behind a
    `SET LOCAL synchronous_commit = off` in the same query string, which PostgreSQL runs as one implicit
    transaction when the connection is in autocommit: one round trip instead of four (BEGIN, SET, INSERT,
    COMMIT), and the session's own setting is untouched. Inside a caller's transaction the INSERT is
    sent alone, and that transaction's commit decides. Its `started_at` is when it was recorded
    (`latency_ms` says how long it took). Server-side binding cannot carry two statements in one query,
    so that configuration takes the four round trips.
    """
    meta = StepRun._meta
    query = InsertQuery(StepRun)
    query.insert_values([f for f in meta.local_concrete_fields if f is not meta.auto_field], [step_run])
    ((sql, params),) = query.get_compiler(connection=connection).as_sql()
    if connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    elif connection.settings_dict["OPTIONS"].get("server_side_binding"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            cursor.execute(sql, params)
    else:
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL synchronous_commit = off; {sql}", params)


def checkpoint_charge(step_run: StepRun, *, model: str, why: str, charged: ProviderReply | None) -> None:
    """What a failed or escalated attempt had already paid for, which model it asked and why."""
    step_run.model = model[:100]
    step_run.route_reason = why[:300]
    if charged is not None:
        u = charged.usage
        step_run.model = charged.model[:100]
        step_run.tokens_in = u.tokens_in + u.cache_write_tokens + u.cache_read_tokens
        step_run.tokens_out = u.tokens_out
        step_run.cache_write_tokens, step_run.cache_read_tokens = u.cache_write_tokens, u.cache_read_tokens
        step_run.cost = charged.cost
