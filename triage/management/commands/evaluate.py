import json
import os
from argparse import ArgumentTypeError
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, transaction

from integrations.embeddings import MODEL_NAME
from integrations.management.arguments import amount, at_least_one, at_least_zero
from triage.datasets import DatasetError, dataset_load
from triage.embedding import embedding_memo, memo_load, memo_save
from triage.evaluation import evaluate_dataset, evaluation_examples, held_out_categories, isolated_database
from triage.evaluation_report import report_write
from triage.fitcache import FitReuse, evaluation_fit_key, fit_cache_load, fit_cache_save
from triage.management.commands._policy import policy_option_check
from triage.management.commands._progress import Bars


class Command(BaseCommand):
    help = (
        "Learn from DATASET's examples, triage every ticket through the real chain (gated, then with the gates "
        "off) in a throw-away database, and print the figures. --json: one JSON object on the last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", type=Path)
        parser.add_argument("--json", action="store_true", help="Print the report as one JSON line.")
        parser.add_argument("--limit", type=at_least_one, default=None, help="Only the first N tickets.")
        parser.add_argument(
            "--sample",
            type=int,
            default=None,
            metavar="N",
            help="Only N tickets spread evenly over tickets.csv (every k-th, the same ones on every run): a "
            "faster run that keeps the file's mix (out-of-scope tickets are often at its end, where --limit "
            "never reaches).",
        )
        parser.add_argument("--no-ungated", action="store_true", help="Skip the run with every gate switched off.")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--report",
            type=Path,
            default=None,
            metavar="DIR",
            help="Also write report.json, a per-category table (CSV, Markdown) and PNG charts into DIR.",
        )
        parser.add_argument("--human-cost", type=amount, default=None, help="Dollars per ticket a person costs.")
        parser.add_argument(
            "--target",
            type=_targets,
            default=None,
            help="Maximum mishandled rate among auto-handled tickets, e.g. 0.01 (default: the gate policy's, 1%%). "
            "Several, comma-separated (0.005,0.01,0.02): trained once, the tickets triaged again under each.",
        )
        parser.add_argument(
            "--confidence",
            type=float,
            default=None,
            help="Confidence of the guarantee, e.g. 0.9 (default: the gate policy's, 90%%).",
        )
        parser.add_argument(
            "--out-of-scope-share",
            type=float,
            default=None,
            help="Share of requests no category covers that the thresholds are chosen for, e.g. 0.1 (default: the "
            "gate policy's, 5%%; 0 states that the categories cover every request).",
        )
        parser.add_argument(
            "--hold-out",
            type=at_least_zero,
            default=0,
            help="Take N non-money categories out before training: their tickets become in-domain out-of-scope.",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="Processes that embed, fit the classifier and triage tickets side by side (default: the machine's "
            "cores, at most 4; 1: one after the other in this process). The figures do not depend on it.",
        )
        parser.add_argument(
            "--refit",
            action="store_true",
            help="Fit the classifier even when an earlier evaluation of the same examples kept its fit (by default "
            "that fit is reused: the same model, so the same figures, without the fitting time).",
        )
        parser.add_argument(
            "--provider",
            default="local",
            choices=sorted(settings.TRIAGE_PROVIDERS),
            help="Reasoning provider: 'anthropic' asks Claude when the local classifier is unsure, and drafts with it "
            "(needs ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL).",
        )

    def handle(self, *args: object, **options: Any) -> None:
        try:
            dataset = dataset_load(options["dataset"])
        except DatasetError as exc:
            raise CommandError(str(exc)) from exc
        human_cost = settings.TRIAGE_HUMAN_COST_PER_TICKET if options["human_cost"] is None else options["human_cost"]
        provider = options["provider"]
        if provider == "anthropic" and not (settings.ANTHROPIC_API_KEY or getattr(settings, "ANTHROPIC_BASE_URL", "")):
            raise CommandError(
                "--provider anthropic needs ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL of a compatible server)"
            )
        targets = options["target"] or [None]
        policy_option_check("target", "target_mishandled_rate", targets)
        policy_option_check("confidence", "guarantee_confidence", [options["confidence"]])
        policy_option_check("out-of-scope-share", "out_of_scope_share", [options["out_of_scope_share"]])
        workers = min(4, os.cpu_count() or 1) if options["workers"] is None else options["workers"]
        if workers < 1:
            raise CommandError(f"--workers must be at least 1, not {workers}")
        bars = Bars(enabled=not options["no_progress"])
        try:
            with embedding_memo() as memo:  # one memory of vectors for every run
                # The configured database's embedding cache serves the throw-away one, and keeps what it adds.
                texts = [e.text for e in dataset.examples] + [t.text for t in dataset.tickets]
                known = _cache_use(memo_load, memo, texts)
                # The classifier an earlier evaluation fitted on these examples, from the configured database
                # too (`triage.fitcache`): used when the training set is the very same.
                examples = evaluation_examples(
                    dataset=dataset, held_out=held_out_categories(dataset=dataset, count=options["hold_out"])
                )
                key = evaluation_fit_key(examples=examples, embedder=MODEL_NAME)
                reuse = FitReuse(key=key) if options["refit"] else _cache_use(fit_cache_load, key)
                with isolated_database():
                    report = evaluate_dataset(
                        dataset=dataset,
                        human_cost=human_cost,
                        progress=bars,
                        limit=options["limit"],
                        sample=options["sample"],
                        with_ungated=not options["no_ungated"],
                        provider=provider,
                        target=targets[0],
                        also_targets=targets[1:],
                        confidence=options["confidence"],
                        out_of_scope_share=options["out_of_scope_share"],
                        hold_out=options["hold_out"],
                        details=options["report"] is not None,
                        workers=workers,
                        fit_reuse=reuse,
                    )
                stored = _cache_use(memo_save, memo) if known is not None else None
                fits_kept = _cache_use(fit_cache_save, reuse) if reuse is not None else None
                if not options["no_progress"]:
                    self.stderr.write(
                        "embedding cache: the configured database cannot be read; every text was embedded"
                        if known is None
                        else f"embedding cache: {known} vectors found, {stored} new ones kept"
                    )
                    self.stderr.write(_fit_note(reuse, kept=fits_kept, refit=options["refit"]))
        except ValueError as exc:  # e.g. more categories held out than there are
            raise CommandError(str(exc)) from exc
        finally:
            bars.close()
        if options["report"] is not None:
            written = report_write(report=report, directory=options["report"])
            report = {k: v for k, v in report.items() if k not in ("categories", "risk_coverage")}
            self.stderr.write("Report written: " + ", ".join(str(p) for p in written))
        if options["json"]:
            self.stdout.write(json.dumps(report, sort_keys=True))
        else:
            self.stdout.write(render_report(report))


