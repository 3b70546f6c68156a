import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# The embedded default works runs in this process: its worker and sweeper start with the server, so
# runs a previous process left unfinished are taken up without anyone running `resume_runs`.
from triage.tasks import inprocess_start  # noqa: E402 - needs the settings loaded by the line above

inprocess_start()
