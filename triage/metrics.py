"""The chain's figures, one definition each, for `evaluate` and the Reports page alike.

What is true about a ticket comes from one of two sources (`Truth`):
- `ReferenceLabels` (`evaluate`): every ticket carries the category it really belongs to.
- `StaffFeedback` (production): what staff did afterwards: marked an auto-handled ticket mishandled,
  corrected the category or rewrote the reply in an inbox decision, approved, rejected.

Where tickets went (a run is one ticket's pass through the chain):
- tickets: runs counted. auto_handled: the chain routed it `auto` and completed it on its own.
  to_person (`routed_to_person` in evaluate's JSON): routed to a person; each is still waiting or was
  approved, edited then approved, or rejected. failed: neither, and the run failed. in_progress: the rest.
- automation_rate: auto_handled / tickets.
- mishandled: a customer-visible wrong outcome: an auto-handled ticket that moved money without a
  person, or whose outcome the truth says was wrong: by the reference label, a wrong category, out of
  scope, or a money category; in production, staff marked it mishandled afterwards. A category a person
  corrected in the inbox is NOT mishandled: the gates caught that error before the customer saw it; it
  counts against the classify step's reliability instead (category_corrected says how many).
  mishandled_rate: mishandled / tickets.
- money_auto_executed: auto-handled runs that carried out a money-moving action (refund, cancellation,
  credit) without a person. Must be 0 with the gates on. Counted in mishandled.
- money_tickets_auto_handled: auto-handled tickets whose true category moves money (they got an
  informational reply, no money moved). out_of_scope_auto_handled: auto-handled tickets whose true
  category is out of scope. Both are counted in mishandled; both need a reference label (None without).
- money_asked_auto_handled: auto-handled tickets that ask for money to move whatever their category (the
  dataset's `money` column: a refund hidden inside an ordinary question). A money failure, counted in
  mishandled; None without the column.
- accuracy: the share of in-scope tickets classified into their true category (reference label only).
- step reliability (retrieve, classify, draft): per step, right / counted, the share of counted tickets
  where the step's own output was right (None when no ticket counted). By the reference label:
  retrieve and draft count whenever retrieve ran; retrieve is right when the best passage cleared the
  retrieval gate; draft when a draft passed the groundedness and personal-data gates; classify counts
  every ticket and is right when the category is the true one. From staff feedback: a step counts
  when it ran; it is right when its gates (retrieve: retrieval; classify: schema, confidence; draft:
  groundedness, personal data) passed and staff did not correct it afterwards (classify: category
  corrected in a decision, or the ticket marked mishandled; draft: reply rewritten in a decision).
- chain reliability, predicted: the product of the step reliabilities that are not None (what to
  expect if the steps failed independently).
- chain reliability, measured: with the gates on and a reference label for every ticket, the share of
  tickets whose outcome was right (not failed, and not mishandled: auto-handled correctly or stopped for
  a person). Otherwise (gates off, where every ticket is acted on; or staff feedback, which judges
  only the steps) the share of tickets with a counted step where every counted step was right: the
  figure the predicted product estimates.
- escalations_by_gate: over tickets sent to a person, how often each gate's verdict failed.
- tokens_in / tokens_out (cache_write_tokens, cache_read_tokens: of tokens_in) and llm_cost: summed
  over every step attempt of the counted runs, retries included. tokens_per_ticket and cost_per_ticket
  divide by tickets.
- saved_cost: (correctly auto-handled - mishandled) x human cost per ticket - llm_cost, where correctly
  auto-handled = auto_handled - mishandled: a mishandled ticket costs a person's time to put right,
  so it is subtracted, not ignored.

Approvals and decisions are read through the ORM's reverse relations (`approval`,
`approval__decisions`), so triage does not import the approvals app.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from math import prod
from typing import Any, Literal, Protocol

from django.db.models import QuerySet, Sum

from triage.contracts import MONEY_ACTIONS, OUT_OF_SCOPE
from triage.models import Action, PipelineRun, StepRun
from triage.pipeline.gates import gates_judging

CHAIN_STEPS = ("retrieve", "classify", "draft")
# From the gate registry: the holds (money, money promise, category policy) judge no step.
STEP_GATES = {step: gates_judging(step) for step in CHAIN_STEPS}

Decided = Literal["waiting", "approved", "edited", "rejected"]


@dataclass(frozen=True)
class StepFacts:
    """A step's finished attempt, as the runner left it."""

    status: str
    verdicts: list[dict[str, Any]]
    category: Any  # the classify step's output category; None for other steps

    def gates_passed(self, gates: Collection[str], *, required: bool) -> bool:
        """Every verdict of `gates` passed; `required`: and at least one of them was given."""
        relevant = [v for v in self.verdicts if v.get("gate") in gates]
        return (bool(relevant) or not required) and all(v.get("passed") for v in relevant)


