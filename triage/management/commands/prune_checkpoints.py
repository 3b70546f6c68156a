from argparse import ArgumentParser

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from triage.models import RetentionPolicy
from triage.retention import checkpoints_prune


class Command(BaseCommand):
    help = (
        "Slim the step payloads of runs finished longer ago than the retention policy says (admin: Retention "
        "policy); figures are kept. The scheduled job does the same every hour."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Checkpoints per transaction.")
        parser.add_argument("--max-batches", type=int, default=200, help="Transactions at most in this pass.")

    def handle(self, *args: object, batch_size: int, max_batches: int, **options: object) -> None:
        if batch_size < 1 or max_batches < 1:
            raise CommandError("--batch-size and --max-batches must be at least 1")
        days = RetentionPolicy.get_solo().slim_after_days
        if not days:
            self.stdout.write("Retention policy: keep forever (no days set); nothing pruned.")
            return
        result = checkpoints_prune(now=timezone.now(), batch_size=batch_size, max_batches=max_batches)
        self.stdout.write(
            f"Slimmed {result.step_runs} checkpoint(s) of {result.runs} run(s) finished over {days} day(s) ago: "
            f"{result.bytes_before} -> {result.bytes_after} bytes of payload."
            + ("" if result.done else " More remain: run it again, or let the scheduled job continue.")
        )
