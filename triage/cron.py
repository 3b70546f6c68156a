"""RQ's cron configuration: `manage.py rqcron triage.cron` (django-rq) enqueues every scheduled job
(triage/schedule.py) on the default queue at its interval, for the RQ workers to run.

Registering at import is RQ's documented form for a cron configuration module (`rq.cron.register`).
"""

from __future__ import annotations

from rq import cron

from triage.schedule import scheduled_jobs

for job in scheduled_jobs():
    # A detached job (a classifier's training) gets its own time limit, not the queue's default for runs.
    cron.register(
        job.func, "default", interval=job.every_seconds, name=job.name, job_timeout=job.detached_seconds or None
    )
