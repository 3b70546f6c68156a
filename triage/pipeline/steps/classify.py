"""Classify: the routing brain's answer (local classifier first, a stronger model when unsure),
gated on its contract, its confidence and money."""

from __future__ import annotations

from typing import Any, ClassVar

from triage.contracts import Classification, ContractError
from triage.pipeline import gates
from triage.pipeline.steps.base import Escalate, RunState, StepResult


class ClassifyStep:
    name: ClassVar[str] = "classify"

    def run(self, state: RunState) -> StepResult:
        try:
            decision = state.router.classify(state=state)
        except ContractError as exc:
            verdict = gates.gate_schema(classification=None, error=exc)
            raise Escalate(verdict.reason, [verdict]) from exc
        state.classification = decision.classification
        verdicts = [gates.gate_schema(classification=decision.classification, error=None)]
        if state.policy.confidence_gate:
            verdicts.append(
                gates.gate_confidence(
                    classification=decision.classification,
                    threshold=state.threshold_for(state.category),
                    refusal=state.refusal_for(state.category),
                )
            )
        # Always on, whatever the gate policy says: money never moves without a person (see steps/route.py).
        verdicts.append(
            gates.gate_money(
                classification=decision.classification,
                category_moves_money=bool(state.category and state.category.money),
                ticket_text=state.text,
                money_probability=state.money_probability(),
            )
        )
        output = decision.classification.model_dump(mode="json") | {"routing": decision.trail}
        return StepResult.from_reply(
            output, decision.reply, verdicts, model=decision.classification.model, why=decision.why
        )

    def restore(self, state: RunState, output: dict[str, Any]) -> None:
        state.classification = Classification.model_validate({k: v for k, v in output.items() if k != "routing"})
