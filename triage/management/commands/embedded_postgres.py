from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.embedded_postgres import embedded_server_uri, stop_embedded_database


class Command(BaseCommand):
    help = "Status or stop of the embedded PostgreSQL (it starts by itself when a command needs it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "action", choices=["status", "stop"], help="status starts the server when it is not running"
        )

    def handle(self, *args: object, action: str, **options: object) -> None:
        if settings.DATABASE_URL:
            raise CommandError("DATABASE_URL is set: this deployment uses an external PostgreSQL.")
        data_dir = settings.EMBEDDED_POSTGRES_DIR
        if action == "status":
            uri = embedded_server_uri(data_dir=data_dir, database=settings.DATABASES["default"]["NAME"])
            self.stdout.write(f"embedded PostgreSQL at {data_dir}: {uri}")
        elif stop_embedded_database(data_dir=data_dir):
            self.stdout.write("stopped")
        else:
            self.stdout.write("not running")
