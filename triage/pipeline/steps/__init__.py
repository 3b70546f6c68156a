"""The steps of the chain, in the order the runner works them. Each is one object in one file."""

from __future__ import annotations

from triage.pipeline.steps.base import Escalate, NotRetryable, RunState, Step, StepResult, StepSkipped
from triage.pipeline.steps.classify import ClassifyStep
from triage.pipeline.steps.draft import DraftStep
from triage.pipeline.steps.execute import ExecuteStep
from triage.pipeline.steps.lookup import LookupStep
from triage.pipeline.steps.retrieve import RetrieveStep
from triage.pipeline.steps.route import RouteStep
from triage.pipeline.steps.validate import ValidateStep

CHAIN: tuple[Step, ...] = (
    RetrieveStep(),
    ClassifyStep(),
    LookupStep(),
    DraftStep(),
    ValidateStep(),
    RouteStep(),
    ExecuteStep(),
)

__all__ = ["CHAIN", "Escalate", "NotRetryable", "RunState", "Step", "StepResult", "StepSkipped"]
