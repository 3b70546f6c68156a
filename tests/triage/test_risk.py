"""The threshold chooser on synthetic scores whose true risk is known in closed form."""

import numpy
import pytest

from triage.risk import choice_apply, risk_coverage_curve, thresholds_choose, zero_error_sample_size


def _draw(rng, n, *, scale=0.1):
    """Scores uniform on [0, 1]; a ticket scoring s is wrong with probability scale * (1 - s)^2.

    The true error among tickets scoring >= t is then scale * (1 - t)^2 / 3, so the loosest threshold
    that honours a 1% target (scale 0.1) is t* = 1 - sqrt(0.3) = 0.4523, covering 54.8% of tickets."""
    scores = rng.uniform(size=n)
    wrong = rng.uniform(size=n) < scale * (1 - scores) ** 2
    return scores, ~wrong


def _true_risk(threshold, *, scale=0.1):
    return scale * (1 - threshold) ** 2 / 3


def test_too_few_tickets_for_the_target_are_refused_with_the_reason():
    # given 100 tickets, every one right: zero mistakes in 100 cannot show 1% at 90% ((0.99)^100 = 0.37)
    scores = numpy.linspace(0.5, 1.0, 100)
    choice = thresholds_choose(
        scores=scores, correct=[True] * 100, categories=["card_arrival"] * 100, target=0.01, confidence=0.9,
        min_per_category=30,
    )  # fmt: skip

    assert choice.threshold is None
    assert choice.threshold_for("card_arrival") is None
    assert choice.accepted == 0
    assert "cannot show a mishandled rate of at most 1.00% with 90% confidence" in choice.refusal_for("card_arrival")
    # the same tickets are enough for a 3% target: (0.97)^100 = 0.048 < 0.1
    looser = thresholds_choose(
        scores=scores, correct=[True] * 100, categories=["card_arrival"] * 100, target=0.03, confidence=0.9,
        min_per_category=30,
    )  # fmt: skip
    assert looser.threshold_for("card_arrival") == pytest.approx(0.5)
    assert looser.coverage == 1.0


def test_a_thin_category_shares_the_pooled_threshold_and_is_refused_only_with_the_pool():
    rng = numpy.random.default_rng(7)
    scores, correct = _draw(rng, 3000)
    categories = ["card_arrival"] * 2990 + ["crypto"] * 10
    choice = thresholds_choose(
        scores=scores, correct=correct, categories=categories, target=0.02, confidence=0.9, min_per_category=30
    )

    # card_arrival has enough for a test of its own; crypto's 10 tickets are the whole pool, which cannot
    # show 2% at any threshold (that takes 114 right answers in a row at this budget): refused, saying why.
    assert choice.categories["card_arrival"].source == "own"
    assert choice.threshold_for("crypto") is None
    assert choice.categories["crypto"].source == "refused"
    assert choice.refusal_for("crypto").startswith(
        "the pooled categories: 10 labelled ticket(s) cannot show a mishandled rate of at most 2.00%"
    )
    assert choice.threshold_for("card_arrival") is not None
    assert choice.refusal_for("card_arrival") == ""
    assert choice.refusal_for("never_seen").startswith("no labelled ticket of 'never_seen'")


def test_many_thin_categories_are_automated_under_one_pooled_threshold_that_honours_the_target():
    # 100 categories of 30 tickets each, all under a minimum of 50: none could be tested alone, and
    # refusing them all (as a per-category minimum did) would automate nothing. Pooled, the true risk at
    # the chosen threshold is known in closed form and must be within the target in at least 90% of
    # 200 draws, while automating a real share.
    rng = numpy.random.default_rng(13)
    categories = [f"c{i}" for i in range(100) for _ in range(30)]
    honoured, coverage = 0, []
    for _ in range(200):
        scores, correct = _draw(rng, 3000)
        choice = thresholds_choose(
            scores=scores, correct=correct, categories=categories, target=0.01, confidence=0.9, min_per_category=50
        )
        assert choice.tests == 1
        assert {c.source for c in choice.categories.values()} <= {"global", "refused"}
        threshold = choice.threshold
        if threshold is not None:
            assert all(choice.threshold_for(f"c{i}") == threshold for i in range(100))
        honoured += threshold is None or _true_risk(threshold) <= 0.01
        coverage.append(0.0 if threshold is None else 1 - threshold)

    assert honoured >= 180
    assert numpy.mean(coverage) > 0.27


