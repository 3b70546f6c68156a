"""Draft: a reply grounded in the retrieved passages, gated on groundedness and personal data."""

from __future__ import annotations

from typing import Any, ClassVar

from triage.contracts import ContractError, Draft
from triage.pipeline import gates
from triage.pipeline.steps.base import Escalate, RunState, StepResult, StepSkipped


class DraftStep:
    name: ClassVar[str] = "draft"

    def run(self, state: RunState) -> StepResult:
        if state.retrieval is None or not state.retrieval.passages:
            raise StepSkipped("No knowledge-base passages to draft from.")
        if state.classification is None or state.classification.out_of_scope:
            raise StepSkipped("No category fits; a person writes this reply.")
        try:
            answer = state.router.draft(state=state)
        except ContractError as exc:
            raise Escalate(f"The draft is invalid: {exc.reason}.") from exc
        state.draft = answer.draft
        kb = [p.text for p in state.retrieval.passages]
        # Always on, whatever the policy switches say: a reply that says money moved is never sent by the chain.
        verdicts = [gates.gate_reply_money(reply=answer.draft.body, policy_text=kb)]
        if state.policy.groundedness_gate:
            verdicts.append(
                gates.gate_groundedness(
                    draft=answer.draft,
                    retrieval=state.retrieval,
                    min_overlap=state.policy.groundedness_min_overlap,
                    boilerplate=answer.boilerplate,
                    facts=[state.lookup.facts] if state.lookup else [],
                )
            )
        if state.policy.personal_data_gate:
            verdicts.append(
                gates.gate_personal_data(
                    draft=answer.draft, retrieval=state.retrieval, requester=state.ticket.requester
                )
            )
        return StepResult.from_reply(answer.draft.model_dump(mode="json"), answer.reply, verdicts, why=answer.why)

    def restore(self, state: RunState, output: dict[str, Any]) -> None:
        state.draft = Draft.model_validate(output)
