"""Auto-handle thresholds from a target error, with a finite-sample guarantee (Learn then Test).

The admin states two numbers: the **target** (the most mishandled tickets they accept among those the
product handles on its own, e.g. 1%) and the **confidence** of the guarantee (e.g. 90%). This module
chooses the confidence thresholds that honour them, from calibration data the classifier never trained
on (out-of-fold predictions on the examples, plus tickets people labelled in the inbox):

    with probability at least `confidence` over the calibration data, the share of wrong answers among
    the tickets accepted (score >= threshold) is at most `target`, for tickets exchangeable with it.

Method: selective classification with guaranteed risk by Learn then Test (Angelopoulos, Bates, Candès,
Jordan, Lei 2021). For a threshold λ the null hypothesis is "the error among tickets scoring >= λ exceeds
the target"; its p-value is MAPIE's Hoeffding-Bentkus p-value for a binary loss
(`mapie.risk_control.methods.compute_hoeffding_bentkus_p_value`, with the number of accepted tickets as
the sample size: given that number, their mistakes are independent Bernoulli draws of exactly the risk
under test), and the hypotheses are tested in sequence from the strictest threshold down by the fallback
procedure (`_FallbackSequence`, run by `mapie.risk_control.control_fwer`): the family-wise error is at most
1 - confidence, so every threshold it accepts (the loosest is chosen) honours the target with that confidence.

**Why the fallback procedure and not plain fixed-sequence testing.** Fixed-sequence testing puts the whole
error budget on the first threshold and stops at the first one it cannot reject. Real calibration data has
confident mistakes: a mislabelled ticket, an out-of-scope request the classifier is sure of. One of them
among the strictest thresholds' few tickets ended the search, and nothing was certified, even where the
data supported the target well at looser thresholds. On banking77 from 10 examples per category at a 5%
target, three of the four challengers the learning bench trained were refused as unable to certify 5%;
the first of them, replayed offline, "cannot show at most 5% at any threshold; the best its data supports
is 2.93%": two unseen-category examples scored 0.998 among its 45 most confident tickets.
So `FALLBACK_SHARE` (a fifth) of each test's budget is held back from the start and spread over fallback
points further down (where the count of accepted tickets reaches 2, 4 and 8 times the start's). A test that
fails no longer ends the sequence: the tests after the next fallback point still run, at that point's share.
While nothing fails, the levels add up and the last points are tested at the whole budget. Synthetic draws
(`bench/threshold_sequence.py`, 300 draws each): at 5% with two confident mistakes among the top 40 of 1,500
tickets, fixed sequence certified nothing in any draw, the fallback 35% mean coverage; with none, 45.9%
against 47.3%. The price is at the strictest end: the start is tested at four fifths of the budget, so at 1%
on 1,000 clean tickets mean coverage fell from 22.2% to 20.3%. `evaluate`'s figures on the full datasets did
not move (banking77 at 0.5, 1 and 2%, banking77-oos and bitext-retail at 1%, the demo company at 5%).

Why not `BinaryClassificationController`: it controls a risk of a binary classifier's positive
predictions over a grid of its own, with no notion of the grouping below (a threshold per category with
the error budget split between them) nor of a refusal reasoned per category. The statistics are MAPIE's;
what is here is the selection of what to test.

**The threshold grid** is fixed in advance (0.000 to 1.000 by 0.001: confidences are calibrated
probabilities), searched from 1.0 down. The strictest thresholds accept a handful of tickets, too few
for even zero mistakes to be evidence: (1 - target)^n > 1 - confidence. A test there could never reject,
so the sequence starts at the strictest threshold accepting enough tickets for zero mistakes to count at
the start's share of the budget. That start, and the fallback points, depend on how many tickets score
above each threshold, never on whether they were right (which is what is being tested).

**Per category.** A category's calibration tickets are those the classifier *predicted* to be in it
(the threshold applies to the prediction). A category with at least `min_per_category` of them and
enough for a test of its own (decided by counts only) gets its own threshold; every other category with
calibration tickets shares one pooled (global) threshold, tested on all of them together. A thin
category is not refused for being thin: the pooled test's guarantee is on the error among all the
tickets it accepts, whatever their category, and refusing every category below a per-category minimum
automated nothing at all while a model learns from few examples per category (bench/learning_curve.py
on banking77 from 10 examples per category: every category refused for the whole 2,000-ticket stream).
A category with no calibration ticket at all is refused: nothing is known about it. With m tests in
all, each runs at error budget (1 - confidence) / m (Bonferroni), so all hold at once with the stated
confidence, and then the error among all accepted tickets, a weighted average of the groups' errors, is
at most the target too. A group whose data cannot certify the target
at any threshold is refused, with the best bound its data does support.

No Django imports: the admin, the router and `evaluate` call this with plain arrays.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_MIN_PER_CATEGORY",
    "DEFAULT_TARGET",
    "GRID_STEP",
    "CategoryThreshold",
    "CurvePoint",
    "Outcome",
    "ThresholdChoice",
    "choice_apply",
    "risk_coverage_curve",
    "thresholds_choose",
    "upper_bound",
    "zero_error_sample_size",
]

#: The gate policy's defaults: at most 1 mishandled ticket in 100 auto-handled, with 90% confidence, and
#: no threshold of a category's own before 30 of its tickets have been labelled (until then it shares
#: the pooled threshold).
DEFAULT_TARGET = 0.01
DEFAULT_CONFIDENCE = 0.9
DEFAULT_MIN_PER_CATEGORY = 30
#: Spacing of the fixed threshold grid.
GRID_STEP = 0.001
_GRID = numpy.abs(numpy.round(numpy.arange(1.0, -GRID_STEP / 2, -GRID_STEP), 3))  # 1.000, 0.999, ..., 0.000
METHOD = "Learn then Test: Hoeffding-Bentkus p-values, the fallback procedure, Bonferroni across groups"

Source = Literal["own", "global", "refused"]


@dataclass(frozen=True)
class CategoryThreshold:
    """What the chooser decided for one category."""

    category: str
    threshold: float | None
    """Confidence needed to auto-handle a ticket predicted in this category; None: never (refused)."""
    source: Source
    """`own`: its own test; `global`: the pooled threshold; `refused`: automate nothing."""
    calibration_tickets: int
    accepted: int
    errors: int
    reason: str = ""
    """Why it was refused (empty otherwise)."""

    @property
    def coverage(self) -> float:
        return self.accepted / self.calibration_tickets if self.calibration_tickets else 0.0


@dataclass(frozen=True)
class ThresholdChoice:
    """The thresholds chosen for one target and confidence, with what they did on the calibration data."""

    target: float
    confidence: float
    min_per_category: int
    threshold: float | None
    """The pooled (global) threshold for categories without their own; None: the pool was refused."""
    reason: str
    """Why the pool was refused (empty otherwise)."""
    tests: int
    """Groups tested (own categories + the pool): each at error budget (1 - confidence) / tests."""
    calibration_tickets: int
    accepted: int
    errors: int
    bound: float | None
    """Upper `confidence` Clopper-Pearson bound on the error among the accepted calibration tickets."""
    categories: dict[str, CategoryThreshold] = field(default_factory=dict)
    method: str = METHOD

    @property
    def coverage(self) -> float:
        """Share of the calibration tickets that would have been auto-handled."""
        return self.accepted / self.calibration_tickets if self.calibration_tickets else 0.0

    @property
    def error_rate(self) -> float | None:
        """Share of wrong answers among the accepted calibration tickets (None: none accepted)."""
        return self.errors / self.accepted if self.accepted else None

    @property
    def refused(self) -> list[str]:
        """The categories nothing is automated in, by label."""
        return [c.category for c in self.categories.values() if c.source == "refused"]

    def threshold_for(self, category: str) -> float | None:
        """The confidence a ticket predicted in `category` needs; None: it is never auto-handled here.

        A category with no calibration ticket at all is refused: nothing is known about it."""
        chosen = self.categories.get(category)
        return chosen.threshold if chosen else None

    def refusal_for(self, category: str) -> str:
        """Why `category` is not automated (empty when it may be)."""
        chosen = self.categories.get(category)
        if chosen is None:
            return f"no labelled ticket of '{category}' to measure it on: a person handles it"
        return chosen.reason


@dataclass(frozen=True)
class Outcome:
    """What a set of thresholds does on labelled tickets."""

    tickets: int
    accepted: int
    errors: int

    @property
    def coverage(self) -> float:
        return self.accepted / self.tickets if self.tickets else 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.accepted if self.accepted else None


@dataclass(frozen=True)
class CurvePoint:
    """One point of the risk-coverage curve: the automation a target buys, with its guarantee."""

    target: float
    coverage: float
    error_rate: float | None
    bound: float | None
    refused_categories: int


def zero_error_sample_size(*, target: float, budget: float) -> int:
    """The fewest accepted tickets for which zero mistakes is evidence at `budget`: (1-target)^n <= budget."""
    if not 0.0 < target < 1.0 or not 0.0 < budget < 1.0:
        raise ValueError("target and budget must lie strictly between 0 and 1")
    return math.ceil(math.log(budget) / math.log1p(-target))


def upper_bound(errors: int, accepted: int, confidence: float) -> float | None:
    """One-sided Clopper-Pearson upper bound on an error rate, at `confidence`."""
    from scipy.stats import beta

    if accepted == 0:
        return None
    if errors >= accepted:
        return 1.0
    return float(beta.ppf(confidence, errors + 1, accepted - errors))


def _upper_bounds(errors: numpy.ndarray, accepted: numpy.ndarray, confidence: float) -> numpy.ndarray:
    """`upper_bound` over arrays (every accepted count at least 1)."""
    from scipy.stats import beta

    errors = numpy.asarray(errors, dtype=float)
    accepted = numpy.asarray(accepted, dtype=float)
    safe = numpy.maximum(accepted - errors, 1.0)
    return numpy.where(errors >= accepted, 1.0, beta.ppf(confidence, errors + 1, safe))


@dataclass(frozen=True)
class _Test:
    threshold: float | None
    accepted: int
    errors: int
    best_bound: float | None


#: Share of a group's error budget held back from the start of its sequence of thresholds for the fallback
#: points further down (`_FallbackSequence`), so that a confident mistake among the strictest thresholds'
#: few tickets does not end the search. While no test fails, it comes back whole at the last fallback point.
FALLBACK_SHARE = 0.2
#: The fallback points: the first thresholds accepting this many times the tickets the start accepts.
FALLBACK_MULTIPLES = (2, 4, 8)


def _fallback_sequence(*, accepted: numpy.ndarray, target: float, budget: float) -> tuple[int, numpy.ndarray]:
    """Where a group's sequence of thresholds starts (an index of `_GRID`) and the share of the error budget
    each threshold from there on holds at first (`_FallbackSequence`).

    Decided by counts only (how many tickets score at or above each threshold), never by whether they were
    right: the start is the strictest threshold whose tickets could show the target with no mistake at its
    share of the budget, and the fallback points are where the count reaches `FALLBACK_MULTIPLES` times the
    start's. With no such point (too few tickets), the start holds the whole budget: plain fixed sequence."""
    start_share = 1.0 - FALLBACK_SHARE
    start = int(numpy.searchsorted(accepted, zero_error_sample_size(target=target, budget=budget * start_share)))
    if start >= len(accepted):
        return _fixed_sequence(accepted=accepted, target=target, budget=budget)
    points = sorted(
        {int(numpy.searchsorted(accepted, accepted[start] * k)) for k in FALLBACK_MULTIPLES} - {len(accepted)}
    )
    if not points:
        return _fixed_sequence(accepted=accepted, target=target, budget=budget)
    weights = numpy.zeros(len(accepted) - start)
    weights[0] = start_share
    for point in points:
        weights[point - start] += FALLBACK_SHARE / len(points)
    return start, weights