def test_the_guarantee_holds_in_at_least_the_stated_share_of_draws():
    # 200 seeded draws of 3000 calibration tickets each: the true error at the chosen threshold must be
    # within the target in at least 90% of them (the guarantee), and the chooser must not get there by
    # refusing: on average it automates more than half of what the best threshold (54.8%) would.
    rng = numpy.random.default_rng(2026)
    honoured, naive_honoured, coverage = 0, 0, []
    for _ in range(200):
        scores, correct = _draw(rng, 3000)
        choice = thresholds_choose(
            scores=scores, correct=correct, categories=["a"] * 3000, target=0.01, confidence=0.9, min_per_category=30
        )
        threshold = choice.threshold_for("a")
        honoured += threshold is None or _true_risk(threshold) <= 0.01
        coverage.append(0.0 if threshold is None else 1 - threshold)
        # The naive rule (loosest threshold whose measured error is within the target) has no guarantee;
        # the simulation must be able to tell: it breaks the target in far more than 10% of draws.
        order = numpy.argsort(-scores)
        running = numpy.cumsum(~correct[order]) / numpy.arange(1, 3001)
        ok = numpy.nonzero(running <= 0.01)[0]
        naive_honoured += _true_risk(scores[order][ok.max()]) <= 0.01

    assert honoured >= 180
    assert naive_honoured < 150
    assert numpy.mean(coverage) > 0.27


def test_an_easy_category_with_plenty_of_data_gets_its_own_looser_threshold():
    rng = numpy.random.default_rng(11)
    easy_scores, easy_correct = _draw(rng, 12000, scale=0.02)  # 1% reached at t = 1 - sqrt(1.5): everything
    hard_scores, hard_correct = _draw(rng, 2500, scale=0.1)
    other_scores, other_correct = _draw(rng, 2500, scale=0.1)
    choice = thresholds_choose(
        scores=numpy.concatenate([easy_scores, hard_scores, other_scores]),
        correct=numpy.concatenate([easy_correct, hard_correct, other_correct]),
        categories=["easy"] * 12000 + ["hard"] * 2500 + ["other"] * 2500,
        target=0.01,
        confidence=0.9,
        min_per_category=30,
    )

    assert choice.categories["easy"].source == "own"
    assert choice.categories["hard"].source == choice.categories["other"].source == "global"
    assert choice.tests == 2
    assert choice.threshold_for("hard") == choice.threshold == choice.threshold_for("other")
    assert choice.threshold_for("easy") < choice.threshold
    assert choice.categories["easy"].coverage > 0.9


def test_what_if_counts_automation_and_mistakes_of_proposed_thresholds():
    outcome = choice_apply(
        thresholds={"a": 0.8, "b": None},
        scores=[0.9, 0.85, 0.7, 0.99, 0.95],
        correct=[True, False, True, True, True],
        categories=["a", "a", "a", "b", "c"],
    )

    assert (outcome.tickets, outcome.accepted, outcome.errors) == (5, 2, 1)
    assert outcome.coverage == 0.4
    assert outcome.error_rate == 0.5


def test_the_curve_buys_more_automation_for_a_looser_target():
    rng = numpy.random.default_rng(3)
    scores, correct = _draw(rng, 4000)
    points = risk_coverage_curve(
        scores=scores, correct=correct, categories=["a"] * 4000, targets=[0.002, 0.005, 0.01, 0.02],
        confidence=0.9, min_per_category=30,
    )  # fmt: skip

    coverages = [p.coverage for p in points]
    assert coverages == sorted(coverages)
    assert coverages[-1] > coverages[0]
    for point in points:
        assert point.error_rate is None or point.error_rate <= point.target


def test_zero_error_sample_size():
    assert zero_error_sample_size(target=0.01, budget=0.1) == 230
    assert 0.99**230 <= 0.1 < 0.99**229


@pytest.mark.parametrize(
    "kwargs", [{"target": 0.0}, {"target": 1.0}, {"confidence": 1.0}, {"confidence": 0.0}, {"min_per_category": 0}]
)
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        thresholds_choose(
            **{"scores": [0.9], "correct": [True], "categories": ["a"], "target": 0.01, "confidence": 0.9,
               "min_per_category": 1} | kwargs,
        )  # fmt: skip


