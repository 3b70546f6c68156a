"""The periodic jobs, one list for both queue backends.

With RQ, `manage.py rqcron triage.cron` registers each entry with RQ's cron scheduler (triage/cron.py);
the in-process backend runs the same list in its own loop. Each job takes no arguments and is safe to
run twice at once or to miss a beat: it reads its work from the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from triage.tasks import checkpoints_prune_task


class ScheduledJob(NamedTuple):
    name: str
    func: Callable[[], object]
    every_seconds: int


def scheduled_jobs() -> list[ScheduledJob]:
    return [
        # Retention counts in days: hourly is prompt enough, and a pass is bounded (see checkpoints_prune).
        ScheduledJob("checkpoints-prune", checkpoints_prune_task, 3600),
    ]
