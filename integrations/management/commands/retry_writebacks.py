from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string

from integrations.management.arguments import at_least_one


class Command(BaseCommand):
    help = (
        "Retry write-backs (actions) that failed, e.g. while a helpdesk was down, and reconcile those a stopped "
        "worker left in flight (read back, not sent again). Actions whose run a worker holds are left to it; "
        "helpdesks whose circuit is open are left for a later run. Safe to run from cron."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=at_least_one, default=100, help="At most this many actions per run.")
        parser.add_argument(
            "--max-attempts", type=at_least_one, default=20, help="Leave actions tried this often alone."
        )

    def handle(self, *args, limit: int, max_attempts: int, **options):
        # The retry service lives with the domain; integrations reaches it by name only.
        retry = import_string(getattr(settings, "TRIAGE_WRITEBACK_RETRY_SERVICE", "triage.writeback.writebacks_retry"))
        counts = retry(limit=limit, max_attempts=max_attempts)
        self.stdout.write(
            f"write-backs retried: {counts['done']} done, {counts['failed']} still failing, "
            f"{counts.get('waiting', 0)} waiting for their helpdesk's circuit to close, "
            f"{counts.get('unknown', 0)} with an unknown outcome for a person to check, "
            f"{counts.get('busy', 0)} left to the worker holding their run or not readable yet"
        )
