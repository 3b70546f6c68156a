"""The periodic jobs, one list for both queue backends.

Every sweeper runs the jobs that are due (`scheduled_jobs_run_due`, called by `triage.tasks.sweep_safely`):
the in-process worker's sweeper thread and every RQ worker (`triage.worker.TriageWorker`), so no process of
its own is needed. `manage.py rqcron triage.cron` (RQ's cron scheduler, triage/cron.py) can run them instead.
Each job takes no arguments and is safe to run twice at once or to miss a beat: it reads its work from the
database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from triage.learning import classifier_retrain_task
from triage.retention import checkpoints_prune_task, deliveries_prune_task


class ScheduledJob(NamedTuple):
    name: str
    func: Callable[[], object]
    every_seconds: int


def scheduled_jobs() -> list[ScheduledJob]:
    return [
        # Retention counts in days: hourly is prompt enough, and a pass is bounded (see checkpoints_prune).
        ScheduledJob("checkpoints-prune", checkpoints_prune_task, 3600),
        # Webhook delivery records past the replay-retention period (days too), bounded the same way.
        ScheduledJob("deliveries-prune", deliveries_prune_task, 3600),
        # Labels come in through the day; a daily challenger is enough, and it trains only when at least
        # enough new labelled tickets are there to certify the target on (otherwise it returns at once).
        ScheduledJob("classifier-retrain", classifier_retrain_task, 86400),
    ]


logger = logging.getLogger(__name__)
_last_run: dict[str, float] = {}
_last_run_lock = threading.Lock()


def scheduled_jobs_run_due(*, now: float | None = None) -> list[str]:
    """Run the jobs whose interval has passed since this process last ran them (a job's first beat comes one
    interval after the process starts); returns their names. A job that fails is logged and waits for its
    next beat; the others still run."""
    now = time.monotonic() if now is None else now
    ran: list[str] = []
    for job in scheduled_jobs():
        with _last_run_lock:
            last = _last_run.setdefault(job.name, now)
            if now - last < job.every_seconds:
                continue
            _last_run[job.name] = now
        try:
            job.func()
        except Exception:
            logger.exception("scheduled job %s failed; it runs again at its next beat", job.name)
        ran.append(job.name)
    return ran
