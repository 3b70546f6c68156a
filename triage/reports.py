"""Figures: automation, mishandling, per-step and end-to-end reliability, money saved.

Definitions (the README repeats them):
- automation_rate: auto-handled tickets / all tickets.
- mishandled_rate: tickets auto-handled although the category was wrong, the ticket was out of
  scope, or it moves money; over all tickets.
- money_auto_executed: runs that carried out a money-moving action (refund, cancellation, credit)
  without a person. Must be 0 with the gates on.
- money_tickets_auto_handled: auto-handled tickets whose true category is money-flagged: the
  classifier put them in a non-money category, so they got an informational reply and no money
  moved. They are counted in mishandled.
- step_reliability: per step, the share of tickets where the step's own output was right:
  retrieve, the best passage clears the retrieval threshold; classify, the category equals the
  true label (out of scope counts only when flagged); draft, the draft passes the groundedness
  and personal-data checks. Steps that did not run (no knowledge base) are null.
- chain_reliability_predicted: the product of those step reliabilities.
- chain_reliability_measured: gated, the share of tickets whose outcome was right (auto-handled
  correctly, or stopped for a person); ungated, the share where every step was right at once, the
  figure the predicted product estimates. (Money safety is counted by mishandled_rate.)
- saved_cost: (correctly auto-handled - mishandled) x human cost per ticket - model spend. A
  mishandled ticket costs a person's time to put right, so it is subtracted, not ignored.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from math import prod
from typing import Any

from django.db.models import QuerySet

from triage.contracts import MONEY_ACTIONS, OUT_OF_SCOPE
from triage.models import Action, PipelineRun, StepRun

CHAIN_STEPS = ("retrieve", "classify", "draft")


@dataclass
class ChainFigures:
    tickets: int = 0
    auto_handled: int = 0
    routed_to_person: int = 0
    failed: int = 0
    automation_rate: float = 0.0
    mishandled: int = 0
    mishandled_rate: float = 0.0
    money_auto_executed: int = 0
    money_tickets_auto_handled: int = 0
    out_of_scope_auto_handled: int = 0
    accuracy: float | None = None
    step_reliability: dict[str, float | None] = field(default_factory=dict)
    chain_reliability_predicted: float | None = None
    chain_reliability_measured: float = 0.0
    escalations_by_gate: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cache_write_tokens: int = 0  # of tokens_in: written to the prompt cache
    cache_read_tokens: int = 0  # of tokens_in: read from the prompt cache
    tokens_per_ticket: float = 0.0  # input + output
    llm_cost: float = 0.0
    cost_per_ticket: float = 0.0
    human_cost_per_ticket: float = 0.0
    saved_cost: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _passed(verdicts: list[dict[str, Any]], gates: set[str]) -> bool:
    relevant = [v for v in verdicts if v.get("gate") in gates]
    return bool(relevant) and all(v.get("passed") for v in relevant)


def chain_figures(*, runs: QuerySet[PipelineRun], money_labels: set[str], human_cost: Decimal) -> ChainFigures:
    """Figures over finished runs whose tickets carry a reference label."""
    run_rows = list(runs.values_list("pk", "route", "status", "ticket__reference_label"))
    run_ids = [r[0] for r in run_rows]
    steps: dict[int, dict[str, StepRun]] = defaultdict(dict)
    totals = Counter()
    cost = Decimal("0")
    for start in range(0, len(run_ids), 2000):
        chunk = run_ids[start : start + 2000]
        for s in StepRun.objects.filter(run_id__in=chunk).only(
            "run_id", "step", "status", "output", "verdicts", "tokens_in", "tokens_out", "cost", "cache_write_tokens",
            "cache_read_tokens",
        ):
            totals["tokens_in"] += s.tokens_in
            totals["tokens_out"] += s.tokens_out
            totals["cache_write_tokens"] += s.cache_write_tokens
            totals["cache_read_tokens"] += s.cache_read_tokens
            cost += s.cost
            if s.status in StepRun.FINISHED:
                steps[s.run_id][s.step] = s
    money_runs = set(
        Action.objects.filter(run_id__in=run_ids, kind__in=[str(k) for k in MONEY_ACTIONS], status=Action.Status.DONE)
        .values_list("run_id", flat=True)
    )
    f = ChainFigures(tickets=len(run_rows), human_cost_per_ticket=float(human_cost))
    # Without gates every ticket is acted on, so the chain is right only when every step was.
    ungated = set(runs.values_list("gates_enabled", flat=True).distinct()) == {False}
    ok = Counter()
    counted = Counter()
    in_scope = in_scope_right = correct_auto = chain_right = 0
    escalations: Counter[str] = Counter()
    for run_id, route, status, truth in run_rows:
        by_step = steps.get(run_id, {})
        classify = by_step.get("classify")
        predicted = (classify.output or {}).get("category") if classify and classify.status == StepRun.Status.SUCCEEDED else None
        step_right = {}
        retrieve = by_step.get("retrieve")
        if retrieve is not None and retrieve.status != StepRun.Status.SKIPPED:
            step_right["retrieve"] = retrieve.status == StepRun.Status.SUCCEEDED and _passed(retrieve.verdicts, {"retrieval"})
        step_right["classify"] = predicted == truth
        draft = by_step.get("draft")
        if retrieve is not None and retrieve.status != StepRun.Status.SKIPPED:
            step_right["draft"] = bool(
                draft and draft.status == StepRun.Status.SUCCEEDED and _passed(draft.verdicts, {"groundedness", "personal_data"})
            )
        for step, right in step_right.items():
            counted[step] += 1
            ok[step] += right
        if truth != OUT_OF_SCOPE:
            in_scope += 1
            in_scope_right += predicted == truth
        safe = predicted == truth and truth != OUT_OF_SCOPE and truth not in money_labels
        auto = route == PipelineRun.Route.AUTO
        if status == PipelineRun.Status.FAILED:
            f.failed += 1
        elif auto:
            f.auto_handled += 1
            if safe and run_id not in money_runs:
                correct_auto += 1
            else:
                f.mishandled += 1
            if run_id in money_runs:
                f.money_auto_executed += 1
            if truth in money_labels:
                f.money_tickets_auto_handled += 1
            if truth == OUT_OF_SCOPE:
                f.out_of_scope_auto_handled += 1
        else:
            f.routed_to_person += 1
            for step_run in by_step.values():
                for v in step_run.verdicts:
                    if not v.get("passed"):
                        escalations[v.get("gate", "?")] += 1
        if ungated:
            chain_right += all(step_right.values())
        else:
            chain_right += status != PipelineRun.Status.FAILED and (not auto or (safe and run_id not in money_runs))
    n = max(f.tickets, 1)
    f.automation_rate = f.auto_handled / n
    f.mishandled_rate = f.mishandled / n
    f.accuracy = in_scope_right / in_scope if in_scope else None
    f.step_reliability = {s: (ok[s] / counted[s] if counted[s] else None) for s in CHAIN_STEPS}
    present = [v for v in f.step_reliability.values() if v is not None]
    f.chain_reliability_predicted = prod(present) if present else None
    f.chain_reliability_measured = chain_right / n
    f.escalations_by_gate = dict(escalations.most_common())
    f.tokens_in, f.tokens_out = totals["tokens_in"], totals["tokens_out"]
    f.cache_write_tokens, f.cache_read_tokens = totals["cache_write_tokens"], totals["cache_read_tokens"]
    f.tokens_per_ticket = (f.tokens_in + f.tokens_out) / n
    f.llm_cost = float(cost)
    f.cost_per_ticket = float(cost) / n
    f.saved_cost = float((correct_auto - f.mishandled) * human_cost - cost)
    return f
