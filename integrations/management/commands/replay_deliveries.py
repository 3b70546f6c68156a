from django.core.management.base import BaseCommand, CommandError

from integrations.helpdesks.deliveries import failed_delivery_replay
from integrations.management.arguments import at_least_one
from integrations.models import FailedDelivery


class Command(BaseCommand):
    help = (
        "Replay kept (failed) webhook deliveries through the intake. By default only the retryable ones (a vendor "
        "API that did not answer: a Front event, a Zendesk requester); --all replays every open one, e.g. after a "
        "fix. Idempotent: a delivery makes its ticket once however often it is replayed. Safe to run from cron."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="Every open failed delivery, not only retryable ones.")
        parser.add_argument("--id", type=int, action="append", default=[], help="Only this failed delivery (repeat).")
        parser.add_argument("--limit", type=at_least_one, default=100, help="At most this many per run.")

    def handle(self, *args, all: bool, id: list[int], limit: int, **options):
        rows = FailedDelivery.objects.filter(status=FailedDelivery.Status.FAILED).order_by("received_at")
        if id:
            rows = rows.filter(pk__in=id)
            # A mistyped id replays nothing rather than the others without a word.
            unknown = sorted(set(id) - set(rows.values_list("pk", flat=True)))
            if unknown:
                raise CommandError(
                    f"no open failed delivery #{', #'.join(map(str, unknown))} (an id not kept, or replayed already); "
                    "nothing was replayed"
                )
        elif not all:
            rows = rows.filter(retryable=True)
        replayed = failing = 0
        for failed in rows[:limit]:
            outcome = failed_delivery_replay(failed=failed)
            if failed.status == FailedDelivery.Status.REPLAYED:
                replayed += 1
            else:
                failing += 1
                self.stdout.write(f"#{failed.pk} still failing ({outcome.status}): {failed.error}")
        self.stdout.write(f"failed deliveries replayed: {replayed} done, {failing} still failing")
