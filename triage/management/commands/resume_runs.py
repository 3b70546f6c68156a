from django.core.management.base import BaseCommand

from triage.tasks import inprocess_drain, runs_resume


class Command(BaseCommand):
    help = "Re-submit runs that never finished (a worker stopped mid-run); finished steps are not redone."

    def handle(self, *args: object, **options: object) -> None:
        count = runs_resume()
        inprocess_drain()
        self.stdout.write(f"Resumed {count} run(s).")
