"""The periodic jobs, one list for both queue backends.

Every sweeper runs the jobs that are due (`scheduled_jobs_run_due`, called by `triage.tasks.sweep_safely`):
the in-process worker's sweeper thread and every RQ worker (`triage.worker.TriageWorker`), so no process of
its own is needed. `manage.py rqcron triage.cron` (RQ's cron scheduler, triage/cron.py) can run them instead.
Each job takes no arguments and is safe to run twice at once or to miss a beat: it reads its work from the
database.

A quick job (a bounded retention pass) runs in the sweeper itself. A job that may take minutes (training a
classifier) is *detached* (`ScheduledJob.detached_seconds`): run in the sweeper, it would stop the sweeps
for as long (no lost run handed back meanwhile; `/readyz` reports the in-process worker unseen after
`TRIAGE_WORKER_SEEN_SECONDS`, and an RQ worker neither takes jobs nor beats its heartbeat), and its fits
would fork their processes from the sweeper's process: in the in-process default that is the web process
with its threads, and a child forked while another thread holds a lock (logging's, the import lock) can
wait on it for ever. So with RQ it is enqueued on the default queue, for a work-horse, with its own time
limit (RQ's default of 10 minutes is for runs); with the in-process worker it runs as its management command
in a child process started afresh (`subprocess`, not a fork), stopped when it outlives its time limit; with
the `immediate` and `none` backends (tests, benchmarks), which have no worker, in the sweeper as before.
Either way one at a time per process: a beat that finds the previous one still queued or running starts
none (the job's own lock, if it has one, keeps processes apart).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import django_rq
from django.conf import settings
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from triage.learning import classifier_retrain_task
from triage.retention import checkpoints_prune_task, deliveries_prune_task

#: The longest a detached classifier retrain may run (banking77's 3,080 examples fit in under a minute on
#: two cores; the limit is for a fit that never ends, not for a slow one).
RETRAIN_TIMEOUT_SECONDS = 3600


class ScheduledJob(NamedTuple):
    name: str
    func: Callable[[], object]
    every_seconds: int
    #: 0: quick, run in the sweeper. Otherwise the job is detached (module docstring), given at most this long.
    detached_seconds: int = 0
    #: The management command (and its arguments) that runs a detached job in a process of its own.
    command: tuple[str, ...] = ()


def scheduled_jobs() -> list[ScheduledJob]:
    return [
        # Retention counts in days: hourly is prompt enough, and a pass is bounded (see checkpoints_prune).
        ScheduledJob("checkpoints-prune", checkpoints_prune_task, 3600),
        # Webhook delivery records past the replay-retention period (days too), bounded the same way.
        ScheduledJob("deliveries-prune", deliveries_prune_task, 3600),
        # Labels come in through the day; a daily challenger is enough, and it trains only when at least
        # enough new labelled tickets are there to certify the target on (otherwise it returns at once).
        ScheduledJob(
            "classifier-retrain",
            classifier_retrain_task,
            86400,
            detached_seconds=RETRAIN_TIMEOUT_SECONDS,
            command=("retrain",),
        ),
    ]


logger = logging.getLogger(__name__)
_last_run: dict[str, float] = {}
_last_run_lock = threading.Lock()


def scheduled_jobs_run_due(*, now: float | None = None) -> list[str]:
    """Run the jobs whose interval has passed since this process last ran them (a job's first beat comes one
    interval after the process starts); returns their names. A job that fails is logged and waits for its
    next beat; the others still run."""
    now = time.monotonic() if now is None else now
    children_reap(now=now)
    ran: list[str] = []
    for job in scheduled_jobs():
        with _last_run_lock:
            last = _last_run.setdefault(job.name, now)
            if now - last < job.every_seconds:
                continue
            _last_run[job.name] = now
        try:
            if not job.detached_seconds or settings.TRIAGE_QUEUE_BACKEND in ("immediate", "none"):
                job.func()
            elif settings.TRIAGE_QUEUE_BACKEND == "rq":
                _enqueue(job)
            else:
                _child_start(job, now=now)
        except Exception:
            logger.exception("scheduled job %s failed; it runs again at its next beat", job.name)
        ran.append(job.name)
    return ran


def _enqueue(job: ScheduledJob) -> None:
    """The detached job on the default queue, under one job id, unless the last one is still waiting or running."""
    queue = django_rq.get_queue("default")
    job_id = f"scheduled-{job.name}"
    try:
        status = Job.fetch(job_id, connection=queue.connection).get_status(refresh=False)
    except NoSuchJobError:
        status = None
    if status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
        logger.info("scheduled job %s: the last one is still %s; none enqueued this beat", job.name, status)
        return
    queue.enqueue(job.func, job_id=job_id, job_timeout=job.detached_seconds, description=f"scheduled: {job.name}")
    logger.info("scheduled job %s enqueued (at most %s s)", job.name, job.detached_seconds)


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    deadline: float
    stopping: bool = False


_children: dict[str, _Child] = {}
_children_lock = threading.Lock()


def _child_start(job: ScheduledJob, *, now: float) -> None:
    """The detached job as `manage.py <command>` in a new process (its output goes where this process's does)."""
    with _children_lock:
        running = _children.get(job.name)
        if running is not None and running.process.poll() is None:
            logger.info("scheduled job %s: the last one (pid %s) is still running", job.name, running.process.pid)
            return
        argv = [sys.executable, str(settings.BASE_DIR / "manage.py"), *job.command]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, cwd=settings.BASE_DIR)
        _children[job.name] = _Child(process, deadline=now + job.detached_seconds)
    logger.info("scheduled job %s started as pid %s: %s", job.name, process.pid, " ".join(job.command))


def children_reap(*, now: float | None = None) -> dict[str, int | None]:
    """Collect the detached jobs' processes that ended (logging how), and stop one past its deadline: SIGTERM,
    then SIGKILL at the next call. Returns each remaining or just-ended child's exit code (None: running)."""
    now = time.monotonic() if now is None else now
    seen: dict[str, int | None] = {}
    with _children_lock:
        for name, child in list(_children.items()):
            code = child.process.poll()
            seen[name] = code
            if code is not None:
                del _children[name]
                log = logger.info if code == 0 else logger.error
                log("scheduled job %s (pid %s) ended with exit code %s", name, child.process.pid, code)
            elif now >= child.deadline:
                logger.error("scheduled job %s (pid %s) ran past its time limit: stopping it", name, child.process.pid)
                if child.stopping:
                    child.process.kill()
                else:
                    child.process.terminate()
                    child.stopping = True
    return seen
