"""What every step is to the runner: contract in (the run's state), contract out (a `StepResult`),
and how it is put back from its checkpoint.

A step is one object in one file (`retrieve.py`, `classify.py`, ...): `run` does the work and applies
the step's own gates; `restore` puts a finished step's recorded output back into the state, exactly as
`run` had left it, so a resumed run never recomputes (or pays for) a finished step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from integrations.llm.base import ProviderReply
from triage import embedding
from triage.contracts import Classification, Draft, Retrieval, ToolLookup, Verdict
from triage.models import Category, GatePolicy, PipelineRun, StepRun, Ticket

if TYPE_CHECKING:  # the router is handed in by the runner; importing it here would only serve the type
    from triage.pipeline.router import Router


class StepSkipped(Exception):
    """A step that does not apply to this ticket (no knowledge base, nothing to draft)."""


class Escalate(Exception):
    """A step cannot produce valid output; the run goes to a person. Not retried."""

    def __init__(self, reason: str, verdicts: list[Verdict] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.verdicts = verdicts or []


class NotRetryable(Exception):
    """A failure that no retry can mend (a refused money action); escalated after its one attempt."""


@dataclass
class StepResult:
    """What one attempt of a step produced: the checkpoint's output, verdicts, and what it cost."""

    output: dict[str, Any]
    verdicts: list[Verdict] = field(default_factory=list)
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal("0")
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    why: str = ""

    @classmethod
    def from_reply(
        cls,
        output: dict[str, Any],
        reply: ProviderReply | None,
        verdicts: list[Verdict],
        *,
        model: str = "",
        why: str = "",
    ) -> StepResult:
        if reply is None:
            return cls(output=output, verdicts=verdicts, model=model, why=why)
        u = reply.usage
        return cls(
            output=output,
            verdicts=verdicts,
            model=reply.model or model,
            why=why,
            tokens_in=u.tokens_in + u.cache_write_tokens + u.cache_read_tokens,
            tokens_out=u.tokens_out,
            cost=reply.cost,
            cache_write_tokens=u.cache_write_tokens,
            cache_read_tokens=u.cache_read_tokens,
        )


@dataclass
class RunState:
    """What the steps of one run know, rebuilt from checkpoints on resume."""

    run: PipelineRun
    ticket: Ticket
    policy: GatePolicy
    categories: dict[str, Category]
    router: Router
    retrieval: Retrieval | None = None
    classification: Classification | None = None
    lookup: ToolLookup | None = None
    draft: Draft | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    passed: bool = False
    route: str = ""
    spent: Decimal = Decimal("0")  # what this take's attempts paid providers (the run's span reports it)
    # Finished checkpoints of free attempts not written yet, and statements of free work (record-only
    # actions) held with them: they go out with the run's next write (`triage.pipeline.checkpoints`), in
    # order, before any later paid checkpoint, anything sent out, and with the run's close.
    folded: list[StepRun] = field(default_factory=list)
    deferred: list[tuple[str, Sequence[Any]]] = field(default_factory=list)
    # Writes what is held now (`folded`, `deferred`); a step calls it before anything leaves the run (an
    # approval request, an action sent out), so nothing it did can outlive the checkpoints it came from.
    flush: Callable[[], None] = lambda: None
    # Each contract's JSON for `input_digest`, with the object it was made from (used while it is the same).
    dumped: dict[str, tuple[Any, bytes]] = field(default_factory=dict)
    #: Tool-mapped action kinds (`ChainSettings.action_kinds`); None: read when needed.
    action_kinds: frozenset[str] | None = None
    _embedding: Any = None

    @property
    def text(self) -> str:
        return self.ticket.text

    @property
    def embedding(self) -> Any:
        if self._embedding is None:
            self._embedding = embedding.embed_texts([self.text])[0]
        return self._embedding

    @property
    def category(self) -> Category | None:
        return self.categories.get(self.classification.category) if self.classification else None

    def threshold_for(self, category: Category | None) -> float:
        """The confidence a ticket of `category` needs to be auto-handled: an admin's number typed for the
        category, else one typed for every category, else the threshold chosen from the target error
        (`triage.risk`). A category the chooser refused needs more than any confidence (infinity): see
        `refusal_for` for why."""
        if category is not None and category.confidence_threshold is not None:
            return category.confidence_threshold
        if self.policy.default_confidence_threshold is not None:
            return self.policy.default_confidence_threshold
        choice = self.router.thresholds
        if choice is None:  # a classifier stored before calibration existed: its own threshold
            return self.router.classifier_threshold
        if category is None:
            return math.inf
        chosen = choice.threshold_for(category.label)
        return math.inf if chosen is None else chosen

    def refusal_for(self, category: Category | None) -> str:
        """Why no confidence is enough for `category` (empty when some is)."""
        if category is None or not math.isinf(self.threshold_for(category)):
            return ""
        choice = self.router.thresholds
        return choice.refusal_for(category.label) if choice is not None else ""

    def money_probability(self) -> float:
        """The probability the classifier puts on money-moving categories, summed (0.0 without one)."""
        if self.classification is None:
            return 0.0
        # The local classifier's full distribution when it answered (or was asked first), and what the
        # answering model's own listed alternatives put on money categories: the larger.
        listed = {self.classification.category: self.classification.confidence} | dict(self.classification.alternatives)
        stated = sum(p for label, p in listed.items() if (c := self.categories.get(label)) is not None and c.money)
        return min(1.0, max(self.classification.money_probability or 0.0, stated))


class Step(Protocol):
    name: ClassVar[str]

    def run(self, state: RunState) -> StepResult:
        """Do the step's work on `state` (setting what it produced), with its gates' verdicts."""
        ...

    def restore(self, state: RunState, output: dict[str, Any]) -> None:
        """Put a succeeded checkpoint's output back into `state`."""
        ...
