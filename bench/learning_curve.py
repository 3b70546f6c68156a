"""Learning from the inbox, streamed: does automation climb while the mishandled rate stays low?

Starts from 10 examples per category of a dataset (default ../shared/datasets/banking77), then feeds its
tickets in order through the real chain (local providers, gates on), in a throw-away database. A simulated
agent decides every ticket sent to a person with its true label, through the real inbox service
(`approval_decide`): approve when the proposed category is right, edit the category when it is not, reject
when no category fits (out of scope). Those decisions become labels (`triage.services.ticket_label_record`).
With `--mark-mishandled` the agent also marks every auto-handled ticket whose category was wrong as
mishandled (`triage.services.ticket_mark_mishandled`), as staff do when the customer writes back: the
product's other source of labels, and the only one above the threshold in force (a `wrong` label). By
default it does not (the issue's agent decides the escalated tickets only), so no auto-handled ticket is labelled.
Every `--retrain-every` tickets `classifier_retrain` trains a challenger and promotes it only when it beats
the active version on held-out labels, and the thresholds in force are chosen again from the labels so far
(`triage.autonomy.thresholds_forget`: the product chooses again every few minutes, which under real traffic
is a handful of tickets but here would be most of a run, so when it chose depended on the machine's speed).
Per window it prints the automation rate and the mishandled rate (judged by the reference labels, the same
definition as `evaluate`), then one JSON line of every figure.

    uv run python bench/learning_curve.py [--dataset ../shared/datasets/banking77] [--seed-per-category 10]
                                          [--retrain-every 500] [--limit N] [--target 0.01]
                                          [--min-per-category 30] [--mark-mishandled]
                                          [--out-of-scope-share 0.05]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEV_MODE", "1")
os.environ.setdefault("TRIAGE_LOG_LEVEL", "ERROR")
# Decisions re-queue their run; the bench measures triage, not the execution of what was decided.
os.environ["TRIAGE_QUEUE_BACKEND"] = "none"

import django

django.setup()

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from approvals.models import ApprovalRequest, Decision
from approvals.services import DecisionError, approval_decide
from triage.autonomy import thresholds_forget
from triage.contracts import OUT_OF_SCOPE, TicketIn
from triage.datasets import dataset_load
from triage.embedding import embed_texts
from triage.evaluation import isolated_database
from triage.learning import classifier_retrain
from triage.metrics import ReferenceLabels, chain_figures
from triage.models import PipelineRun
from triage.pipeline.router import Router
from triage.pipeline.runner import run_pipeline
from triage.selectors import gate_policy_current, ticket_category_acted_on
from triage.services import (
    categories_import,
    classifier_train,
    examples_import,
    gate_policy_save,
    ticket_ingest,
    ticket_mark_mishandled,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "banking77")
    parser.add_argument("--seed-per-category", type=int, default=10)
    parser.add_argument("--retrain-every", type=int, default=500)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N tickets.")
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="The gate policy's maximum mishandled rate among auto-handled tickets (default: the policy's, 1%%); "
        "thresholds and retrain's comparison both use it.",
    )
    parser.add_argument(
        "--min-per-category",
        type=int,
        default=None,
        help="The gate policy's labelled tickets a category needs before any is automated (default: the policy's, 30).",
    )
    parser.add_argument(
        "--out-of-scope-share",
        type=float,
        default=None,
        help="The gate policy's share of requests no category covers, which the thresholds are calibrated for "
        "(default: the policy's, 5%%; the datasets' streams hold none).",
    )
    parser.add_argument(
        "--mark-mishandled",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="The simulated agent also marks wrongly auto-handled tickets as mishandled (default: no).",
    )
    args = parser.parse_args()

    data = dataset_load(args.dataset)
    seed: list[tuple[str, str]] = []
    per_category: dict[str, int] = defaultdict(int)
    for example in data.examples:
        if per_category[example.label] < args.seed_per_category:
            per_category[example.label] += 1
            seed.append((example.text, example.label))
    tickets = data.tickets[: args.limit] if args.limit else data.tickets
    truth = ReferenceLabels(money_labels=frozenset(data.money_labels))
    windows: list[dict[str, Any]] = []
    started = time.monotonic()
    with isolated_database():
        categories_import(rows=list(data.categories.items()))
        policy = gate_policy_current()
        if args.target is not None:
            policy.target_mishandled_rate = args.target
        if args.min_per_category is not None:
            policy.min_labelled_per_category = args.min_per_category
        if args.out_of_scope_share is not None:
            policy.out_of_scope_share = args.out_of_scope_share
        gate_policy_save(policy=policy, actor=None)
        examples_import(rows=seed)
        classifier_train()
        agent = get_user_model().objects.create_user(username="simulated-agent", password="unused-in-the-bench")
        agent.user_permissions.add(
            Permission.objects.get(codename="approve_money", content_type__app_label="approvals")
        )
        agent = get_user_model().objects.get(pk=agent.pk)  # fresh permission cache
        embed_texts([t.text for t in tickets])
        print(f"{args.dataset.name}: {len(seed)} seed examples, {len(tickets)} tickets", flush=True)
        for start in range(0, len(tickets), args.retrain_every):
            # The thresholds are chosen again at each window start, from every label so far: under real
            # traffic the product's time-to-live is a handful of tickets, here it would be a whole run.
            thresholds_forget()
            router = Router.for_run(PipelineRun())
            window = tickets[start : start + args.retrain_every]
            run_ids = []
            for row in window:
                result = ticket_ingest(
                    ticket_in=TicketIn(source="bench", external_id=f"{data.name}:{row.line}", body=row.text),
                    reference_label=row.label,
                    enqueue=False,
                )
                run = run_pipeline(run_id=result.run.pk, router=router.fresh())
                run_ids.append(run.pk)
                approval = ApprovalRequest.objects.filter(run_id=result.run.pk).first()
                if approval is not None:
                    _decide(approval=approval, label=row.label, agent=agent)
                elif args.mark_mishandled:
                    _mark_if_wrong(run=run, label=row.label, agent=agent)
            figures = chain_figures(
                runs=PipelineRun.objects.filter(pk__in=run_ids), truth=truth, human_cost=Decimal("4")
            )
            outcome = classifier_retrain()
            window_figures = {
                "tickets": f"{start + 1}-{start + len(window)}",
                # The pooled threshold the chooser put in force for the policy's target (1.0: none certified).
                "threshold_in_force": _in_force(router),
                "automation_rate": figures.automation_rate,
                "mishandled_rate": figures.mishandled_rate,
                "mishandled_among_auto_handled": figures.mishandled / figures.auto_handled
                if figures.auto_handled
                else None,
                "auto_handled": figures.auto_handled,
                "mishandled": figures.mishandled,
                "retrain": "promoted" if outcome.promoted else "kept" if outcome.challenger else "nothing trained",
                "retrain_reason": outcome.reason,
            }
            windows.append(window_figures)
            print(
                f"window {window_figures['tickets']:>11}: threshold {_in_force(router):.3f}  "
                f"automation {figures.automation_rate:6.1%}  mishandled {figures.mishandled_rate:6.2%} of all, "
                f"{figures.mishandled} of {figures.auto_handled} auto-handled (target "
                f"{policy.target_mishandled_rate:.1%})  then retrain: "
                f"{window_figures['retrain']} ({outcome.reason})",
                flush=True,
            )
    rates = [w["automation_rate"] for w in windows]
    summary = {
        "dataset": data.name,
        "seed_examples": len(seed),
        "tickets": len(tickets),
        "retrain_every": args.retrain_every,
        "target_mishandled_rate": policy.target_mishandled_rate,
        "min_labelled_per_category": policy.min_labelled_per_category,
        "out_of_scope_share": policy.out_of_scope_share,
        "mark_mishandled": args.mark_mishandled,
        "windows": windows,
        "automation_first": rates[0] if rates else None,
        "automation_last": rates[-1] if rates else None,
        "mishandled_among_auto_handled_max": max((w["mishandled_among_auto_handled"] or 0.0) for w in windows)
        if windows
        else None,
        "mishandled_rate_max": max((w["mishandled_rate"] or 0.0) for w in windows) if windows else None,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary, sort_keys=True))


def _in_force(router: Router) -> float:
    """The pooled threshold in force (1.0 when the chooser certified none), else the classifier's own."""
    if router.thresholds is None:
        return router.classifier_threshold
    return 1.0 if router.thresholds.threshold is None else router.thresholds.threshold