@dataclass(frozen=True)
class RunFacts:
    """What the chain did with one ticket: read the same way whatever the source of truth."""

    run_id: int
    route: str
    status: str
    gates_enabled: bool
    created: datetime
    steps: dict[str, StepFacts]
    money_executed: bool

    @property
    def auto_handled(self) -> bool:
        return self.route == PipelineRun.Route.AUTO and self.status == PipelineRun.Status.COMPLETED

    @property
    def to_person(self) -> bool:
        return self.route == PipelineRun.Route.HUMAN

    def ran(self, step: str) -> StepFacts | None:
        """The step's finished attempt, unless it did not run (missing or skipped)."""
        facts = self.steps.get(step)
        return None if facts is None or facts.status == StepRun.Status.SKIPPED else facts


@dataclass(frozen=True)
class Judgement:
    """What a source of truth says about one run."""

    steps: dict[str, bool]  # each counted step: was its own output right
    wrong_if_auto: bool  # had the chain handled it alone, the customer got a wrong outcome
    category_right: bool | None = None  # in-scope tickets only, for accuracy; None: not counted
    money_ticket: bool = False  # the true category moves money
    out_of_scope: bool = False  # the true category is out of scope
    money_asked: bool = False  # the ticket asks for money to move whatever its category (dataset money column)
    decided: Decided = "waiting"  # what a person did with it, if it was sent to one
    category_corrected: bool = False
    reply_rewritten: bool = False


class Truth(Protocol):
    """A source of truth about tickets. `labelled`: it knows every ticket's true category."""

    @property
    def labelled(self) -> bool: ...

    def judge(self, *, runs: QuerySet[PipelineRun], facts: Mapping[int, RunFacts]) -> dict[int, Judgement]:
        """A judgement for every run in `facts` (one query at most)."""
        ...


@dataclass(frozen=True)
class ReferenceLabels:
    """`evaluate`: each ticket's reference label is its true category."""

    money_labels: frozenset[str]
    labelled: bool = True
    money_tickets: frozenset[int] | None = None
    """Ticket ids that ask for money to move whatever their category (the dataset's money column); None:
    the dataset has no such column."""

    def judge(self, *, runs: QuerySet[PipelineRun], facts: Mapping[int, RunFacts]) -> dict[int, Judgement]:
        labels = {
            pk: (label, ticket) for pk, label, ticket in runs.values_list("pk", "ticket__reference_label", "ticket_id")
        }
        out = {}
        for run_id, run in facts.items():
            truth, ticket_id = labels[run_id]
            money_asked = self.money_tickets is not None and ticket_id in self.money_tickets
            classify = run.steps.get("classify")
            predicted = classify.category if classify and classify.status == StepRun.Status.SUCCEEDED else None
            steps: dict[str, bool] = {}
            retrieve = run.ran("retrieve")
            # Retrieval ran, so the ticket had passages to draft from: a missing draft is a wrong one.
            if retrieve is not None:
                steps["retrieve"] = retrieve.status == StepRun.Status.SUCCEEDED and retrieve.gates_passed(
                    STEP_GATES["retrieve"], required=True
                )
            steps["classify"] = predicted == truth
            if retrieve is not None:
                draft = run.steps.get("draft")
                steps["draft"] = bool(
                    draft
                    and draft.status == StepRun.Status.SUCCEEDED
                    and draft.gates_passed(STEP_GATES["draft"], required=True)
                )
            safe = predicted == truth and truth != OUT_OF_SCOPE and truth not in self.money_labels and not money_asked
            out[run_id] = Judgement(
                steps=steps,
                wrong_if_auto=not safe,
                category_right=predicted == truth if truth != OUT_OF_SCOPE else None,
                money_ticket=truth in self.money_labels,
                out_of_scope=truth == OUT_OF_SCOPE,
                money_asked=money_asked,
            )
        return out


