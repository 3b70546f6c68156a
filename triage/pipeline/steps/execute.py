"""Execute: carry out the chain's own actions when auto-handled, else exactly what a person decided.

Money moves only from a person's decision, and that person's money permission is checked again here
at execution, not only when the decision was taken: a permission revoked in between, or a resolution
written by anything but `approval_decide`, moves no money.
"""

from __future__ import annotations

from typing import Any, ClassVar

from triage.contracts import Resolution
from triage.models import PipelineRun
from triage.permissions import MONEY_PERMISSION, money_permitted
from triage.pipeline.steps.base import NotRetryable, RunState, StepResult, StepSkipped
from triage.writeback import run_actions_execute

__all__ = ["MONEY_PERMISSION", "ExecuteStep", "MoneyWithoutPerson", "money_permitted"]


class MoneyWithoutPerson(NotRetryable):
    """A money-moving action reached execution without a permitted person's decision."""


class ActionOutcomeUnknown(NotRetryable):
    """An action may have been carried out and cannot be read back: a person checks it (no retry guesses)."""


class ExecuteStep:
    name: ClassVar[str] = "execute"

    def run(self, state: RunState) -> StepResult:
        if state.route == PipelineRun.Route.AUTO:
            assert state.classification is not None
            proposed = state.classification.proposed_actions
            reply = state.draft.body if state.draft else ""
            if state.run.gates_enabled and any(a.moves_money for a in proposed):
                # Unreachable while the route step holds money for a person; a second lock on the same door.
                raise MoneyWithoutPerson(
                    "Refused: an automatic run proposed a money-moving action; a person must decide."
                )
        else:
            resolution = Resolution.model_validate(state.run.resolution or {})
            if resolution.verdict == "reject":
                raise StepSkipped(f"Rejected by a person: {resolution.reason}".strip())
            proposed = resolution.actions
            reply = resolution.reply
            if any(a.moves_money for a in proposed) and not money_permitted(resolution.decided_by):
                raise MoneyWithoutPerson(
                    "Refused: this decision moves money and was not taken by a person with the money-approval "
                    "permission."
                )
        # A shadow run (gates off, evaluation only) records what it would do and sends nothing anywhere.
        # Record-only actions are free work: held with the run's checkpoints and written with its close. Before
        # anything is sent out, what is held is written (`state.flush`): a sent action never outlives the
        # checkpoints it was decided from.
        actions = run_actions_execute(
            run=state.run,
            actions=proposed,
            reply=reply,
            record_only=not state.run.gates_enabled,
            mapped_kinds=state.action_kinds,
            deferred=state.deferred,
            before_send=state.flush,
        )
        unknown = [a for a in actions if a.status == a.Status.UNKNOWN]
        if unknown:
            raise ActionOutcomeUnknown(
                "Outcome unknown, check in the helpdesk: "
                + ", ".join(a.kind for a in unknown)
                + ". A worker stopped after calling out and before recording the answer, and this integration "
                "cannot read back whether it took effect; mark each one on the ticket's trace."
            )
        failed = [a for a in actions if a.status != a.Status.DONE]
        if failed:
            # Recorded and retried by the step policy; a write-back that keeps failing escalates, visibly.
            raise RuntimeError(
                "actions not carried out: "
                + ", ".join(f"{a.kind} ({a.error or 'being carried out by another worker'})" for a in failed)
            )
        return StepResult(
            output={"actions": [{"kind": a.kind, "status": a.status, "key": a.idempotency_key} for a in actions]}
        )

    def restore(self, state: RunState, output: dict[str, Any]) -> None:
        """Nothing follows execute: a finished execute means the run is done."""