def _cache_use[T](use: Callable[..., T], *args: Any) -> T | None:
    """`use(*args)` on the configured database's caches (embeddings, kept fits); None when that database cannot
    be read (not created or not migrated yet): the evaluation then embeds and fits everything, as it always
    could."""
    try:
        with transaction.atomic():
            return use(*args)
    except DatabaseError:
        return None


def _fit_note(reuse: FitReuse | None, *, kept: int | None, refit: bool) -> str:
    if reuse is not None and reuse.reused:
        return "classifier: the fit an earlier evaluation kept for these examples was reused (--refit fits again)"
    if kept is None:
        return "classifier: fitted; the configured database cannot be read, so the fit was not kept"
    return f"classifier: fitted{' (--refit)' if refit else ''}, and kept for the next evaluation of these examples"


def _targets(raw: str) -> list[float]:
    try:
        return [float(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise ArgumentTypeError(f"not a number or comma-separated numbers: {raw!r}") from None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:6.1%}"


def render_report(report: dict) -> str:
    lines = [f"Dataset {report['dataset']}: {report['tickets']} tickets"]
    rows = [
        ("automation rate", "automation_rate"),
        ("mishandled rate", "mishandled_rate"),
        ("accuracy (in scope)", "accuracy"),
        ("chain reliability, predicted", "chain_reliability_predicted"),
        ("chain reliability, measured", "chain_reliability_measured"),
    ]
    ungated = report.get("ungated")
    lines.append(f"{'':32}{'gated':>10}{'ungated':>10}")
    for title, key in rows:
        lines.append(f"{title:32}{_pct(report[key]):>10}{_pct(ungated[key]) if ungated else '':>10}")
    for title, key in (
        ("money auto-executed", "money_auto_executed"),
        ("money tickets auto-handled", "money_tickets_auto_handled"),
        ("money asked, auto-handled", "money_asked_auto_handled"),
    ):
        if report.get(key) is None:
            continue
        lines.append(f"{title:32}{report[key]:>10}{ungated.get(key, '') if ungated else '':>10}")
    for title, key, judged in (
        ("retrieval hit rate", "retrieval_hit_rate", "retrieval_judged"),
        ("draft cites its category", "draft_cites_category_article", "draft_citations_judged"),
    ):
        if report.get(key) is not None:
            lines.append(f"{title:32}{_pct(report[key]):>10}  (of {report[judged]})")
    for step, value in report["step_reliability"].items():
        lines.append(f"{'  step ' + step:32}{_pct(value):>10}")
    lines.append(
        f"{'saved cost':32}{report['saved_cost']:>10.2f}  (human cost ${report['human_cost_per_ticket']:.2f}/ticket)"
    )
    if report.get("provider", "local") != "local" or report.get("llm_cost"):
        lines.append(
            f"{'model spend (' + report.get('provider', 'local') + ')':32}${report['llm_cost']:.4f}  "
            f"(${report['cost_per_ticket']:.5f}/ticket, {report['tokens_per_ticket']:.0f} tokens/ticket: "
            f"in {report['tokens_in']}, out {report['tokens_out']}, cache write {report['cache_write_tokens']}, "
            f"cache read {report['cache_read_tokens']})"
        )
    if report.get("target_mishandled_rate") is not None:
        lines.append(
            f"{'mishandled among auto-handled':32}{_pct(report['mishandled_among_auto_handled']):>10}"
            f"  target {report['target_mishandled_rate']:.2%} at {report['guarantee_confidence']:.0%} confidence"
            + (
                f", {report['out_of_scope_share'] * 100:g}% of requests out of scope assumed"
                if report.get("out_of_scope_share") is not None
                else ""
            )
        )
    lines.append(
        f"{'automatable share automated':32}{_pct(report.get('automatable_share_automated')):>10}"
        f"  (automation rate {_pct(report['automation_rate']).strip()}; {report.get('automatable_tickets')} "
        "automatable tickets: in scope, not moving money)"
    )
    for title, key in (
        ("out of scope, other business", "out_of_scope_other_business"),
        ("out of scope, inside the domain", "out_of_scope_in_domain"),
        ("money tickets", "money_tickets"),
    ):
        kind = report.get(key)
        if kind and kind["tickets"]:
            lines.append(f"{title:32}{kind['auto_handled']:>10} auto-handled of {kind['tickets']}")
    if len(report.get("by_target", [])) > 1:
        lines.append("per target (same classifier, the same tickets triaged again):")
        lines.append(f"  {'target':>8}{'mishandled among auto':>24}{'automation':>12}{'automatable automated':>24}")
        for row in report["by_target"]:
            scoped = row["in_scope_only"]
            lines.append(
                f"  {row['target_mishandled_rate']:>8.2%}{_pct(row['mishandled_among_auto_handled']):>24}"
                f"{_pct(row['automation_rate']):>12}{_pct(row['automatable_share_automated']):>24}"
                f"  out of scope auto-handled {row['out_of_scope_other_business']['auto_handled']}"
                f"+{row['out_of_scope_in_domain']['auto_handled']}; in scope only: "
                f"{_pct(scoped['mishandled_among_auto_handled']).strip()} among {scoped['auto_handled']} auto-handled "
                f"of {scoped['tickets']}; money tickets auto-handled {row['money_tickets']['auto_handled']}"
            )
    if report["escalations_by_gate"]:
        lines.append("escalations by gate: " + ", ".join(f"{g} {n}" for g, n in report["escalations_by_gate"].items()))
    return "\n".join(lines)