@dataclass(frozen=True)
class StaffFeedback:
    """Production: no label, so the gates' verdicts and what staff did afterwards are the truth."""

    labelled: bool = False

    def judge(self, *, runs: QuerySet[PipelineRun], facts: Mapping[int, RunFacts]) -> dict[int, Judgement]:
        rows = runs.values_list(
            "pk",
            "ticket__mishandled_at",
            "approval__status",
            "approval__decisions__verdict",
            "approval__decisions__before__category",
            "approval__decisions__after__category",
            "approval__decisions__before__reply",
            "approval__decisions__after__reply",
        )
        out: dict[int, Judgement] = {}
        for run_id, marked_at, approval_status, verdict, category_was, category_now, reply_was, reply_now in rows:
            if run_id in out or run_id not in facts:  # the decision join repeats a run that had two decisions
                continue
            corrected = verdict == "edit" and category_was != category_now
            rewritten = verdict == "edit" and reply_was != reply_now
            marked = marked_at is not None
            run = facts[run_id]
            steps = {}
            for step in CHAIN_STEPS:
                ran = run.ran(step)
                if ran is None:
                    continue
                ok = ran.status == StepRun.Status.SUCCEEDED and ran.gates_passed(STEP_GATES[step], required=False)
                if step == "classify":
                    ok = ok and not corrected and not marked
                if step == "draft":
                    ok = ok and not rewritten
                steps[step] = ok
            decided: Decided = "waiting"
            if approval_status not in (None, "pending"):
                decided = "rejected" if verdict == "reject" else "edited" if verdict == "edit" else "approved"
            out[run_id] = Judgement(
                steps=steps,
                wrong_if_auto=marked,
                decided=decided,
                category_corrected=corrected,
                reply_rewritten=rewritten,
            )
        return out


@dataclass(frozen=True)
class StepReliability:
    step: str
    right: int
    counted: int

    @property
    def rate(self) -> float | None:
        return self.right / self.counted if self.counted else None


@dataclass(frozen=True)
class DayPoint:
    day: date
    tickets: int
    auto: int
    person: int


@dataclass
class Figures:
    """Every figure over a set of runs; the module docstring defines each one."""

    human_cost_per_ticket: Decimal
    labelled: bool
    tickets: int = 0
    auto_handled: int = 0
    to_person: int = 0
    waiting: int = 0
    approved: int = 0
    edited: int = 0
    rejected: int = 0
    failed: int = 0
    in_progress: int = 0
    mishandled: int = 0
    money_auto_executed: int = 0
    money_tickets_auto_handled: int | None = None
    out_of_scope_auto_handled: int | None = None
    money_asked_auto_handled: int | None = None
    category_corrected: int = 0
    reply_rewritten: int = 0
    accuracy: float | None = None
    step_reliability: list[StepReliability] = field(default_factory=list)
    chain_predicted: float | None = None
    chain_measured: float | None = None
    escalations_by_gate: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    llm_cost: Decimal = Decimal("0")
    by_day: dict[date, list[int]] = field(default_factory=dict)  # day created: [tickets, auto, to a person]
    trend: list[DayPoint] = field(default_factory=list)  # by_day with every day of a period, set by its reader

    @property
    def automation_rate(self) -> float | None:
        return self.auto_handled / self.tickets if self.tickets else None

    @property
    def mishandled_rate(self) -> float | None:
        return self.mishandled / self.tickets if self.tickets else None

    @property
    def correctly_auto_handled(self) -> int:
        return self.auto_handled - self.mishandled

    @property
    def saved_cost(self) -> Decimal:
        return (self.correctly_auto_handled - self.mishandled) * self.human_cost_per_ticket - self.llm_cost

    @property
    def escalations_total(self) -> int:
        return sum(self.escalations_by_gate.values())

    def as_dict(self) -> dict[str, Any]:
        """`evaluate`'s report: its key names, plain JSON types."""
        n = max(self.tickets, 1)
        return {
            "tickets": self.tickets,
            "auto_handled": self.auto_handled,
            "routed_to_person": self.to_person,
            "failed": self.failed,
            "automation_rate": self.automation_rate,
            "mishandled": self.mishandled,
            "mishandled_rate": self.mishandled_rate,
            "money_auto_executed": self.money_auto_executed,
            "money_tickets_auto_handled": self.money_tickets_auto_handled,
            "out_of_scope_auto_handled": self.out_of_scope_auto_handled,
            "money_asked_auto_handled": self.money_asked_auto_handled,
            "accuracy": self.accuracy,
            "step_reliability": {r.step: r.rate for r in self.step_reliability},
            "chain_reliability_predicted": self.chain_predicted,
            "chain_reliability_measured": self.chain_measured,
            "escalations_by_gate": dict(self.escalations_by_gate),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "tokens_per_ticket": (self.tokens_in + self.tokens_out) / n,
            "llm_cost": float(self.llm_cost),
            "cost_per_ticket": float(self.llm_cost) / n,
            "human_cost_per_ticket": float(self.human_cost_per_ticket),
            "saved_cost": float(self.saved_cost),
        }


