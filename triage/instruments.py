"""Prometheus instruments of the chain, and the figures read from the database when `/metrics` is scraped.

Two kinds of figures, each from where it is true:

- **Counted where it happens** (this process's counters and histograms): runs finished by outcome, step
  attempt latency, gate failures, model spend and tokens, write-backs that failed. With several processes
  (gunicorn workers, RQ workers on the same machine) set `PROMETHEUS_MULTIPROC_DIR` to a directory they all
  share, emptied at each deploy: prometheus-client then keeps the counts in one file per process there, and
  `/metrics` adds them up.
- **Read from the database at scrape time** (`DatabaseCollector`): queue depth, the age of the oldest queued
  run, runs being worked and runs waiting for a person. These are facts of the database, the same whichever
  process is asked and whichever worker died, so they are never counted in a process.

An RQ worker forks a work-horse per job. Counted per process id, each job would leave a file of its own in
the multiprocess directory (thousands a day, each read at every scrape); `metrics_process_adopt` lets a
work-horse write to its worker's file instead. A worker runs one work-horse at a time and counts nothing
itself, so no two processes ever write one file at once, which is the rule prometheus-client sets for a
custom process identifier.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from triage.contracts import Verdict
from triage.models import PipelineRun

_adopted_identity: str | None = None


def _process_identity() -> str:
    return _adopted_identity or str(os.getpid())


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Before any instrument below is made: each takes its value class when created.
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identity)


def metrics_process_adopt(identity: str) -> None:
    """Count this process's figures under `identity` (an RQ work-horse: its worker's), not its own pid."""
    global _adopted_identity
    _adopted_identity = identity


RUNS_FINISHED = Counter(
    "triage_runs_finished",
    "Runs that finished a phase, by outcome (the ticket's status): auto_handled, awaiting_approval, resolved, "
    "rejected, failed.",
    ["outcome"],
)
STEP_DURATION = Histogram(
    "triage_step_duration_seconds",
    "Time one attempt of one step took, by step and the attempt's status.",
    ["step", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
GATE_FAILURES = Counter(
    "triage_gate_failures", "Failed gate verdicts, by gate and the step it judged.", ["gate", "step"]
)
MODEL_COST = Counter(
    "triage_model_cost_dollars", "Dollars paid to model providers, by model (failed attempts included).", ["model"]
)
MODEL_TOKENS = Counter(
    "triage_model_tokens",
    "Tokens of model calls, by model and direction (input counts cached input too).",
    ["model", "direction"],
)
WRITEBACKS = Counter(
    "triage_writebacks",
    "Action write-back attempts, by destination and outcome (done or failed).",
    ["writer", "outcome"],
)
WRITEBACK_FAILURES = Counter(
    "triage_writeback_failures", "Action write-back attempts that failed, by destination.", ["writer"]
)


def step_attempt_observe(
    *,
    step: str,
    status: str,
    seconds: float,
    model: str = "",
    cost: Decimal | None = None,
    tokens_in: int = 0,
    tokens_out: int = 0,
    verdicts: list[Verdict] | None = None,
) -> None:
    """One finished step attempt: its latency, what it paid for, and its failed gates."""
    STEP_DURATION.labels(step=step, status=status).observe(max(seconds, 0.0))
    if model and (cost or tokens_in or tokens_out):
        if cost:
            MODEL_COST.labels(model=model).inc(float(cost))
        if tokens_in:
            MODEL_TOKENS.labels(model=model, direction="input").inc(tokens_in)
        if tokens_out:
            MODEL_TOKENS.labels(model=model, direction="output").inc(tokens_out)
    gate_failures_count(verdicts=verdicts or [], step=step)


def gate_failures_count(*, verdicts: list[Verdict], step: str) -> None:
    for verdict in verdicts:
        if not verdict.passed:
            GATE_FAILURES.labels(gate=verdict.gate, step=verdict.step or step).inc()


def run_finished_count(*, outcome: str) -> None:
    RUNS_FINISHED.labels(outcome=outcome).inc()


def writeback_count(*, writer: str, failed: bool) -> None:
    WRITEBACKS.labels(writer=writer, outcome="failed" if failed else "done").inc()
    if failed:
        WRITEBACK_FAILURES.labels(writer=writer).inc()


class DatabaseCollector(Collector):
    """Queue and backlog figures read from the database at scrape time (one indexed query)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        rows = {
            row["status"]: row
            for row in PipelineRun.objects.filter(
                status__in=[PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING, PipelineRun.Status.WAITING]
            )
            .order_by()
            .values("status")
            .annotate(n=Count("id"), oldest=Min("queued_at"))
        }
        queued = rows.get(PipelineRun.Status.QUEUED)
        yield GaugeMetricFamily("triage_queue_depth", "Runs queued and not yet taken by a worker.", value=_n(queued))
        oldest = queued["oldest"] if queued else None
        yield GaugeMetricFamily(
            "triage_queue_oldest_age_seconds",
            "How long the oldest queued run has waited since it was (last) handed to the queue; 0 when none waits.",
            value=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        )
        yield GaugeMetricFamily(
            "triage_runs_running", "Runs a worker is working now.", value=_n(rows.get(PipelineRun.Status.RUNNING))
        )
        yield GaugeMetricFamily(
            "triage_runs_waiting_for_person",
            "Runs waiting for a person's decision in the approval inbox.",
            value=_n(rows.get(PipelineRun.Status.WAITING)),
        )


def _n(row: Mapping[str, Any] | None) -> float:
    return float(row["n"]) if row else 0.0
