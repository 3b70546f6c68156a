"""Retrieve: the knowledge-base passages nearest the ticket (pgvector), gated on their score."""

from __future__ import annotations

from typing import Any, ClassVar

from triage.contracts import Retrieval
from triage.pipeline import gates
from triage.pipeline.steps.base import RunState, StepResult, StepSkipped
from triage.selectors import chunk_search

PASSAGES = 4


class RetrieveStep:
    name: ClassVar[str] = "retrieve"

    def run(self, state: RunState) -> StepResult:
        retrieval = chunk_search(embedding=state.embedding, limit=PASSAGES)
        if not retrieval.passages:  # the search finds a chunk whenever there is one: no separate existence query
            raise StepSkipped("There is no knowledge base: triage is judged on classification alone.")
        state.retrieval = retrieval
        verdicts = []
        if state.policy.retrieval_gate:
            verdicts.append(gates.gate_retrieval(retrieval=retrieval, min_score=state.policy.retrieval_min_score))
        return StepResult(output=retrieval.model_dump(mode="json"), verdicts=verdicts)

    def restore(self, state: RunState, output: dict[str, Any]) -> None:
        state.retrieval = Retrieval.model_validate(output)