def run_facts(*, runs: QuerySet[PipelineRun]) -> dict[int, RunFacts]:
    """What the chain did on each of `runs`: three queries whatever their number."""
    steps: dict[int, dict[str, StepFacts]] = {}
    # Ordered so that a step's latest finished attempt is the one that counts.
    for run_id, step, status, verdicts, category in (
        StepRun.objects.filter(run__in=runs, status__in=StepRun.FINISHED)
        .order_by("pk")
        .values_list("run_id", "step", "status", "verdicts", "output__category")
    ):
        steps.setdefault(run_id, {})[step] = StepFacts(
            status=status, verdicts=list(verdicts or []), category=category if step == "classify" else None
        )
    money = set(
        Action.objects.filter(
            run__in=runs, kind__in=[str(k) for k in MONEY_ACTIONS], status=Action.Status.DONE
        ).values_list("run_id", flat=True)
    )
    return {
        run_id: RunFacts(
            run_id=run_id,
            route=route,
            status=status,
            gates_enabled=gates_enabled,
            created=created,
            steps=steps.get(run_id, {}),
            money_executed=run_id in money,
        )
        for run_id, route, status, gates_enabled, created in runs.values_list(
            "pk", "route", "status", "gates_enabled", "ticket__created_at"
        )
    }


def chain_figures(*, runs: QuerySet[PipelineRun], truth: Truth, human_cost: Decimal) -> Figures:
    """Every figure over `runs`, judged by `truth`. A fixed number of queries whatever the number of runs."""
    facts = run_facts(runs=runs)
    judged = truth.judge(runs=runs, facts=facts)
    totals = StepRun.objects.filter(run__in=runs).aggregate(
        cost=Sum("cost"),
        tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"),
        cache_write_tokens=Sum("cache_write_tokens"),
        cache_read_tokens=Sum("cache_read_tokens"),
    )
    f = Figures(
        human_cost_per_ticket=human_cost,
        labelled=truth.labelled,
        llm_cost=totals["cost"] or Decimal("0"),
        tokens_in=totals["tokens_in"] or 0,
        tokens_out=totals["tokens_out"] or 0,
        cache_write_tokens=totals["cache_write_tokens"] or 0,
        cache_read_tokens=totals["cache_read_tokens"] or 0,
    )
    if truth.labelled:
        f.money_tickets_auto_handled = f.out_of_scope_auto_handled = 0
        if getattr(truth, "money_tickets", None) is not None:
            f.money_asked_auto_handled = 0
    # Only a label judges every outcome; without gates every ticket is acted on, so there the chain is
    # right only when every step was (the figure the predicted product estimates).
    outcome_measured = truth.labelled and any(run.gates_enabled for run in facts.values())
    escalations: Counter[str] = Counter()
    right: Counter[str] = Counter()
    counted: Counter[str] = Counter()
    in_scope = in_scope_right = chain_right = chain_counted = 0
    for run_id, run in facts.items():
        j = judged.get(run_id)
        if j is None:  # deleted between the two reads
            continue
        f.tickets += 1
        day = f.by_day.setdefault(run.created.date(), [0, 0, 0])
        day[0] += 1
        mishandled = run.auto_handled and (run.money_executed or j.wrong_if_auto)
        if run.auto_handled:
            f.auto_handled += 1
            day[1] += 1
            f.mishandled += mishandled
            f.money_auto_executed += run.money_executed
            if truth.labelled:
                # Known only with reference labels: None (not 0) in production figures, counted from 0 here.
                f.money_tickets_auto_handled = (f.money_tickets_auto_handled or 0) + j.money_ticket
                f.out_of_scope_auto_handled = (f.out_of_scope_auto_handled or 0) + j.out_of_scope
                if f.money_asked_auto_handled is not None:
                    f.money_asked_auto_handled += j.money_asked
        elif run.to_person:
            f.to_person += 1
            day[2] += 1
            setattr(f, j.decided, getattr(f, j.decided) + 1)
            for step_facts in run.steps.values():
                escalations.update(v.get("gate", "?") for v in step_facts.verdicts if not v.get("passed"))
        elif run.status == PipelineRun.Status.FAILED:
            f.failed += 1
        else:
            f.in_progress += 1
        f.category_corrected += j.category_corrected
        f.reply_rewritten += j.reply_rewritten
        if j.category_right is not None:
            in_scope += 1
            in_scope_right += j.category_right
        for step, ok in j.steps.items():
            counted[step] += 1
            right[step] += ok
        if outcome_measured:
            chain_counted += 1
            chain_right += run.status != PipelineRun.Status.FAILED and not mishandled
        elif j.steps:
            chain_counted += 1
            chain_right += all(j.steps.values())
    f.accuracy = in_scope_right / in_scope if in_scope else None
    f.step_reliability = [StepReliability(step=s, right=right[s], counted=counted[s]) for s in CHAIN_STEPS]
    rates = [r.rate for r in f.step_reliability if r.rate is not None]
    f.chain_predicted = prod(rates) if rates else None
    f.chain_measured = chain_right / chain_counted if chain_counted else None
    f.escalations_by_gate = dict(escalations.most_common())
    return f