def _in_scope(n):
    """Scores evenly spread on [0.5, 1]; wrong exactly below 0.8 (the right answer without out of scope: ~0.8)."""
    scores = numpy.linspace(0.5, 1.0, n)
    return scores, scores >= 0.8


def test_out_of_scope_calibration_tickets_make_the_threshold_as_strict_as_the_traffic_needs():
    # given in-scope tickets whose mistakes all score below 0.8, and out-of-scope tickets (5% of the data,
    # always wrong when auto-handled) the similarity filter let through, confident between 0.85 and 0.95
    rng = numpy.random.default_rng(3)
    scores, correct = _in_scope(4000)
    oos = rng.uniform(0.85, 0.95, size=210)
    settings = {"target": 0.01, "confidence": 0.9, "min_per_category": 30}

    # when the chooser sees the in-scope tickets only, and then with the out-of-scope ones counted as wrong
    blind = thresholds_choose(scores=scores, correct=correct, categories=["a"] * 4000, **settings)
    aware = thresholds_choose(
        scores=numpy.concatenate([scores, oos]),
        correct=numpy.concatenate([correct, numpy.zeros(210, dtype=bool)]),
        categories=["a"] * 4210,
        **settings,
    )

    # then blind it stops near 0.8, where a fresh draw of the same mixed traffic breaks the target
    # (210 wrong among ~1,800 auto-handled); aware it moves above the out-of-scope scores and holds it
    blind_threshold, aware_threshold = blind.threshold_for("a"), aware.threshold_for("a")
    assert blind_threshold is not None and 0.78 <= blind_threshold <= 0.81
    assert aware_threshold is not None and aware_threshold > 0.94  # near the top of the out-of-scope scores
    fresh_scores, fresh_correct = _in_scope(4000)
    fresh = numpy.concatenate([fresh_scores, rng.uniform(0.85, 0.95, size=210)])
    fresh_right = numpy.concatenate([fresh_correct, numpy.zeros(210, dtype=bool)])
    for threshold, honoured in ((blind_threshold, False), (aware_threshold, True)):
        outcome = choice_apply(thresholds={"a": threshold}, scores=fresh, correct=fresh_right, categories=["a"] * 4210)
        assert outcome.error_rate is not None and (outcome.error_rate <= 0.01) is honoured, (threshold, outcome)


def _with_confident_mistakes(rng, n, *, mistakes, scale=0.5):
    """`_draw` at `scale`, then `mistakes` of the 40 most confident tickets made wrong: a mislabelled ticket
    or an out-of-scope request scoring near the top, as real calibration data has."""
    scores, correct = _draw(rng, n, scale=scale)
    correct[numpy.argsort(-scores)[rng.choice(40, size=mistakes, replace=False)]] = False
    return scores, correct


def _risk_with(threshold, *, mistakes, n):
    """The true error among tickets scoring >= `threshold` (scale 0.5), with `mistakes` confident ones in `n`."""
    return _true_risk(threshold, scale=0.5) + mistakes / (n * (1 - threshold))


def test_a_confident_mistake_among_the_strictest_thresholds_does_not_end_the_search(monkeypatch):
    # given 1,500 tickets whose true error honours 5% below t* = 0.4523, and two mistakes among the 40
    # most confident (the strictest thresholds' few tickets)
    rng = numpy.random.default_rng(5)
    settings = {"target": 0.05, "confidence": 0.9, "min_per_category": 30}
    certified, honoured, coverage = 0, 0, []
    for _ in range(100):
        scores, correct = _with_confident_mistakes(rng, 1500, mistakes=2)
        # when the thresholds are chosen
        choice = thresholds_choose(scores=scores, correct=correct, categories=["a"] * 1500, **settings)
        threshold = choice.threshold_for("a")
        # then a threshold is certified in most draws, and it honours the target on such traffic (the two
        # confident mistakes counted among the tickets it accepts) in at least 90% of them
        certified += threshold is not None
        coverage.append(0.0 if threshold is None else 1 - threshold)
        honoured += threshold is None or _risk_with(threshold, mistakes=2, n=1500) <= 0.05
    assert certified >= 90
    assert honoured >= 90
    assert numpy.mean(coverage) > 0.3  # the best threshold covers 54.8%
    # and with the whole budget on the start (plain fixed-sequence testing), the first test fails and
    # nothing is certified at all, although the data supports the target
    monkeypatch.setattr("triage.risk.FALLBACK_SHARE", 0.0)
    plain = thresholds_choose(scores=scores, correct=correct, categories=["a"] * 1500, **settings)
    assert plain.threshold is None
    assert plain.categories["a"].reason.startswith("1500 labelled ticket(s) cannot show")


