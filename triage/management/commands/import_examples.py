from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from triage.datasets import DatasetError, dataset_load
from triage.management.commands._progress import Bars
from triage.services import categories_import, classifier_train, examples_import


class Command(BaseCommand):
    help = "Import a dataset folder's categories.csv and examples.csv, then train the local classifier."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", type=Path, help="A dataset folder (categories.csv, examples.csv).")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, dataset: Path, no_progress: bool, **options: object) -> None:
        try:
            data = dataset_load(dataset, tickets=False)
        except DatasetError as exc:
            raise CommandError(str(exc)) from exc
        bars = Bars(enabled=not no_progress)
        try:
            categories_import(rows=list(data.categories.items()))
            rows = [(e.text, e.label) for e in data.examples]
            created = examples_import(rows=rows, progress=bars("embedding examples", len(rows)))
        finally:
            bars.close()
        self.stdout.write(f"{len(data.categories)} categories, {created} new examples ({len(rows)} in the file).")
        self.stdout.write("Training the local classifier ...")
        trained = classifier_train()
        self.stdout.write(
            f"Trained on {trained.example_count} examples; "
            f"suggested confidence threshold {trained.suggested_threshold:.2f}."
        )
