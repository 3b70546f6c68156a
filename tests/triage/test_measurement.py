from __future__ import annotations

import pytest

from triage.measurement import TicketOutcome, category_table, risk_coverage, step_figures


def outcome(
    label, predicted, confidence, *, other=True, wrong=None, auto=False, hit=None, cites=None, automatable=True
):
    return TicketOutcome(
        run_id=0,
        label=label,
        predicted=predicted,
        confidence=confidence,
        auto_handled=auto,
        wrong_if_auto=(predicted != label) if wrong is None else wrong,
        automatable=automatable,
        other_gates_passed=other,
        category_has_article=hit is not None,
        retrieved=True,
        retrieval_hit=hit,
        drafted=cites is not None,
        cites_category_article=cites,
    )


def test_risk_coverage_sweeps_the_confidence_gated_and_ungated():
    outcomes = [
        outcome("a", "a", 0.99),
        outcome("b", "b", 0.95, other=False),  # another gate (e.g. money) holds it
        outcome("a", "b", 0.90),  # wrong
        outcome("b", "b", 0.90),
        outcome("a", "out_of_scope", 0.99),  # never automated
    ]

    gated = risk_coverage(outcomes, gated=True)
    ungated = risk_coverage(outcomes, gated=False)

    assert [(p.threshold, p.automated, p.mishandled) for p in gated] == [(0.99, 1, 0), (0.90, 3, 1)]
    assert gated[-1].coverage == pytest.approx(3 / 5) and gated[-1].risk == pytest.approx(1 / 3)
    assert [(p.threshold, p.automated, p.mishandled) for p in ungated] == [(0.99, 1, 0), (0.95, 2, 0), (0.90, 4, 1)]


def test_step_figures_and_the_category_table():
    outcomes = [
        outcome("a", "a", 0.99, auto=True, hit=True, cites=True),
        outcome("a", "a", 0.5, hit=False, cites=False),
        outcome("b", "b", 0.99, auto=True, wrong=True, hit=True, cites=None, automatable=False),  # money=1 ticket
    ]

    figures = step_figures(outcomes)
    rows = {r["category"]: r for r in category_table(outcomes)}

    assert figures["retrieval_hit_rate"] == pytest.approx(2 / 3) and figures["retrieval_judged"] == 3
    assert figures["draft_cites_category_article"] == 0.5 and figures["draft_citations_judged"] == 2
    assert "automatable" not in figures and "automatable_share_automated" not in figures  # evaluate's, once
    assert rows["a"]["automation_rate"] == 0.5 and rows["a"]["mishandled"] == 0
    assert rows["b"]["mishandled"] == 1 and rows["b"]["mishandled_among_auto_handled"] == 1.0
