"""Route: carry it out automatically, or hand it to a person.

The money invariant lives here, not behind any switch: on a gated run, a ticket whose category,
proposed actions or text moves money goes to a person. The admin's settings can only add caution
(more money categories); nothing in them can take a ticket off this path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from triage.contracts import Verdict
from triage.models import PipelineRun
from triage.pipeline import gates
from triage.pipeline.steps.base import RunState, StepResult


def money_hold(state: RunState) -> Verdict | None:
    """The failed money verdict that holds this run for a person, or None."""
    if not state.run.gates_enabled:
        return None  # a shadow run (evaluation): its actions are recorded only, see steps/execute.py
    verdict = gates.gate_money(
        classification=state.classification,
        category_moves_money=bool(state.category and state.category.money),
        ticket_text=state.text,
        money_probability=state.money_probability(),
    )
    return None if verdict.passed else verdict.model_copy(update={"step": "route"})


class RouteStep:
    name: ClassVar[str] = "route"

    def run(self, state: RunState) -> StepResult:
        hold = money_hold(state)
        if hold is None and state.classification is not None and (state.passed or not state.run.gates_enabled):
            state.route = PipelineRun.Route.AUTO
            return StepResult(
                output={"route": "auto", "reason": "every gate passed" if state.passed else "gates are off"}
            )
        state.route = PipelineRun.Route.HUMAN
        failed = [v for v in state.verdicts if not v.passed]
        verdicts = []
        if hold is not None and not any(v.gate == hold.gate for v in failed):
            verdicts.append(hold)
            failed.append(hold)
        reason = " ".join(v.reason for v in failed) or "The chain could not produce a valid answer."
        # Who receives a stopped run is the approvals app's business; triage only knows the settings path.
        handler: Callable[..., Any] = import_string(settings.TRIAGE_ESCALATION_HANDLER)
        # The request reaches the inbox at once (a flushed commit): the checkpoints it was decided from go first.
        state.flush()
        with transaction.atomic():
            approval = handler(
                run=state.run,
                reason=reason,
                verdicts=state.verdicts + verdicts,
                classification=state.classification,
                draft=state.draft,
            )
        return StepResult(output={"route": "human", "reason": reason, "approval_id": approval.pk}, verdicts=verdicts)

    def restore(self, state: RunState, output: dict[str, Any]) -> None:
        state.route = output.get("route", "")
