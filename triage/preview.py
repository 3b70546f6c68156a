"""What the chain would do with a text, and why, without storing anything: for an assistant asking "what
would happen to this ticket?" through the product's MCP server.

The chain's own steps run on an unsaved ticket and run (retrieve, classify, look-up, draft, validate), with
the local models only (a preview never pays for a hosted model), and the route is decided as the route step
decides it: money always goes to a person. Nothing is written: no ticket, no run, no checkpoint, no
approval request, no action.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from integrations.embeddings import get_local_embedder
from triage.contracts import Verdict
from triage.models import PipelineRun, Ticket
from triage.pipeline.router import Router
from triage.pipeline.steps import CHAIN, Escalate, RunState, StepSkipped
from triage.pipeline.steps.route import money_hold
from triage.selectors import categories_by_label, gate_policy_current

PREVIEWED_STEPS = ("retrieve", "classify", "lookup", "draft", "validate")


@dataclass
class StepPreview:
    step: str
    status: str  # succeeded, skipped, escalated, failed
    note: str = ""


@dataclass
class TriagePreview:
    route: str  # "auto" or "human"
    reasons: list[str]
    category: str | None
    confidence: float | None
    proposed_actions: list[dict[str, Any]]
    draft: str
    lookup: dict[str, Any] | None
    verdicts: list[Verdict]
    steps: list[StepPreview] = field(default_factory=list)


def triage_preview(*, subject: str, body: str, requester: str = "") -> TriagePreview:
    """Run the chain's deciding steps on `subject`/`body` in memory and say where the ticket would go."""
    ticket = Ticket(source="preview", external_id="preview", subject=subject, body=body, requester=requester)
    run = PipelineRun(ticket=ticket)
    router = dataclasses.replace(Router.for_run(run), classify_cascade=[], draft_providers=["local"])
    state = RunState(
        run=run, ticket=ticket, policy=gate_policy_current(), categories=categories_by_label(), router=router
    )
    # Embedded without the database cache, which would keep this text's vector.
    state._embedding = get_local_embedder().embed([state.text])[0]
    steps: list[StepPreview] = []
    for step in CHAIN:
        if step.name not in PREVIEWED_STEPS:
            continue
        try:
            result = step.run(state)
        except StepSkipped as skip:
            steps.append(StepPreview(step.name, "skipped", str(skip)))
        except Escalate as esc:
            state.verdicts.extend(esc.verdicts)
            steps.append(StepPreview(step.name, "escalated", esc.reason))
        except Exception as exc:  # noqa: BLE001 - a preview reports a failing step instead of failing
            reason = f"Step '{step.name}' failed: {type(exc).__name__}: {exc}"
            state.verdicts.append(Verdict(gate="step_failed", step=step.name, passed=False, reason=reason))
            steps.append(StepPreview(step.name, "failed", reason))
        else:
            state.verdicts.extend(result.verdicts)
            steps.append(StepPreview(step.name, "succeeded", result.why))
    hold = money_hold(state)
    failed = [v for v in state.verdicts if not v.passed]
    if hold is not None and not any(v.gate == hold.gate for v in failed):
        failed.append(hold)
    auto = hold is None and state.classification is not None and state.passed
    classification = state.classification
    return TriagePreview(
        route="auto" if auto else "human",
        reasons=["every gate passed"] if auto else [v.reason for v in failed] or ["no valid answer"],
        category=classification.category if classification else None,
        confidence=classification.confidence if classification else None,
        proposed_actions=[a.model_dump(mode="json") for a in classification.proposed_actions] if classification else [],
        draft=state.draft.body if state.draft else "",
        lookup=state.lookup.model_dump(mode="json") if state.lookup else None,
        verdicts=state.verdicts,
        steps=steps,
    )
