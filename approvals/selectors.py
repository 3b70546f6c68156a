"""Inbox reads: the pending approvals a person works through, with the evidence for each one.

The inbox is the hottest page of the staff app, so every read here is a fixed number of queries
whatever the number of pending items: one page of approvals (with ticket and run), one prefetch of
the evidence steps, one aggregate for every filter count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, CharField, Count, Prefetch, Q, QuerySet, Value, When

from approvals.models import ApprovalRequest, Decision
from triage.contracts import OUT_OF_SCOPE, ActionKind, stored_action_moves_money
from triage.models import Category, PipelineRun, StepRun
from triage.pipeline.gates import REGISTRY as GATE_REGISTRY

# The inbox's gate filter: every gate and stop reason in the registry, in its order, with its label.
GATES = tuple(g.name for g in GATE_REGISTRY)
GATE_NAMES = {g.name: g.label for g in GATE_REGISTRY}
AGES = {"hour": "Under 1 hour", "day": "1–24 hours", "older": "Over a day"}
SORTS = {"urgent": "Most urgent", "newest": "Newest", "oldest": "Oldest"}


@dataclass(frozen=True)
class InboxFilters:
    category: str = ""
    gate: str = ""
    money: str = ""  # "yes", "no" or "" for either
    age: str = ""  # a key of AGES or ""
    sort: str = "urgent"

    def active(self) -> bool:
        return bool(self.category or self.gate or self.money or self.age)


@dataclass(frozen=True)
class FilterOption:
    value: str
    label: str
    count: int
    selected: bool


@dataclass(frozen=True)
class InboxCounts:
    """How many pending items each filter option would show, given the other filters in force."""

    categories: list[FilterOption]
    gates: list[FilterOption]
    money: list[FilterOption]
    ages: list[FilterOption]
    pending_total: int
    matching: int = 0  # pending items under every filter in force: the paginator's count


@dataclass
class InboxItem:
    approval: ApprovalRequest
    priority: str
    failed: list[dict[str, Any]]
    passed: list[dict[str, Any]]
    passages: list[dict[str, Any]]
    passages_cited: bool
    money_actions: list[dict[str, Any]] = field(default_factory=list)
    decision: Decision | None = None

    @property
    def ticket(self) -> Any:
        return self.approval.ticket

    @property
    def pending(self) -> bool:
        return self.approval.status == ApprovalRequest.Status.PENDING

    @property
    def outcome(self) -> str:
        """What became of a decision, from its run: the inbox must not show "Approved" and go quiet while
        the run that carries it out waits for a queue that is down, or has failed."""
        if self.pending:
            return ""
        status = self.approval.run.status
        if status == PipelineRun.Status.COMPLETED:
            return "carried out"
        if status == PipelineRun.Status.FAILED:
            return "failed"
        return "carrying out"


def _age_q(age: str, now: datetime) -> Q:
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    if age == "hour":
        return Q(created_at__gte=hour)
    if age == "day":
        return Q(created_at__lt=hour, created_at__gte=day)
    if age == "older":
        return Q(created_at__lt=day)
    return Q()


def _filter_q(filters: InboxFilters, now: datetime, *, skip: str = "") -> Q:
    q = Q()
    if filters.category and skip != "category":
        q &= Q(proposed_category=filters.category)
    if filters.gate and skip != "gate":
        q &= Q(failed_gates__contains=[filters.gate])
    if filters.money and skip != "money":
        q &= Q(money=filters.money == "yes")
    if filters.age and skip != "age":
        q &= _age_q(filters.age, now)
    return q


def _evidence() -> QuerySet[StepRun]:
    return StepRun.objects.filter(step__in=("retrieve", "draft"), status=StepRun.Status.SUCCEEDED).only(
        "id", "run_id", "step", "output"
    )


def _ordered(qs: QuerySet[ApprovalRequest], sort: str) -> QuerySet[ApprovalRequest]:
    if sort == "newest":
        return qs.order_by("-created_at", "-pk")
    if sort == "oldest":
        return qs.order_by("created_at", "pk")
    return qs.order_by("priority_rank", "-created_at", "-pk")


def approval_inbox(*, filters: InboxFilters, now: datetime) -> QuerySet[ApprovalRequest]:
    """Pending approvals matching `filters`, most urgent (or newest, or oldest) first.

    The evidence the card shows (retrieved passages, draft citations) comes from the run's
    succeeded retrieve and draft steps, prefetched in one query for the whole page.
    """
    qs = (
        ApprovalRequest.objects.filter(Q(status=ApprovalRequest.Status.PENDING) & _filter_q(filters, now))
        .select_related("ticket", "run")
        .defer("run__resolution", "run__error", "ticket__tags")
        .prefetch_related(Prefetch("run__steps", queryset=_evidence(), to_attr="evidence_steps"))
    )
    return _ordered(qs, filters.sort)


def approval_inbox_ids(*, filters: InboxFilters, now: datetime) -> QuerySet[ApprovalRequest, int]:
    """The same list as ids only: deep pages skip over narrow index entries, not joined rows."""
    qs = ApprovalRequest.objects.filter(Q(status=ApprovalRequest.Status.PENDING) & _filter_q(filters, now))
    return _ordered(qs, filters.sort).values_list("pk", flat=True)


def approval_rows(*, ids: list[int]) -> list[ApprovalRequest]:
    """The approvals `ids` (one page), in that order, with what their cards show."""
    rows = (
        ApprovalRequest.objects.filter(pk__in=ids)
        .select_related("ticket", "run")
        .defer("run__resolution", "run__error", "ticket__tags")
        .prefetch_related(Prefetch("run__steps", queryset=_evidence(), to_attr="evidence_steps"))
    )
    by_id = {r.pk: r for r in rows}
    return [by_id[i] for i in ids if i in by_id]


def inbox_counts(*, filters: InboxFilters, now: datetime, categories: list[Category]) -> InboxCounts:
    """Faceted counts: each option counts the pending items it would show under the *other* filters.

    One grouped query (category x money x age bucket x failed gates) whose few hundred rows are
    then counted here, so the cost does not grow with the number of options.
    """
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    age = Case(
        When(created_at__gte=hour, then=Value("hour")),
        When(created_at__gte=day, then=Value("day")),
        default=Value("older"),
        output_field=CharField(),
    )
    groups = list(
        ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING)
        .annotate(age_bucket=age)
        .values_list("proposed_category", "money", "age_bucket", "failed_gates")
        .annotate(n=Count("pk"))
        .order_by()
    )

    def passes(row: tuple[str, bool, str, list[str], int], skip: str) -> bool:
        category, money, bucket, gates, _ = row
        return (
            (skip == "category" or not filters.category or category == filters.category)
            and (skip == "money" or not filters.money or money == (filters.money == "yes"))
            and (skip == "age" or not filters.age or bucket == filters.age)
            and (skip == "gate" or not filters.gate or filters.gate in (gates or []))
        )

    tallies: dict[str, Counter[str]] = {facet: Counter() for facet in ("category", "gate", "money", "age")}
    matching = 0
    for row in groups:
        category, money, bucket, gates, n = row
        if passes(row, "category"):
            tallies["category"][category] += n
        if passes(row, "money"):
            tallies["money"]["yes" if money else "no"] += n
        if passes(row, "age"):
            tallies["age"][bucket] += n
        if passes(row, "gate"):
            for gate in set(gates or []):
                tallies["gate"][gate] += n
        if passes(row, ""):
            matching += n
    names = {c.label: (c.name or c.label) for c in categories} | {OUT_OF_SCOPE: "Out of scope"}
    values = {
        "category": list(names),
        "gate": list(GATES),
        "money": ["yes", "no"],
        "age": list(AGES),
    }
    labels = {"category": names, "gate": GATE_NAMES, "money": {"yes": "Moves money", "no": "No money"}, "age": AGES}
    grouped: dict[str, list[FilterOption]] = {}
    for facet, options in values.items():
        grouped[facet] = [
            FilterOption(
                value=v, label=labels[facet][v], count=tallies[facet][v], selected=getattr(filters, facet) == v
            )
            for v in options
            if tallies[facet][v] or getattr(filters, facet) == v or facet in ("money", "age")
        ]
    grouped["category"].sort(key=lambda o: (-o.count, o.label))
    return InboxCounts(
        categories=grouped["category"],
        gates=grouped["gate"],
        money=grouped["money"],
        ages=grouped["age"],
        pending_total=sum(row[-1] for row in groups),
        matching=matching,
    )


def inbox_items(*, approvals: list[ApprovalRequest]) -> list[InboxItem]:
    """What each card shows, built from rows `approval_inbox` already fetched (no further queries)."""
    return [_item(approval) for approval in approvals]


def _item(approval: ApprovalRequest) -> InboxItem:
    steps = {s.step: s for s in getattr(approval.run, "evidence_steps", [])}
    passages = list(((steps["retrieve"].output or {}).get("passages") or []) if "retrieve" in steps else [])
    citations = set(((steps["draft"].output or {}).get("citations") or []) if "draft" in steps else [])
    cited = [p for p in passages if p.get("chunk_id") in citations]
    priority = (
        next((a.get("note") for a in approval.proposed_actions if a.get("kind") == ActionKind.SET_PRIORITY), "")
        or "normal"
    )
    return InboxItem(
        approval=approval,
        priority=priority,
        failed=[v for v in approval.verdicts if not v.get("passed")],
        passed=[v for v in approval.verdicts if v.get("passed")],
        passages=cited or passages,
        passages_cited=bool(cited),
        money_actions=[a for a in approval.proposed_actions if stored_action_moves_money(a)],
    )


def inbox_item_get(*, approval_id: int) -> InboxItem:
    """One card, pending or decided (with its decision), for the item page and htmx swaps."""
    approval = (
        ApprovalRequest.objects.select_related("ticket", "run")
        .prefetch_related(Prefetch("run__steps", queryset=_evidence(), to_attr="evidence_steps"))
        .get(pk=approval_id)
    )
    item = _item(approval)
    if not item.pending:
        item.decision = approval.decisions.select_related("actor").first()
    return item


def pending_count() -> int:
    return ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING).count()