def _fixed_sequence(*, accepted: numpy.ndarray, target: float, budget: float) -> tuple[int, numpy.ndarray]:
    """Plain fixed-sequence testing: the whole budget on the strictest threshold whose tickets could show the
    target with no mistake, handed down the sequence while tests are rejected."""
    start = int(numpy.searchsorted(accepted, zero_error_sample_size(target=target, budget=budget)))
    weights = numpy.zeros(max(0, len(accepted) - start))
    weights[:1] = 1.0
    return start, weights


@functools.cache
def _fallback_sequence_class() -> type:
    """`_FallbackSequence`, defined on first use: MAPIE takes seconds to import, and only choosing needs it."""
    from mapie.risk_control import FWERProcedure

    class _FallbackSequence(FWERProcedure):
        """Wiens' fallback procedure (a sequentially rejective graphical test, Bretz et al. 2009) on hypotheses
        ordered from the strictest threshold to the loosest: hypothesis i starts with `weights[i]` of the error
        budget, and when it is rejected its level passes, whole, to the next one not yet rejected. With all the
        weight on the first hypothesis this is fixed-sequence testing; with some held back further down, a
        failure early in the sequence no longer ends it: the tests after the next fallback point still run, at
        that point's share. The family-wise error is at most the budget for any weights summing to one.

        Written here because MAPIE's `FWERFixedSequenceTesting` splits the budget evenly between its starts and
        never hands it on (two starts test everything at half the budget), which cost more automation in
        simulation than the early failures it rescues; MAPIE's `FWERProcedure` runs it."""

        def __init__(self, weights: numpy.ndarray) -> None:
            self.weights = numpy.asarray(weights, dtype=float)

        def _init_state(self, n_lambdas: int, delta: float) -> None:
            if len(self.weights) != n_lambdas:
                raise ValueError(f"{len(self.weights)} weights for {n_lambdas} hypotheses")
            self.levels = self.weights * delta
            self.rejected = numpy.zeros(n_lambdas, dtype=bool)

        def _select_next_hypothesis(self, p_values: numpy.ndarray) -> int | None:
            rejectable = numpy.flatnonzero(~self.rejected & (p_values <= self.levels) & (self.levels > 0))
            return int(rejectable[0]) if len(rejectable) else None

        def _local_significance_levels(self) -> numpy.ndarray:
            return self.levels

        def _update_on_reject(self, hypothesis_index: int) -> None:
            self.rejected[hypothesis_index] = True
            later = numpy.flatnonzero(~self.rejected[hypothesis_index + 1 :])
            if len(later):
                self.levels[hypothesis_index + 1 + int(later[0])] += self.levels[hypothesis_index]
            self.levels[hypothesis_index] = 0.0

    return _FallbackSequence


