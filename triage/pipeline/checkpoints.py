"""Observability of the chain: every attempt of every step is a `StepRun` checkpoint.

A checkpoint records the attempt's input digest, output, verdicts, latency, tokens, cost, the model
that answered and why it was chosen. A succeeded checkpoint is what a resumed run restores from.

Two ways to write one, chosen per attempt by the runner (why durability holds either way is written
there, at `_run_step`):

- an attempt that may pay a provider is *opened* first (a "running" row, committed and flushed before
  the call) and closed with an update: a crash in between leaves the row, which the next run closes as
  failed, so the attempt counts against the step's budget and what it may have cost stays visible;
- an attempt that pays for nothing is written once, finished, in a round trip that does not wait for the
  disk flush (`triage.durability.statements_unflushed`); when it also called nothing outside the product,
  not even that: it is *held* (`RunState.folded`, with free statements in `RunState.deferred`) and written
  with the run's next write: the next paid checkpoint, a failed attempt, what is written before an approval
  request or an action sent out (`RunState.flush`), or the run's close. Losing it (a worker crash before
  that write, or a database crash in the fraction of a second before the WAL writer flushes it) only means
  the free step is done again; the next flushed commit (the next paid checkpoint, an action sent out)
  flushes it with everything before.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

import orjson
from django.utils import timezone

from integrations.llm.base import ProviderReply
from triage.contracts import Verdict
from triage.durability import insert_statement, statements_unflushed, unsaved
from triage.models import StepRun
from triage.pipeline.steps.base import RunState, StepResult


def input_digest(state: RunState, step: str) -> str:
    """What the step saw, as a hash: two attempts with the same digest had the same input.

    The SHA-256 of the JSON of the step's name, the ticket's text and the contracts produced so far, keys
    sorted, compact (orjson's `OPT_SORT_KEYS`), written out part by part: each contract's JSON is kept in
    `state.dumped` while the state holds that very object, so the retrieval dumped for classify is not dumped
    again for draft, validate, route and execute (the same text as one dump of the whole payload, byte for
    byte). Until 2026-11-30 the JSON was the standard library's (`sort_keys=True`, its ", " and ": "
    separators, non-ASCII escaped), at about three times the cost: a digest written before then differs
    from one written now for the same input.
    """
    parts: list[tuple[str, Any]] = [("classification", state.classification), ("draft", state.draft)]
    if state.lookup is not None:  # only when there is one: the digests of runs without look-ups stay as they were
        parts.append(("lookup", state.lookup))
    parts.append(("retrieval", state.retrieval))
    encoded = [b'"%s":%s' % (name.encode(), _dumped(state, name, value)) for name, value in parts]
    encoded += [b'"step":' + _json_sorted(step), b'"text":' + _json_sorted(state.text)]
    return hashlib.sha256(b"{" + b",".join(encoded) + b"}").hexdigest()


def _json_sorted(value: Any) -> bytes:
    """`value` as compact JSON, keys sorted. The standard library for what orjson refuses (a string with a lone
    surrogate, which a model's JSON answer may carry; an integer beyond 64 bits), in the same layout."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        text = json.dumps(value, default=str, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8", "surrogatepass")


def _dumped(state: RunState, name: str, value: Any) -> bytes:
    if value is None:
        return b"null"
    cached = state.dumped.get(name)
    if cached is not None and cached[0] is value:
        return cached[1]
    text = _json_sorted(value.model_dump(mode="json"))
    state.dumped[name] = (value, text)
    return text


def checkpoint_open(state: RunState, step: str, attempt: int, *, durable: bool) -> StepRun:
    """The attempt's checkpoint: written now ("running") when `durable`, else only when it is closed.

    A durable open is a flushed commit; the folded checkpoints waiting in `state` go out just before it, so
    that flush makes them durable too and the rows stay in the order the steps finished.
    """
    step_run = unsaved(StepRun, run=state.run, step=step, attempt=attempt, input_digest=input_digest(state, step))
    if durable:
        checkpoints_write(state)
        step_run.save(force_insert=True)
    return step_run


def checkpoint_close(
    state: RunState,
    step_run: StepRun,
    status: str,
    started: float,
    *,
    result: StepResult | None = None,
    error: str = "",
    verdicts: list[Verdict] | None = None,
    output: dict[str, Any] | None = None,
    fold: bool = False,
) -> None:
    """Record how the attempt ended.

    Opened durably (it may have paid): a flushed update. Otherwise the row is written unflushed, with every
    folded checkpoint before it, in one round trip; with `fold` (a deterministic step that paid nothing and
    wrote nothing, see `_run_step`) it is only added to `state.folded`, to go out with the next write.
    """
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
    # Its `started_at` is when it is written (`latency_ms` says how long it took).
    state.folded.append(step_run)
    if not fold:
        checkpoints_write(state)


def checkpoints_write(
    state: RunState, *also: tuple[str, Sequence[Any]], after_commit: Sequence[tuple[str, Sequence[Any]]] = ()
) -> list[int]:
    """Write the held checkpoints and statements, then the statements `also`, in one round trip (unflushed);
    the row counts of `also`. Unflushed is enough: every row here is free work (see `transaction_unflushed`).
    `after_commit` goes out after the commit, in the same message (the run lock's release, with the close)."""
    statements = [checkpoint_insert_sql(state.folded)] if state.folded else []
    statements += state.deferred
    counts = statements_unflushed([*statements, *also], after_commit=after_commit)
    state.folded.clear()
    state.deferred.clear()
    return counts[len(statements) :]


def checkpoint_insert_sql(step_runs: list[StepRun]) -> tuple[str, Sequence[Any]]:
    """One INSERT of these rows (`insert_statement`: the rows as one JSON parameter), for `statements_unflushed`.
    No RETURNING: the rows' ids are not needed (the span reports the checkpoint id of durable attempts, which
    are saved by the ORM)."""
    return insert_statement(StepRun, step_runs)


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
