"""Checkpoint retention: finished runs' step payloads are slimmed after the admin's policy, figures kept.

A checkpoint (`StepRun`) is what a resumed run restarts from; once its run has finished nobody resumes it,
and only the figures and the trace page read it. So after `RetentionPolicy.slim_after_days` the bulky
parts go (passage texts, the draft body, the classifier's rationale, gate reasons and details) and
what every figure in `triage.metrics` reads stays: each step's status, latency, tokens, cost and model,
the classify output's category, and each verdict's gate and pass. The trace page keeps what it shows
beside them (passage titles and scores, citations, the route and its reason, the actions' statuses).

Runs that have not finished, that wait for a person, or whose actions are not all settled are never
touched: their checkpoints are still what a resume reads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from integrations.helpdesks.deliveries import deliveries_prune
from triage.models import Action, PipelineRun, RetentionPolicy, StepRun

# What each step's slimmed output keeps; a key not listed is dropped. `skipped` and `escalated` are the
# runner's own one-line reasons, kept for every step.
KEPT_OUTPUT = {
    "retrieve": {"passages"},
    "classify": {"category", "confidence", "out_of_scope", "priority", "alternatives", "model", "routing"},
    "lookup": {"server", "tool"},
    "draft": {"citations", "model"},
    "validate": {"passed", "failed_gates", "gates_enabled"},
    "route": {"route", "reason", "approval_id"},
    "execute": {"actions"},
}
KEPT_ALWAYS = {"skipped", "escalated"}
KEPT_PASSAGE = ("chunk_id", "article_id", "article_title", "heading", "score")  # all but the text
KEPT_VERDICT = ("gate", "passed", "step")

FINISHED_RUNS = (PipelineRun.Status.COMPLETED, PipelineRun.Status.FAILED)
UNSETTLED_ACTIONS = (Action.Status.PENDING, Action.Status.IN_FLIGHT, Action.Status.UNKNOWN)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneResult:
    step_runs: int  # checkpoints slimmed
    runs: int  # runs they belong to
    bytes_before: int  # their output + verdicts as JSON text
    bytes_after: int
    done: bool  # False: stopped at max_batches with more left for the next time


def slim_output(*, step: str, output: Any) -> Any:
    """A step's output with only what the figures and the trace page read."""
    if not isinstance(output, dict):
        return output
    kept = KEPT_OUTPUT.get(step, set()) | KEPT_ALWAYS
    slim = {key: value for key, value in output.items() if key in kept}
    if isinstance(slim.get("passages"), list):
        slim["passages"] = [
            {k: p[k] for k in KEPT_PASSAGE if k in p} if isinstance(p, dict) else p for p in slim["passages"]
        ]
    return slim


def slim_verdicts(*, verdicts: Any) -> Any:
    if not isinstance(verdicts, list):
        return verdicts
    return [{k: v[k] for k in KEPT_VERDICT if k in v} if isinstance(v, dict) else v for v in verdicts]


def _payload_size(output: Any, verdicts: Any) -> int:
    return len(json.dumps(output, default=str)) + len(json.dumps(verdicts, default=str))


def prunable_step_runs(*, cutoff: datetime) -> QuerySet[StepRun]:
    """Checkpoints not yet slimmed, of runs finished before `cutoff` with every action settled."""
    return StepRun.objects.filter(
        pruned_at__isnull=True, run__status__in=FINISHED_RUNS, run__finished_at__lt=cutoff
    ).exclude(run__actions__status__in=UNSETTLED_ACTIONS)


def checkpoints_prune(*, now: datetime, batch_size: int = 500, max_batches: int = 200) -> PruneResult:
    """Slim the checkpoints of runs finished more than the policy's days ago, `batch_size` rows per
    transaction, at most `max_batches` transactions (the rest waits for the next scheduled pass).

    Idempotent: a slimmed checkpoint carries `pruned_at` and is not read again. Rows another pass holds
    are skipped, not waited for, so two overlapping passes do not block each other.
    """
    days = RetentionPolicy.get_solo().slim_after_days
    if not days:
        return PruneResult(step_runs=0, runs=0, bytes_before=0, bytes_after=0, done=True)
    cutoff = now - timedelta(days=days)
    step_runs = bytes_before = bytes_after = batches = 0
    runs: set[int] = set()
    last_pk = 0
    while batches < max_batches:
        with transaction.atomic():
            batch = list(
                prunable_step_runs(cutoff=cutoff)
                .filter(pk__gt=last_pk)
                .order_by("pk")
                .select_for_update(of=("self",), skip_locked=True)
                .only("pk", "run_id", "step", "output", "verdicts")[:batch_size]
            )
            for row in batch:
                bytes_before += _payload_size(row.output, row.verdicts)
                row.output = slim_output(step=row.step, output=row.output)
                row.verdicts = slim_verdicts(verdicts=row.verdicts)
                row.pruned_at = now
                bytes_after += _payload_size(row.output, row.verdicts)
                runs.add(row.run_id)
            StepRun.objects.bulk_update(batch, ["output", "verdicts", "pruned_at"])
        batches += 1
        step_runs += len(batch)
        if len(batch) < batch_size:
            return PruneResult(step_runs, len(runs), bytes_before, bytes_after, done=True)
        last_pk = batch[-1].pk
    return PruneResult(step_runs, len(runs), bytes_before, bytes_after, done=False)


def checkpoints_prune_task() -> None:
    """The scheduled retention pass: a task, so it takes nothing and calls one service."""
    result = checkpoints_prune(now=timezone.now())
    logger.info(
        "checkpoints pruned: %s step run(s) of %s run(s), %s -> %s bytes%s",
        result.step_runs,
        result.runs,
        result.bytes_before,
        result.bytes_after,
        "" if result.done else " (more left for the next pass)",
    )


def deliveries_prune_task() -> None:
    """The scheduled retention pass over webhook delivery records (dedup rows and failed deliveries), kept
    at least the replay-retention period: see `integrations.helpdesks.deliveries.deliveries_prune`."""
    result = deliveries_prune(now=timezone.now())
    logger.info(
        "deliveries pruned: %s webhook delivery row(s), %s replayed and %s unresolved failed delivery(ies)%s",
        result.webhook_deliveries,
        result.replayed,
        result.unresolved,
        "" if result.done else " (more left for the next pass)",
    )
