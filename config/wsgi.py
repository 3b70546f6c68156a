import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Traces, when a collector is named (OTEL_EXPORTER_OTLP_ENDPOINT); set up in each gunicorn worker, after its fork.
from config.telemetry import telemetry_setup  # noqa: E402 - after the settings, like the import below

telemetry_setup()

# The embedded default works runs in this process: its worker and sweeper start with the server, so
# runs a previous process left unfinished are taken up without anyone running `resume_runs`.
from triage.tasks import inprocess_start  # noqa: E402 - needs the settings loaded by the line above

inprocess_start()