def _ltt(scores: numpy.ndarray, wrong: numpy.ndarray, *, target: float, budget: float) -> _Test:
    """Learn then Test on one group: the loosest grid threshold certified at `target` with error `budget`."""
    from mapie.risk_control import control_fwer
    from mapie.risk_control.methods import compute_hoeffding_bentkus_p_value

    order = numpy.argsort(-scores, kind="stable")
    sorted_scores, sorted_wrong = scores[order], wrong[order]
    # accepted[i] = tickets scoring >= _GRID[i]; errors[i] = their mistakes.
    accepted = numpy.searchsorted(-sorted_scores, -_GRID, side="right")
    cumulative = numpy.concatenate([[0], numpy.cumsum(sorted_wrong)])
    errors = cumulative[accepted]
    start, weights = _fallback_sequence(accepted=accepted, target=target, budget=budget)
    tested = slice(start, len(_GRID))
    n = accepted[tested].astype(float)
    best = None
    if n.size:
        # The best the data supports: the lowest upper bound over the thresholds worth testing.
        best = float(_upper_bounds(errors[tested], n, 1.0 - budget).min())
        p_values = compute_hoeffding_bentkus_p_value(errors[tested] / n, n, target, binary=True)[:, 0]
        certified = control_fwer(p_values, budget, fwer_method=_fallback_sequence_class()(weights))
        if len(certified):
            i = start + int(certified.max())
            # Of the thresholds accepting exactly these tickets, the strictest: no looser than the data shows.
            i = max(start, int(numpy.searchsorted(accepted, accepted[i], side="left")))
            return _Test(float(_GRID[i]), int(accepted[i]), int(errors[i]), best)
    return _Test(None, 0, 0, best)


