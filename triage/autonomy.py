"""Calibrated autonomy, read side: the labelled tickets thresholds are chosen on, the thresholds in force,
the risk-coverage curve, the what-if of a proposed change, and the target against what was measured.

The statistics live in `triage.risk` (no Django); this module feeds it from the database.

**Calibration data** (never trained on by the classifier in force):
- the out-of-fold predictions on the examples, kept on the `TrainedClassifier` row at training time,
  with the unseen-category examples the classifier adds to them, all wrong (out of scope inside the
  domain counts as a loss; `triage.classifier`, `OUT_OF_SCOPE_SHARE`), standing for the share of requests
  no category covers that the admin states (`GatePolicy.out_of_scope_share`), or the one the inbox
  measures when that is higher (`calibration_set`);
- tickets people labelled in the inbox since that classifier was trained, when its local answer was
  the one gated: approved as proposed (right), category edited (right when unchanged), and auto-handled
  tickets staff marked mishandled (wrong); a category edited to out of scope is wrong too. Rejected
  tickets say nothing about the category and are left out (they count only towards the measured
  out-of-scope share), and so are auto-handled tickets nobody marked (no one said they were right). That last
  rule counts the marked mistakes but not the silent successes among the confident tickets, so it can
  only make the thresholds stricter, never looser.

Tickets predicted in a money-moving category, or out of scope, are left out: they always wait for a
person, so no threshold decides them.

Approvals and decisions are read through the ORM's reverse relations, so triage does not import the
approvals app (as `triage.metrics` does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy
from django.db.models import QuerySet
from django.utils import timezone

from triage.contracts import OUT_OF_SCOPE
from triage.models import Category, GatePolicy, PipelineRun, StepPolicy, StepRun, TargetChange, TrainedClassifier
from triage.risk import CurvePoint, Outcome, ThresholdChoice, choice_apply, risk_coverage_curve, thresholds_choose
from triage.selectors import gate_policy_current

#: Targets the risk-coverage curve is drawn at.
CURVE_TARGETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05)
#: Inbox labels needed before the share of them people put out of scope replaces the assumed share.
MIN_INBOX_FOR_SHARE = 100
#: Thresholds are chosen again at most this often while inbox labels arrive (seconds); a new classifier
#: or a changed policy takes effect at once.
CHOICE_TTL_SECONDS = 300.0


@dataclass(frozen=True)
class CalibrationSet:
    """Labelled tickets with the classifier's confidence and predicted category, ready for `triage.risk`."""

    scores: list[float]
    correct: list[bool]
    categories: list[str]
    from_examples: int
    from_inbox: int
    out_of_scope_share: float | None = None
    """The share of requests no category covers that the example part stands for (see `calibration_set`);
    None: the classifier mixed in no unseen-category examples."""

    def __len__(self) -> int:
        return len(self.scores)

    def thresholds(self, *, target: float, confidence: float, min_per_category: int) -> ThresholdChoice:
        """The thresholds this data certifies at `target` with `confidence` (`triage.risk.thresholds_choose`)."""
        return thresholds_choose(
            scores=self.scores,
            correct=self.correct,
            categories=self.categories,
            target=target,
            confidence=confidence,
            min_per_category=min_per_category,
        )

    def curve(self, *, confidence: float, min_per_category: int) -> list[CurvePoint]:
        """The risk-coverage curve this data certifies: automation bought at each of `CURVE_TARGETS`."""
        return risk_coverage_curve(
            scores=self.scores,
            correct=self.correct,
            categories=self.categories,
            targets=CURVE_TARGETS,
            confidence=confidence,
            min_per_category=min_per_category,
        )