def test_the_fallback_sequence_hands_a_rejected_level_on_and_keeps_the_shares_held_back():
    from mapie.risk_control import control_fwer

    from triage.risk import _fallback_sequence_class

    procedure = _fallback_sequence_class()
    # all the budget on the first hypothesis: fixed-sequence testing, as MAPIE's own
    p_values = numpy.array([0.01, 0.05, 0.2, 0.01])
    plain = control_fwer(p_values, 0.1, fwer_method=procedure(numpy.array([1.0, 0.0, 0.0, 0.0])))
    assert list(plain) == list(control_fwer(p_values, 0.1, fwer_method="fixed_sequence")) == [0, 1]
    # a fifth held back at the third: the first fails at 0.08, the second holds nothing, the third is tested
    # at 0.02 and rejected, and hands 0.02 on to the fourth, which fails at it
    weights = numpy.array([0.8, 0.0, 0.2, 0.0])
    assert list(control_fwer(numpy.array([0.5, 0.001, 0.01, 0.05]), 0.1, fwer_method=procedure(weights))) == [2]
    # with no failure the levels add up: the fourth is tested at the whole budget
    assert list(control_fwer(numpy.array([0.05, 0.07, 0.01, 0.099]), 0.1, fwer_method=procedure(weights))) == [
        0,
        1,
        2,
        3,
    ]


def test_the_fallback_keeps_the_guarantee_with_confident_mistakes_in_the_calibration_data():
    # 200 draws of 1,500 tickets at a 5% target with one confident mistake each: the true error at the
    # chosen threshold (plus that mistake's share) within the target in at least 90% of them
    rng = numpy.random.default_rng(8)
    honoured = 0
    for _ in range(200):
        scores, correct = _with_confident_mistakes(rng, 1500, mistakes=1)
        choice = thresholds_choose(
            scores=scores, correct=correct, categories=["a"] * 1500, target=0.05, confidence=0.9, min_per_category=30
        )
        threshold = choice.threshold_for("a")
        honoured += threshold is None or _risk_with(threshold, mistakes=1, n=1500) <= 0.05
    assert honoured >= 180


@pytest.mark.parametrize("tickets", [0, 50, 240, 300, 480, 600, 3000])
def test_the_sequence_spends_the_whole_budget_once_and_small_groups_test_as_before(tickets, monkeypatch):
    from triage.risk import _GRID, _fallback_sequence

    scores = numpy.random.default_rng(tickets).uniform(size=tickets)
    accepted = numpy.searchsorted(-numpy.sort(scores)[::-1], -_GRID, side="right")
    start, weights = _fallback_sequence(accepted=accepted, target=0.01, budget=0.1)
    # every threshold from the start on holds a share, none negative, and the shares add up to the budget
    assert len(weights) == len(_GRID) - start
    assert (weights >= 0).all()
    assert weights.sum() == pytest.approx(1.0) or (tickets < 230 and len(weights) == 0)
    # too few tickets for any fallback point (under twice the start's): the start holds everything, and the
    # choice is plain fixed-sequence testing's
    if tickets < 600:
        assert len(weights) == 0 or weights[0] == 1.0
        correct = numpy.random.default_rng(1).uniform(size=tickets) > 0.002
        settings = {"target": 0.01, "confidence": 0.9, "min_per_category": 30}
        ours = thresholds_choose(scores=scores, correct=correct, categories=["a"] * tickets, **settings)
        monkeypatch.setattr("triage.risk.FALLBACK_SHARE", 0.0)
        plain = thresholds_choose(scores=scores, correct=correct, categories=["a"] * tickets, **settings)
        assert ours.threshold == plain.threshold
