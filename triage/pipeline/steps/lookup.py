"""Look-up: when the ticket's category has a read-only MCP tool mapped (order_status for late parcels), ask it,
so the draft can state what the shop's own system says. Gated on the tool's arguments before the call.

Its arguments come from the ticket by plain code and pass the argument gate first (the tool's input schema,
and identifiers the customer wrote): a refused argument never reaches the tool, and the ticket goes to a
person with the reason. A tool that does not answer is retried by the step's policy; when it still fails, the
runner escalates the step, so a draft that needed the look-up goes to a person instead of going out without it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from triage.contracts import ToolLookup
from triage.pipeline.steps.base import Escalate, RunState, StepResult, StepSkipped
from triage.tools import lookup_call, lookup_plan, lookup_tool_for


class LookupStep:
    name: ClassVar[str] = "lookup"

    def run(self, state: RunState) -> StepResult:
        if state.classification is None or state.classification.out_of_scope:
            raise StepSkipped("No category, so nothing to look up.")
        mapping = lookup_tool_for(category=state.category)
        if mapping is None:
            raise StepSkipped(f"No look-up tool is mapped to category '{state.classification.category}'.")
        plan, verdict = lookup_plan(mapping=mapping, ticket=state.ticket)
        if not verdict.passed:
            raise Escalate(verdict.reason, [verdict])
        lookup = lookup_call(mapping=mapping, plan=plan)
        state.lookup = lookup
        return StepResult(
            output=lookup.model_dump(mode="json"),
            verdicts=[verdict],
            model=f"mcp:{lookup.server}/{lookup.tool}",
            why=f"category '{state.classification.category}' is looked up with {lookup.tool}",
        )

    def restore(self, state: RunState, output: dict[str, Any]) -> None:
        state.lookup = ToolLookup.model_validate(output)
