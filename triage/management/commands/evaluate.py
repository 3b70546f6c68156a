import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from triage.datasets import DatasetError, dataset_load
from triage.evaluation import evaluate_dataset, isolated_database
from triage.evaluation_report import report_write
from triage.management.commands._progress import Bars


class Command(BaseCommand):
    help = (
        "Learn from DATASET's examples, triage every ticket through the real chain (gated, then with the gates "
        "off) in a throw-away database, and print the figures. --json: one JSON object on the last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", type=Path)
        parser.add_argument("--json", action="store_true", help="Print the report as one JSON line.")
        parser.add_argument("--limit", type=int, default=None, help="Only the first N tickets.")
        parser.add_argument("--no-ungated", action="store_true", help="Skip the run with every gate switched off.")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--report",
            type=Path,
            default=None,
            metavar="DIR",
            help="Also write report.json, a per-category table (CSV, Markdown) and PNG charts into DIR.",
        )
        parser.add_argument("--human-cost", type=Decimal, default=None, help="Dollars per ticket a person costs.")
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
        human_cost = options["human_cost"] or settings.TRIAGE_HUMAN_COST_PER_TICKET
        provider = options["provider"]
        if provider == "anthropic" and not (settings.ANTHROPIC_API_KEY or getattr(settings, "ANTHROPIC_BASE_URL", "")):
            raise CommandError(
                "--provider anthropic needs ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL of a compatible server)"
            )
        bars = Bars(enabled=not options["no_progress"])
        try:
            with isolated_database():
                report = evaluate_dataset(
                    dataset=dataset,
                    human_cost=human_cost,
                    progress=bars,
                    limit=options["limit"],
                    with_ungated=not options["no_ungated"],
                    provider=provider,
                    details=options["report"] is not None,
                )
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
        ("automatable share automated", "automatable_share_automated", "automatable"),
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
    if report["escalations_by_gate"]:
        lines.append("escalations by gate: " + ", ".join(f"{g} {n}" for g, n in report["escalations_by_gate"].items()))
    return "\n".join(lines)