def calibration_set(
    *,
    classifier: TrainedClassifier,
    money_labels: frozenset[str] | None = None,
    exclude_tickets: frozenset[int] = frozenset(),
    out_of_scope_share: float | None = None,
) -> CalibrationSet:
    """The calibration data for `classifier` (see the module docstring). `exclude_tickets`: inbox labels
    of these tickets are left out (retrain judges models on them, so they must not choose the thresholds).
    `out_of_scope_share`: the share of requests no category covers to calibrate for (default: the gate
    policy's, `GatePolicy.out_of_scope_share`).

    **The out-of-scope share is stated by the admin, and measured.** The example part mixes unseen-category
    examples at the share the classifier was fitted with (`triage.classifier.OUT_OF_SCOPE_SHARE`); the
    share calibrated for is the admin's (the gate policy's), or, once people have decided at least
    `MIN_INBOX_FOR_SHARE` tickets, the share of them they rejected or put out of scope, when that is
    higher: the traffic's own figure. A higher share than the fitted one leaves in-scope examples out, a
    lower one leaves unseen-category examples out (each a seeded random subset), until the unseen-category
    examples sampled stand for that share of the example part; so the thresholds are chosen for the
    traffic the admin describes, or worse. The measured share never lowers the admin's: the labelled
    tickets are the ones sent to people, where out-of-scope requests gather, so their share overstates the
    traffic's rather than understating it."""
    if money_labels is None:
        money_labels = frozenset(Category.objects.filter(money=True).values_list("label", flat=True))
    if out_of_scope_share is None:
        out_of_scope_share = gate_policy_current().out_of_scope_share
    inbox = [row for row in _inbox_labels(classifier) if row[0] not in exclude_tickets]
    measured = sum(1 for row in inbox if row[4]) / len(inbox) if len(inbox) >= MIN_INBOX_FOR_SHARE else 0.0
    examples = calibration_examples(
        classifier.calibration or {}, share=max(out_of_scope_share, measured), money_labels=money_labels
    )
    labelled = [
        (score, label, category)
        for _, score, label, category, _ in inbox
        if label is not None and category not in money_labels and category != OUT_OF_SCOPE
    ]
    return CalibrationSet(
        scores=examples.scores + [score for score, _, _ in labelled],
        correct=examples.correct + [label for _, label, _ in labelled],
        categories=examples.categories + [category for _, _, category in labelled],
        from_examples=examples.from_examples,
        from_inbox=len(labelled),
        out_of_scope_share=examples.out_of_scope_share,
    )


def calibration_examples(
    stored: Mapping[str, Any], *, share: float, money_labels: frozenset[str] | set[str]
) -> CalibrationSet:
    """The example part of a classifier's calibration data (`TrainedClassifier.calibration`, as
    `IntentClassifier.fit` keeps it), standing for traffic with `share` of requests no category covers, with
    tickets predicted in a money-moving category left out (they always wait for a person). Its
    `out_of_scope_share` is None when the classifier mixed in no unseen-category examples: then every row is
    an out-of-fold prediction, kept as it is."""
    rows = list(zip(stored.get("scores", []), stored.get("correct", []), stored.get("categories", []), strict=True))
    unseen_sampled = int(stored.get("out_of_scope_sampled", 0))
    in_scope = len(rows) - int(stored.get("out_of_scope_in_calibration", 0))
    stands_for: float | None = None
    if unseen_sampled and in_scope > 0:
        rows = _rows_at_share(rows, in_scope=in_scope, unseen_sampled=unseen_sampled, share=share)
        stands_for = share
    kept = [
        (float(score), bool(right), str(category)) for score, right, category in rows if category not in money_labels
    ]
    return CalibrationSet(
        scores=[score for score, _, _ in kept],
        correct=[right for _, right, _ in kept],
        categories=[category for _, _, category in kept],
        from_examples=len(kept),
        from_inbox=0,
        out_of_scope_share=stands_for,
    )


