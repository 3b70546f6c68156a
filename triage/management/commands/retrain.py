from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.management.arguments import at_least_one
from triage.learning import classifier_retrain
from triage.management.commands._policy import policy_option_check


class Command(BaseCommand):
    help = (
        "Train a challenger classifier on the examples and the inbox labels, compare it with the active version "
        "on the newest labelled tickets neither has seen, and make it active only when it auto-handles more of "
        "them at the same target. Scheduled daily in the RQ deployment (triage/schedule.py)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--min-holdout",
            type=at_least_one,
            default=None,
            help="Held-out labelled tickets needed to compare (default: the fewest that could certify the target, "
            "230 at 1%% and 90%%).",
        )
        parser.add_argument(
            "--target",
            type=float,
            default=None,
            help="Most mishandled share among auto-handled tickets both are held to (default: the gate policy's "
            "target, set in admin).",
        )
        parser.add_argument(
            "--confidence",
            type=float,
            default=None,
            help="Confidence of that guarantee (default: the gate policy's, set in admin).",
        )
        parser.add_argument("--force", action="store_true", help="Make the new version active without comparing.")

    def handle(self, *args: object, **options: Any) -> None:
        policy_option_check("target", "target_mishandled_rate", [options["target"]])
        policy_option_check("confidence", "guarantee_confidence", [options["confidence"]])
        try:
            outcome = classifier_retrain(
                min_holdout=options["min_holdout"],
                force=options["force"],
                target=options["target"],
                confidence=options["confidence"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if outcome.challenger is None:
            self.stdout.write(f"Nothing trained: {outcome.reason}.")
            return
        verb = "promoted: new runs use it" if outcome.promoted else "kept as a challenger; the active version stays"
        self.stdout.write(f"Version #{outcome.challenger.pk} {verb} ({outcome.reason}).")
        for name, score in (("challenger", outcome.challenger_score), ("active", outcome.active_score)):
            if score is not None:
                threshold = "refused" if score.threshold is None else f"{score.threshold:.3f}"
                traffic = (
                    f"automates {score.traffic_automated} of the held-out period's {score.traffic} tickets "
                    f"({score.traffic_automation_rate:.1%}); "
                    if score.traffic
                    else ""
                )
                self.stdout.write(
                    f"  {name:10} threshold {threshold}: {traffic}auto-handles {score.automated}/{score.judged} "
                    f"held-out labelled tickets ({score.automation_rate:.1%}), {score.wrong} wrong "
                    f"({score.error_rate:.1%})"
                )
