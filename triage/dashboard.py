"""Reads for the staff app's ticket trace and reports dashboard, plus the geometry of its charts.

The dashboard's figures come from production data, so there is no reference label to check
against: "right" is judged from what the gates said and what staff did afterwards.

- tickets_in: tickets created in the period (their gated runs; `evaluate`'s ungated runs are left out).
- automation_rate: auto-handled / tickets in.
- mishandled_rate: (auto-handled tickets staff later marked as mishandled + approvals where staff
  changed the category) / tickets in. Both are the chain being wrong; the second was caught in time.
- step reliability: per step, the share of runs where the step's output was accepted — retrieve:
  the best passage cleared the retrieval gate; classify: the schema and confidence gates passed and
  staff neither changed the category nor marked the ticket mishandled; draft: the groundedness and
  personal-data gates passed and staff did not rewrite the reply. A step that did not run is not counted.
- chain predicted: the product of those rates (what you would expect if the steps failed
  independently); chain measured: the share of runs where every step that ran was right.
- saved_cost: (correctly auto-handled - mishandled) x human cost per ticket - model spend, as in
  `triage.reports`: a mishandled ticket costs a person's time to put right.

Approvals and decisions are read through the ORM's reverse relations (`approval`,
`approval__decisions`), so this module does not import the approvals app.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from math import prod
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, Sum

from triage.models import Action, PipelineRun, StepRun, Ticket
from triage.selectors import gate_policy_current

CHAIN_STEPS = ("retrieve", "classify", "draft")
STEP_GATES = {"retrieve": {"retrieval"}, "classify": {"schema", "confidence"}, "draft": {"groundedness", "personal_data"}}


# --- the ticket trace ----------------------------------------------------------------------------


@dataclass
class StepView:
    step_run: StepRun
    verdicts: list[dict[str, Any]]
    routing: list[dict[str, Any]]
    output: dict[str, Any]
    output_json: str

    @property
    def failed_verdicts(self) -> list[dict[str, Any]]:
        return [v for v in self.verdicts if not v.get("passed")]


@dataclass
class RunTrace:
    run: PipelineRun
    steps: list[StepView]
    actions: list[Action]
    approval: Any | None
    decisions: list[Any]
    latency_ms: float
    tokens: int
    cost: Decimal


@dataclass
class TicketTrace:
    ticket: Ticket
    runs: list[RunTrace]

    @property
    def can_mark_mishandled(self) -> bool:
        return self.ticket.status == Ticket.Status.AUTO_HANDLED and self.ticket.mishandled_at is None


def ticket_trace(*, ticket_id: int) -> TicketTrace:
    """The ticket with every run as a timeline of step attempts, its actions and the human decision."""
    ticket = Ticket.objects.select_related("mishandled_by").get(pk=ticket_id)
    runs = (
        PipelineRun.objects.filter(ticket=ticket)
        .order_by("created_at", "pk")
        .prefetch_related(
            Prefetch("steps", queryset=StepRun.objects.order_by("started_at", "pk")),
            Prefetch("actions", queryset=Action.objects.order_by("pk")),
            "approval__decisions__actor",
        )
    )
    traces = []
    for run in runs:
        views = []
        for s in run.steps.all():
            output = s.output if isinstance(s.output, dict) else {}
            views.append(StepView(
                step_run=s,
                verdicts=list(s.verdicts or []),
                routing=list(output.get("routing") or []) if s.step == "classify" else [],
                output=output,
                output_json=json.dumps(s.output, indent=2, sort_keys=True, ensure_ascii=False, default=str),
            ))
        approval = getattr(run, "approval", None)
        traces.append(RunTrace(
            run=run, steps=views, actions=list(run.actions.all()), approval=approval,
            decisions=list(approval.decisions.all()) if approval is not None else [],
            latency_ms=sum(v.step_run.latency_ms for v in views),
            tokens=sum(v.step_run.tokens_in + v.step_run.tokens_out for v in views),
            cost=sum((v.step_run.cost for v in views), Decimal("0")),
        ))
    return TicketTrace(ticket=ticket, runs=traces)


# --- the reports dashboard -----------------------------------------------------------------------


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
class DashboardFigures:
    start: datetime | None
    end: datetime
    tickets_in: int = 0
    auto_handled: int = 0
    to_person: int = 0
    approved: int = 0
    edited: int = 0
    rejected: int = 0
    waiting: int = 0
    failed: int = 0
    in_progress: int = 0
    mishandled_marked: int = 0
    category_corrected: int = 0
    step_reliability: list[StepReliability] = field(default_factory=list)
    chain_predicted: float | None = None
    chain_measured: float | None = None
    escalations_by_gate: list[tuple[str, int]] = field(default_factory=list)
    llm_cost: Decimal = Decimal("0")
    tokens_in: int = 0
    tokens_out: int = 0
    human_cost_per_ticket: Decimal = Decimal("0")
    trend: list[DayPoint] = field(default_factory=list)

    @property
    def automation_rate(self) -> float | None:
        return self.auto_handled / self.tickets_in if self.tickets_in else None

    @property
    def mishandled(self) -> int:
        return self.mishandled_marked + self.category_corrected

    @property
    def mishandled_rate(self) -> float | None:
        return self.mishandled / self.tickets_in if self.tickets_in else None

    @property
    def saved_cost(self) -> Decimal:
        correct_auto = self.auto_handled - self.mishandled_marked
        return (correct_auto - self.mishandled_marked) * self.human_cost_per_ticket - self.llm_cost

    @property
    def escalations_total(self) -> int:
        return sum(n for _, n in self.escalations_by_gate)


def dashboard_figures(*, start: datetime | None, end: datetime) -> DashboardFigures:
    """Every figure of the dashboard for tickets created in [start, end) (start None: all time).

    A fixed number of queries whatever the period.
    """
    policy = gate_policy_current()
    f = DashboardFigures(
        start=start, end=end,
        human_cost_per_ticket=policy.human_cost_per_ticket or settings.TRIAGE_HUMAN_COST_PER_TICKET,
    )
    runs = PipelineRun.objects.filter(gates_enabled=True, ticket__created_at__lt=end)
    if start is not None:
        runs = runs.filter(ticket__created_at__gte=start)
    rows = list(runs.values_list(
        "pk", "route", "status", "ticket__created_at", "ticket__mishandled_at", "approval__status",
        "approval__failed_gates", "approval__decisions__verdict", "approval__decisions__before__category",
        "approval__decisions__after__category", "approval__decisions__before__reply",
        "approval__decisions__after__reply",
    ))
    totals = StepRun.objects.filter(run__in=runs).aggregate(cost=Sum("cost"), tokens_in=Sum("tokens_in"),
                                                            tokens_out=Sum("tokens_out"))
    f.llm_cost = totals["cost"] or Decimal("0")
    f.tokens_in, f.tokens_out = totals["tokens_in"] or 0, totals["tokens_out"] or 0
    steps: dict[int, dict[str, tuple[str, list[dict[str, Any]]]]] = {}
    for run_id, step, status, verdicts in StepRun.objects.filter(
        run__in=runs, step__in=CHAIN_STEPS, status__in=StepRun.FINISHED
    ).values_list("run_id", "step", "status", "verdicts"):
        steps.setdefault(run_id, {})[step] = (status, verdicts or [])

    seen: set[int] = set()
    gates: Counter[str] = Counter()
    days: dict[date, list[int]] = {}
    right: Counter[str] = Counter()
    counted: Counter[str] = Counter()
    chain_right = chain_counted = 0
    for (run_id, route, status, created, mishandled_at, approval_status, failed_gates, verdict, before_category,
         after_category, before_reply, after_reply) in rows:
        if run_id in seen:  # a decision join can only repeat a run if an approval had two decisions
            continue
        seen.add(run_id)
        f.tickets_in += 1
        day = days.setdefault(created.date(), [0, 0, 0])
        day[0] += 1
        auto = route == PipelineRun.Route.AUTO and status == PipelineRun.Status.COMPLETED
        corrected = verdict == "edit" and before_category != after_category
        reply_rewritten = verdict == "edit" and before_reply != after_reply
        if auto:
            f.auto_handled += 1
            day[1] += 1
            f.mishandled_marked += mishandled_at is not None
        elif approval_status is not None:
            f.to_person += 1
            day[2] += 1
            gates.update(failed_gates or [])
            if approval_status == "pending":
                f.waiting += 1
            elif verdict == "reject":
                f.rejected += 1
            elif verdict == "edit":
                f.edited += 1
            else:
                f.approved += 1
        elif status == PipelineRun.Status.FAILED:
            f.failed += 1
        else:
            f.in_progress += 1
        f.category_corrected += corrected
        ran = steps.get(run_id, {})
        judged = {}
        for step in CHAIN_STEPS:
            if step not in ran or ran[step][0] == StepRun.Status.SKIPPED:
                continue
            step_status, verdicts = ran[step]
            ok = step_status == StepRun.Status.SUCCEEDED and all(
                v.get("passed") for v in verdicts if v.get("gate") in STEP_GATES[step]
            )
            if step == "classify":
                ok = ok and not corrected and mishandled_at is None
            if step == "draft":
                ok = ok and not reply_rewritten
            judged[step] = ok
            counted[step] += 1
            right[step] += ok
        if judged:
            chain_counted += 1
            chain_right += all(judged.values())
    f.step_reliability = [StepReliability(step=s, right=right[s], counted=counted[s]) for s in CHAIN_STEPS]
    rates = [r.rate for r in f.step_reliability if r.rate is not None]
    f.chain_predicted = prod(rates) if rates else None
    f.chain_measured = chain_right / chain_counted if chain_counted else None
    f.escalations_by_gate = gates.most_common()
    f.trend = _days(start, end, days)
    return f


def _days(start: datetime | None, end: datetime, days: dict[date, list[int]]) -> list[DayPoint]:
    last = (end - timedelta(microseconds=1)).date()
    # All time starts at the first ticket.
    first = start.date() if start is not None else min(days, default=last)
    out = []
    day = first
    while day <= last:
        tickets, auto, person = days.get(day, [0, 0, 0])
        out.append(DayPoint(day=day, tickets=tickets, auto=auto, person=person))
        day += timedelta(days=1)
    return out


# --- chart geometry (rendered as inline SVG by the template) --------------------------------------


@dataclass(frozen=True)
class Line:
    name: str
    css: str
    points: str
    dots: list[tuple[float, float, int, str]]


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    left: int
    bottom: int
    top: int
    right: int
    lines: list[Line]
    y_ticks: list[tuple[float, int]]
    x_labels: list[tuple[float, str]]


def line_chart(*, trend: list[DayPoint], width: int = 1200, height: int = 240) -> LineChart:
    """Tickets in, auto-handled and sent to a person per day, as SVG polylines."""
    left, right, top, bottom = 40, 30, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([max(p.tickets, p.auto, p.person) for p in trend] + [1])
    step = _nice_step(peak)
    y_max = step * -(-peak // step)
    n = len(trend)

    def x(i: int) -> float:
        return round(left + (plot_w / 2 if n == 1 else plot_w * i / (n - 1)), 1)

    def y(v: int) -> float:
        return round(top + plot_h - plot_h * v / y_max, 1)

    lines = []
    for name, css, attr in (("Tickets in", "line-in", "tickets"), ("Auto-handled", "line-auto", "auto"),
                            ("Sent to a person", "line-person", "person")):
        coords = [(x(i), y(getattr(p, attr)), getattr(p, attr), p.day.isoformat()) for i, p in enumerate(trend)]
        lines.append(Line(name=name, css=css, points=" ".join(f"{cx},{cy}" for cx, cy, _, _ in coords),
                          dots=coords if n <= 62 else []))
    y_ticks = [(y(v), v) for v in range(0, y_max + 1, step)]
    every = max(1, -(-n // 8))
    # The last day is always labelled; a regular label too close before it is dropped.
    x_labels = [(x(i), p.day.strftime("%d %b")) for i, p in enumerate(trend)
                if (i % every == 0 and n - 1 - i >= max(every // 2, 1)) or i == n - 1]
    return LineChart(width=width, height=height, left=left, bottom=height - bottom, top=top, right=width - right,
                     lines=lines, y_ticks=y_ticks, x_labels=x_labels)


def _nice_step(peak: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if peak / step <= 5:
            return step
    return 10 ** len(str(peak))


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    width: int
    height: int
    label_width: int
    span: int


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    width: float
    y: float
    text: str
    css: str = ""


def bar_chart(*, items: list[tuple[str, float | None, str, str]], width: int = 440, label_width: int = 150,
              row: int = 30) -> BarChart:
    """Horizontal bars for shares in 0..1: (label, value, text beside the bar, css class)."""
    span = width - label_width - 90  # room for the text after the longest bar
    bars = [
        Bar(label=label, value=value, width=round(span * (value or 0.0), 1), y=i * row, text=text, css=css)
        for i, (label, value, text, css) in enumerate(items)
    ]
    return BarChart(bars=bars, width=width, height=max(len(items), 1) * row, label_width=label_width, span=span)


def funnel_chart(*, figures: DashboardFigures, width: int = 440) -> BarChart:
    """Intake, then where every ticket went: auto-handled, approved, edited, rejected, still waiting."""
    total = figures.tickets_in or 1
    stages = [
        ("Tickets in", figures.tickets_in, "bar-in"),
        ("Auto-handled", figures.auto_handled, "bar-auto"),
        ("Approved", figures.approved, "bar-approved"),
        ("Edited, then approved", figures.edited, "bar-edited"),
        ("Rejected", figures.rejected, "bar-rejected"),
        ("Waiting for a person", figures.waiting, "bar-waiting"),
    ]
    if figures.failed:
        stages.append(("Failed", figures.failed, "bar-rejected"))
    return bar_chart(
        items=[(label, n / total, f"{n} ({n / total:.0%})", css) for label, n, css in stages], width=width,
    )