def thresholds_choose(
    *,
    scores: Sequence[float] | numpy.ndarray,
    correct: Sequence[bool] | numpy.ndarray,
    categories: Sequence[str],
    target: float,
    confidence: float,
    min_per_category: int,
) -> ThresholdChoice:
    """Thresholds, global and per category, whose error among auto-handled tickets is at most `target`
    with probability at least `confidence` (see the module docstring).

    `scores[i]` is the classifier's confidence on calibration ticket i, `categories[i]` the category it
    predicted, `correct[i]` whether that was the true one. Pass only tickets the thresholds would decide
    (in scope, predicted in a category that is not money-moving: money always waits for a person).
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must lie strictly between 0 and 1, not {target}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    if min_per_category < 1:
        raise ValueError("min_per_category must be at least 1")
    score_array = numpy.asarray(scores, dtype=numpy.float64)
    wrong = ~numpy.asarray(correct, dtype=bool)
    labels = numpy.asarray(list(categories), dtype=object)
    if not (len(score_array) == len(wrong) == len(labels)):
        raise ValueError(f"scores ({len(score_array)}), correct ({len(wrong)}) and categories ({len(labels)}) differ")
    delta = 1.0 - confidence
    counts = (
        {str(c): int(n) for c, n in zip(*numpy.unique(labels, return_counts=True), strict=True)} if len(labels) else {}
    )

    decided: dict[str, CategoryThreshold] = {}
    # Every category with calibration tickets takes part: alone when it has enough, else in the pool.
    eligible = dict(counts)

    # Which categories get a test of their own: decided by counts alone (see the module docstring). More
    # tests mean a smaller budget each, hence more tickets needed: settle on a consistent number.
    own: set[str] = set()
    tests = 1
    for _ in range(len(eligible) + 2):
        need = zero_error_sample_size(target=target, budget=delta / tests)
        # A category needs ten times the zero-mistake minimum to be worth testing alone: otherwise one
        # mistake would refuse it, when the pool could have carried it.
        now = {c for c, n in eligible.items() if n >= max(min_per_category, 10 * need)}
        now_tests = len(now) + (1 if set(eligible) - now else 0)
        if now == own and now_tests == tests:
            break
        own, tests = now, max(1, now_tests)
    budget = delta / tests

    accepted_total = errors_total = 0
    for c in sorted(own):
        mask = labels == c
        test = _ltt(score_array[mask], wrong[mask], target=target, budget=budget)
        decided[c] = _decided(c, test, int(mask.sum()), target, confidence)
        accepted_total += test.accepted
        errors_total += test.errors

    pooled = sorted(set(eligible) - own)
    pool_threshold: float | None = None
    pool_reason = ""
    if pooled:
        mask = numpy.isin(labels, pooled)
        test = _ltt(score_array[mask], wrong[mask], target=target, budget=budget)
        pool_threshold = test.threshold
        if test.threshold is None:
            pool_reason = _refusal(int(mask.sum()), test, target, confidence)
        for c in pooled:
            in_c = labels == c
            ok = in_c & (score_array >= test.threshold) if test.threshold is not None else numpy.zeros_like(in_c)
            decided[c] = CategoryThreshold(
                c,
                test.threshold,
                "global" if test.threshold is not None else "refused",
                int(in_c.sum()),
                int(ok.sum()),
                int((ok & wrong).sum()),
                "" if test.threshold is not None else f"the pooled categories: {pool_reason}",
            )
        accepted_total += test.accepted
        errors_total += test.errors
    elif not eligible:
        pool_reason = "no labelled ticket to measure the error on: nothing is automated"

    return ThresholdChoice(
        target=target,
        confidence=confidence,
        min_per_category=min_per_category,
        threshold=pool_threshold,
        reason=pool_reason,
        tests=tests,
        calibration_tickets=len(labels),
        accepted=accepted_total,
        errors=errors_total,
        bound=upper_bound(errors_total, accepted_total, confidence),
        categories=dict(sorted(decided.items())),
    )


def _refusal(n: int, test: _Test, target: float, confidence: float) -> str:
    supported = f"; the best its data supports is {test.best_bound:.2%}" if test.best_bound is not None else ""
    return (
        f"{n} labelled ticket(s) cannot show a mishandled rate of at most {target:.2%} with {confidence:.0%} "
        f"confidence at any threshold{supported}: a person handles them"
    )


def _decided(category: str, test: _Test, n: int, target: float, confidence: float) -> CategoryThreshold:
    if test.threshold is None:
        return CategoryThreshold(category, None, "refused", n, 0, 0, _refusal(n, test, target, confidence))
    return CategoryThreshold(category, test.threshold, "own", n, test.accepted, test.errors)


def choice_apply(
    *,
    thresholds: Mapping[str, float | None],
    scores: Sequence[float] | numpy.ndarray,
    correct: Sequence[bool] | numpy.ndarray,
    categories: Sequence[str],
) -> Outcome:
    """What per-category thresholds (None or missing: never automated) do on labelled tickets: the
    what-if of a proposed change."""
    accepted = errors = 0
    for score, right, category in zip(scores, correct, categories, strict=True):
        threshold = thresholds.get(category)
        if threshold is not None and score >= threshold:
            accepted += 1
            errors += 0 if right else 1
    return Outcome(tickets=len(categories), accepted=accepted, errors=errors)


def risk_coverage_curve(
    *,
    scores: Sequence[float] | numpy.ndarray,
    correct: Sequence[bool] | numpy.ndarray,
    categories: Sequence[str],
    targets: Sequence[float],
    confidence: float,
    min_per_category: int,
) -> list[CurvePoint]:
    """For each target, the automation the chooser would buy and the error it had on the calibration data."""
    points = []
    for target in targets:
        choice = thresholds_choose(
            scores=scores,
            correct=correct,
            categories=categories,
            target=target,
            confidence=confidence,
            min_per_category=min_per_category,
        )
        points.append(
            CurvePoint(
                target=target,
                coverage=choice.coverage,
                error_rate=choice.error_rate,
                bound=choice.bound,
                refused_categories=sum(1 for c in choice.categories.values() if c.source == "refused"),
            )
        )
    return points
