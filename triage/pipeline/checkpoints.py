"""Observability of the chain: every attempt of every step is a `StepRun` checkpoint.

A checkpoint records the attempt's input digest, output, verdicts, latency, tokens, cost, the model
that answered and why it was chosen. A succeeded checkpoint is what a resumed run restores from.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

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
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def checkpoint_open(state: RunState, step: str, attempt: int) -> StepRun:
    return StepRun.objects.create(run=state.run, step=step, attempt=attempt, input_digest=input_digest(state, step))


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
    step_run.save()


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
