from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from triage.management.commands._progress import Bars
from triage.services import knowledge_base_import


class Command(BaseCommand):
    help = "Import Markdown articles (DIR/*.md) into the knowledge base: chunks + embeddings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, directory: Path, no_progress: bool, **options: object) -> None:
        if not directory.is_dir():
            raise CommandError(f"{directory}: not a folder")
        bars = Bars(enabled=not no_progress)
        try:
            articles = knowledge_base_import(
                directory=directory, progress=bars("importing articles", len(list(directory.glob("*.md"))))
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bars.close()
        chunks = sum(a.chunks.count() for a in articles)
        self.stdout.write(f"Imported {len(articles)} articles as {chunks} chunks.")