def _rows_at_share(
    rows: list[tuple[float, bool, str]], *, in_scope: int, unseen_sampled: int, share: float
) -> list[tuple[float, bool, str]]:
    """The example part (`in_scope` in-scope rows, then the unseen-category rows the similarity filter let
    through, of `unseen_sampled` drawn) thinned so that the unseen-category examples stand for `share` of it.

    The fit drew its sample as this does (`round(in_scope * share / (1 - share))` for its share), so at the
    fitted share nothing is left out. Above it, in-scope rows are left out, until the sample is `share` of
    what is kept. Below it, the sample is thinned as a whole: the rows that passed the filter are kept in
    the proportion the sample is (those it caught go to a person at any threshold). A seeded subset each
    time, so the same data gives the same thresholds."""
    if share >= 1.0:  # every ticket the inbox saw was rejected: no in-scope row stands
        return rows[in_scope:]
    wanted = in_scope * share / (1.0 - share)  # unseen-category examples sampled that make `share`
    if round(wanted) == unseen_sampled:
        return rows
    rng = numpy.random.default_rng(0)
    if wanted > unseen_sampled:
        keep = min(in_scope, round(unseen_sampled * (1.0 - share) / share))
        kept = numpy.sort(rng.choice(in_scope, size=keep, replace=False))
        return [rows[int(i)] for i in kept] + rows[in_scope:]
    passed = len(rows) - in_scope
    keep = min(passed, round(passed * wanted / unseen_sampled))
    kept = numpy.sort(rng.choice(passed, size=keep, replace=False))
    return rows[:in_scope] + [rows[in_scope + int(i)] for i in kept]


def _inbox_labels(classifier: TrainedClassifier) -> list[tuple[int, float, bool | None, str, bool]]:
    """(ticket, confidence, right, predicted category, out of scope) per ticket people decided: `right`
    None for a rejection (no label); `out of scope` for a rejection or a category edited to out of scope
    (a rejection may have other reasons: counting them all overstates the share, the safe side)."""
    rows = (
        StepRun.objects.filter(
            step=StepPolicy.Step.CLASSIFY,
            status=StepRun.Status.SUCCEEDED,
            run__gates_enabled=True,
            run__created_at__gte=classifier.created_at,
            output__model=classifier.model,
        )
        .order_by("run__ticket_id", "-run__created_at")
        .values_list(
            "run__ticket_id",
            "output__category",
            "output__confidence",
            "run__route",
            "run__status",
            "run__ticket__mishandled_at",
            "run__approval__decisions__verdict",
            "run__approval__decisions__after__category",
        )
    )
    out: list[tuple[int, float, bool | None, str, bool]] = []
    seen: set[int] = set()
    for ticket_id, category, confidence, route, status, marked, verdict, category_after in rows:
        if ticket_id in seen or not isinstance(category, str) or not isinstance(confidence, int | float):
            continue
        right: bool | None
        if verdict == "approve":
            right = True
        elif verdict == "edit":
            right = category_after in (None, category)
        elif verdict == "reject":
            right = None  # says nothing about the category; counts towards the out-of-scope share
        elif route == PipelineRun.Route.AUTO and status == PipelineRun.Status.COMPLETED and marked is not None:
            right = False
        else:
            continue
        seen.add(ticket_id)  # one label per ticket: its latest labelled run
        out_of_scope = verdict == "reject" or (verdict == "edit" and category_after == OUT_OF_SCOPE)
        out.append((ticket_id, float(confidence), right, category, out_of_scope))
    return out


_cache: dict[tuple, tuple[float, ThresholdChoice | None]] = {}
_cache_lock = threading.Lock()


def thresholds_current(
    *, classifier: TrainedClassifier, policy: GatePolicy, renew_within: float = 0.0
) -> ThresholdChoice | None:
    """The thresholds in force for `classifier` under `policy`; None when it kept no calibration data
    (a classifier stored before calibration existed: its own suggested threshold stands).

    Chosen again once the choice is `CHOICE_TTL_SECONDS` old, or `renew_within` seconds before that: an RQ
    worker renews it ahead of time in its own process, so that its work-horses, forked from it, find it
    made (`triage.worker.models_refresh`; a choice made in a work-horse is lost with it)."""
    money = frozenset(Category.objects.filter(money=True).values_list("label", flat=True))
    key = (
        classifier.pk,
        policy.target_mishandled_rate,
        policy.guarantee_confidence,
        policy.min_labelled_per_category,
        policy.out_of_scope_share,
        money,
    )
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < CHOICE_TTL_SECONDS - renew_within:
            return hit[1]
    choice: ThresholdChoice | None = None
    if classifier.calibration:  # a deferred field: read here, on a cache miss only
        data = calibration_set(classifier=classifier, money_labels=money, out_of_scope_share=policy.out_of_scope_share)
        choice = data.thresholds(
            target=policy.target_mishandled_rate,
            confidence=policy.guarantee_confidence,
            min_per_category=policy.min_labelled_per_category,
        )
    with _cache_lock:
        _cache.clear()  # one policy and one classifier are in force at a time
        _cache[key] = (now, choice)
    return choice