def _mark_if_wrong(*, run: PipelineRun, label: str, agent) -> None:
    """The simulated agent, after the customer wrote back: an auto-handled ticket whose category was wrong
    is marked mishandled (the same judgement as the figures': the category acted on against the label)."""
    if run.route != PipelineRun.Route.AUTO or run.status != PipelineRun.Status.COMPLETED:
        return
    if ticket_category_acted_on(ticket_id=run.ticket_id) != label:
        ticket_mark_mishandled(ticket_id=run.ticket_id, actor=agent)


def _decide(*, approval: ApprovalRequest, label: str, agent) -> None:
    """The simulated agent: approve a right proposal, correct a wrong one, reject what no category fits."""
    if label == OUT_OF_SCOPE:
        approval_decide(approval_id=approval.pk, actor=agent, verdict=Decision.Verdict.REJECT, reason="out of scope")
        return
    try:
        if approval.proposed_category == label:
            approval_decide(approval_id=approval.pk, actor=agent, verdict=Decision.Verdict.APPROVE)
        else:
            approval_decide(approval_id=approval.pk, actor=agent, verdict=Decision.Verdict.EDIT, category=label)
    except DecisionError:
        # The drafted reply failed a reply check (e.g. it promises money): a person rewrites it.
        approval_decide(
            approval_id=approval.pk,
            actor=agent,
            verdict=Decision.Verdict.EDIT,
            category=label,
            reply="Thank you for writing to us. A colleague is looking into this and will reply shortly.",
        )


if __name__ == "__main__":
    main()
