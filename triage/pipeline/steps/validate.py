"""Validate: every verdict so far plus the category's own policy; passed only when none failed."""

from __future__ import annotations

from typing import Any, ClassVar

from triage.pipeline import gates
from triage.pipeline.steps.base import RunState, StepResult


class ValidateStep:
    name: ClassVar[str] = "validate"

    def run(self, state: RunState) -> StepResult:
        verdicts = []
        category = state.category
        if category is not None:
            verdicts.append(gates.gate_category_policy(category=category.label, auto_reply=category.auto_reply))
        failed = [v for v in state.verdicts + verdicts if not v.passed]
        state.passed = state.classification is not None and not failed
        return StepResult(
            output={
                "passed": state.passed,
                "failed_gates": sorted({v.gate for v in failed}),
                "gates_enabled": state.run.gates_enabled,
            },
            verdicts=[v for v in verdicts if not v.passed],
        )

    def restore(self, state: RunState, output: dict[str, Any]) -> None:
        state.passed = bool(output.get("passed"))