def thresholds_forget() -> None:
    """Drop the thresholds `thresholds_current` keeps, so that the next call chooses them again from the
    labels present now.

    Why: the product chooses again at most every `CHOICE_TTL_SECONDS` of wall-clock time, which under
    real traffic is a handful of tickets. `bench/learning_curve.py` pushes 500 tickets through in a minute
    or two, so with the time-to-live alone when it chose depended on the machine's speed (a 220 s run
    chose once, before any inbox label, and automated nothing; a 640 s run chose at about 1,000 labels).
    It calls this at each window start, so the choice follows the labels, as under real traffic."""
    with _cache_lock:
        _cache.clear()


@dataclass(frozen=True)
class WhatIf:
    """A proposed target (and per-category overrides) against the labelled history."""

    choice: ThresholdChoice
    thresholds: dict[str, float | None]
    outcome: Outcome
    overridden: dict[str, float | None]


def what_if(
    *,
    data: CalibrationSet,
    target: float,
    confidence: float,
    min_per_category: int,
    overrides: Mapping[str, float | None],
) -> WhatIf:
    """What a proposed target, with per-category thresholds typed by hand (`overrides`; None: never
    automate that category), would have done on the labelled history, before anything is saved."""
    choice = data.thresholds(target=target, confidence=confidence, min_per_category=min_per_category)
    thresholds = {c: t.threshold for c, t in choice.categories.items()} | dict(overrides)
    outcome = choice_apply(thresholds=thresholds, scores=data.scores, correct=data.correct, categories=data.categories)
    return WhatIf(choice=choice, thresholds=thresholds, outcome=outcome, overridden=dict(overrides))


@dataclass(frozen=True)
class TargetWeek:
    """One week on the Reports page: the target in force at its end beside what staff feedback measured."""

    week: date
    target: float
    auto_handled: int
    mishandled: int

    @property
    def measured(self) -> float | None:
        return self.mishandled / self.auto_handled if self.auto_handled else None


def target_history(*, runs: QuerySet[PipelineRun], weeks: int = 12, now: datetime | None = None) -> list[TargetWeek]:
    """Per week (Monday first), the target in force and the measured mishandled rate among auto-handled
    tickets: those staff marked mishandled over those the chain completed on its own."""
    now = now or timezone.now()
    start = (now - timedelta(weeks=weeks - 1)).date()
    start -= timedelta(days=start.weekday())
    counts: dict[date, list[int]] = {}
    auto = runs.filter(
        gates_enabled=True,
        route=PipelineRun.Route.AUTO,
        status=PipelineRun.Status.COMPLETED,
        created_at__date__gte=start,
    ).values_list("created_at", "ticket__mishandled_at")
    for created, marked in auto:
        day = timezone.localtime(created).date()
        week = day - timedelta(days=day.weekday())
        entry = counts.setdefault(week, [0, 0])
        entry[0] += 1
        entry[1] += marked is not None
    changes = list(TargetChange.objects.values_list("changed_at", "target_mishandled_rate"))
    # Every save of the policy records a change; before the first one the field's default was in force.
    default = GatePolicy._meta.get_field("target_mishandled_rate").get_default()
    out = []
    for i in range(weeks):
        week = start + timedelta(weeks=i)
        end = timezone.make_aware(datetime.combine(week + timedelta(days=7), datetime.min.time()))
        in_force = [target for changed, target in changes if changed < end]
        auto_handled, mishandled = counts.get(week, [0, 0])
        out.append(TargetWeek(week, in_force[-1] if in_force else default, auto_handled, mishandled))
    return out
