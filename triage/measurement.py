"""`evaluate`'s per-ticket measurements: every step judged against the dataset's own labels, not by proxy.

Beside the gate-based figures of `triage.metrics`, with a dataset whose kb articles name their category
(`category:` first line) and whose tickets.csv may carry a `money` column:

- retrieval_hit_rate: over tickets whose true category has an article and whose retrieve step ran, the
  share where a passage of one of those articles was among the retrieved passages.
- draft_cites_category_article: over those tickets that got a draft, the share whose draft cites a passage
  of its category's article.
- `TicketOutcome.automatable`: in scope, category does not move money, and not marked money=1 (the most any
  safe product can automate); `evaluate`'s `automatable_share_automated` is computed from the same rule
  in `triage.evaluation.autonomy_figures`, once, so it is not repeated here.
- the risk-coverage curves (`risk_coverage`): as the confidence threshold sweeps, the automation rate
  (coverage) against the mishandled share among automated tickets; gated (a ticket is automated when its
  confidence reaches the threshold and every other gate passed) and ungated (the classifier's confidence
  alone, every other gate off).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from triage.contracts import OUT_OF_SCOPE
from triage.metrics import ReferenceLabels, run_facts
from triage.models import Chunk, PipelineRun, StepRun
from triage.pipeline.gates import CONFIDENCE


@dataclass(frozen=True)
class TicketOutcome:
    """One ticket of a gated evaluation run, as measured against its labels."""

    run_id: int
    label: str
    predicted: str | None
    confidence: float | None
    auto_handled: bool
    wrong_if_auto: bool  # by the reference label: wrong category, out of scope, or money (category or column)
    automatable: bool
    other_gates_passed: bool  # every verdict except the confidence gate passed
    category_has_article: bool
    retrieved: bool | None  # None: retrieve did not run
    retrieval_hit: bool | None
    drafted: bool
    cites_category_article: bool | None


def ticket_outcomes(*, runs: QuerySet[PipelineRun], truth: ReferenceLabels) -> list[TicketOutcome]:
    """Every run of `runs` measured (a fixed number of queries)."""
    facts = run_facts(runs=runs)
    judged = truth.judge(runs=runs, facts=facts)
    labels = dict(runs.values_list("pk", "ticket__reference_label"))
    articles_of: dict[str, set[int]] = defaultdict(set)
    chunks_of: dict[str, set[int]] = defaultdict(set)
    for chunk_id, article_id, category in Chunk.objects.filter(article__category__isnull=False).values_list(
        "pk", "article_id", "article__category__label"
    ):
        articles_of[category].add(article_id)
        chunks_of[category].add(chunk_id)
    outputs: dict[int, dict[str, Any]] = defaultdict(dict)
    for run_id, step, output in (
        StepRun.objects.filter(
            run__in=runs, step__in=["classify", "retrieve", "draft"], status=StepRun.Status.SUCCEEDED
        )
        .order_by("pk")
        .values_list("run_id", "step", "output")
    ):
        outputs[run_id][step] = output or {}
    out = []
    for run_id, run in facts.items():
        judgement = judged[run_id]
        label = labels[run_id]
        step_outputs = outputs.get(run_id, {})
        classify = step_outputs.get("classify")
        predicted = classify.get("category") if classify else None
        confidence = float(classify["confidence"]) if classify and classify.get("confidence") is not None else None
        other = all(
            bool(v.get("passed"))
            for facts_ in run.steps.values()
            for v in facts_.verdicts
            if v.get("gate") != CONFIDENCE
        )
        has_article = bool(articles_of.get(label))
        retrieve = step_outputs.get("retrieve")
        retrieved = None if run.ran("retrieve") is None else retrieve is not None
        hit = None
        if has_article and retrieved:
            hit = any(p.get("article_id") in articles_of[label] for p in (retrieve or {}).get("passages", []))
        draft = step_outputs.get("draft")
        cites = None
        if has_article and draft is not None:
            cites = any(c in chunks_of[label] for c in draft.get("citations", []))
        out.append(
            TicketOutcome(
                run_id=run_id,
                label=label,
                predicted=predicted,
                confidence=confidence,
                auto_handled=run.auto_handled,
                wrong_if_auto=judgement.wrong_if_auto or run.money_executed,
                automatable=label != OUT_OF_SCOPE and not judgement.money_ticket and not judgement.money_asked,
                other_gates_passed=other,
                category_has_article=has_article,
                retrieved=retrieved,
                retrieval_hit=hit,
                drafted=draft is not None,
                cites_category_article=cites,
            )
        )
    return out


def _share(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def step_figures(outcomes: list[TicketOutcome]) -> dict[str, Any]:
    """The figures of the module docstring over `outcomes`."""
    hits = [o.retrieval_hit for o in outcomes if o.retrieval_hit is not None]
    cites = [o.cites_category_article for o in outcomes if o.cites_category_article is not None]
    return {
        "retrieval_hit_rate": _share(hits),
        "retrieval_judged": len(hits),
        "draft_cites_category_article": _share(cites),
        "draft_citations_judged": len(cites),
    }


def category_table(outcomes: list[TicketOutcome]) -> list[dict[str, Any]]:
    """One row per true category (out of scope included): where its tickets went and how each step did."""
    by_label: dict[str, list[TicketOutcome]] = defaultdict(list)
    for o in outcomes:
        by_label[o.label].append(o)
    rows = []
    for label in sorted(by_label):
        group = by_label[label]
        auto = [o for o in group if o.auto_handled]
        mishandled = sum(o.wrong_if_auto for o in auto)
        in_scope = label != OUT_OF_SCOPE
        rows.append(
            {
                "category": label,
                "tickets": len(group),
                "auto_handled": len(auto),
                "automation_rate": len(auto) / len(group),
                "mishandled": mishandled,
                "mishandled_among_auto_handled": mishandled / len(auto) if auto else None,
                "accuracy": _share([o.predicted == label for o in group]) if in_scope else None,
                "retrieval_hit_rate": _share([o.retrieval_hit for o in group if o.retrieval_hit is not None]),
                "draft_cites_category_article": _share(
                    [o.cites_category_article for o in group if o.cites_category_article is not None]
                ),
            }
        )
    return rows


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    coverage: float  # automated / all tickets
    risk: float  # mishandled among automated
    automated: int
    mishandled: int


def risk_coverage(outcomes: list[TicketOutcome], *, gated: bool) -> list[CurvePoint]:
    """The risk-coverage curve as the confidence threshold sweeps every distinct confidence (see the
    module docstring for gated and ungated). Out-of-scope answers are never automated."""
    candidates = [
        o
        for o in outcomes
        if o.confidence is not None and o.predicted not in (None, OUT_OF_SCOPE) and (o.other_gates_passed or not gated)
    ]
    candidates.sort(key=lambda o: -(o.confidence or 0.0))
    total = len(outcomes)
    points: list[CurvePoint] = []
    mishandled = 0
    for i, o in enumerate(candidates):
        automated = i + 1
        mishandled += o.wrong_if_auto
        last_of_tie = i + 1 == len(candidates) or candidates[i + 1].confidence != o.confidence
        if last_of_tie:
            points.append(
                CurvePoint(
                    threshold=float(o.confidence or 0.0),
                    coverage=automated / total,
                    risk=mishandled / automated,
                    automated=automated,
                    mishandled=mishandled,
                )
            )
    return points
