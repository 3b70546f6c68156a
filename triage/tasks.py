"""The queue: one way in (`enqueue_run`, after commit), two ways to work it.

- `rq` (when REDIS_URL is set): django-rq's default queue, worked by `manage.py rqworker`.
- `inprocess` (the embedded default): a small thread pool inside this process.
- `immediate`: runs in the committing thread; for tests and the `evaluate` command.

All three call `run_task`, the same function, with the run's id.

The database, not the queue, is the source of truth: a run that the queue lost (Redis down at commit,
a worker killed mid-run, a web process restarted with runs in its pool) is handed back by `runs_sweep`,
which runs on its own inside every RQ worker (`triage.worker`) and inside the in-process worker.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

import django_rq
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import Q
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from triage.durability import connection_discard, connection_lost
from triage.models import PipelineRun
from triage.pipeline.runner import run_pipeline
from triage.preload import models_preload, models_refresh_safely
from triage.schedule import scheduled_jobs_run_due

logger = logging.getLogger(__name__)


def run_task(run_id: int) -> None:
    """The task: takes an id, loads the run, calls the runner. Running it twice does no harm.

    It starts on a connection known to work (one left broken by a database restart is replaced, and an
    unreachable database is waited for, with backoff, a bounded while). A connection lost once the run is
    taken ends the task with the error: the run keeps its status, and the sweeper hands it back once its
    lease has expired (`runner.run_pipeline`).
    """
    database_wait()
    run_pipeline(run_id=run_id)


def _discard_before_retry(_: object) -> None:
    connection_discard()


def database_wait(*, seconds: float | None = None) -> None:
    """Return once this thread's connection answers; a lost one is replaced, an outage waited out with backoff.

    Raises the connection error after `seconds` (default `TRIAGE_DB_WAIT`): the caller's work stays owed in
    the database and is picked up by a later sweep.
    """
    if connections["default"].in_atomic_block:
        return  # called inside the caller's transaction ('immediate' queue): its connection is the caller's
    close_old_connections()
    limit = float(getattr(settings, "TRIAGE_DB_WAIT", 30.0)) if seconds is None else seconds
    for attempt in Retrying(
        retry=retry_if_exception(connection_lost),
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
        stop=stop_after_delay(limit),
        before_sleep=_discard_before_retry,
        reraise=True,
    ):
        with attempt, connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")


def enqueue_run(*, run_id: int) -> None:
    """Start the run once the current transaction commits (immediately outside one).

    The rows are committed by then, so a queue that cannot take the run (Redis down) must not turn a
    saved ticket or decision into an error: it is logged, and `runs_sweep` hands the run over later.
    """
    transaction.on_commit(lambda: _submit_or_leave_to_sweeper(run_id))


def _submit_or_leave_to_sweeper(run_id: int) -> None:
    try:
        submit(run_id)
    except Exception:
        logger.exception("run %s could not be enqueued; the sweeper will enqueue it", run_id)


def _job_id(run_id: int) -> str:
    return f"triage-run-{run_id}"


def submit(run_id: int) -> None:
    backend = settings.TRIAGE_QUEUE_BACKEND
    if backend == "rq":
        queue = django_rq.get_queue("default")
        # A run handed back after its worker was killed is owed work, not failed: RQ had listed its job so.
        queue.failed_job_registry.remove(_job_id(run_id))
        queue.enqueue(run_task, run_id, job_id=_job_id(run_id))
    elif backend == "inprocess":
        _inprocess().submit(run_id)
    elif backend == "immediate":
        run_task(run_id)
    elif backend == "none":
        # Intake only: runs stay queued (benchmarks of the webhook path; `resume_runs` works them later).
        return
    else:
        raise ValueError(f"unknown TRIAGE_QUEUE_BACKEND {backend!r} (rq, inprocess, immediate or none)")


def queue_holds(run_id: int) -> bool:
    """Whether the queue still holds the run, waiting for a worker (then the sweeper leaves it there)."""
    backend = settings.TRIAGE_QUEUE_BACKEND
    if backend == "rq":
        queue = django_rq.get_queue("default")
        try:
            job = Job.fetch(_job_id(run_id), connection=queue.connection)
        except NoSuchJobError:
            return False
        # A STARTED job may belong to a worker that was killed -9: the run's lease decides, not RQ.
        return job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
    if backend == "inprocess":
        return _worker is not None and _worker.holds(run_id)
    return False


@dataclass(frozen=True)
class Sweep:
    """What one sweep did: runs handed back to the queue, and those the queue could not take."""

    requeued: list[int]
    not_enqueued: list[int]


def runs_sweep(*, now: datetime | None = None, limit: int = 500) -> Sweep:
    """Hand back to the queue every run the queue lost; no one needs to run a command.

    Owed work: runs QUEUED longer than `TRIAGE_SWEEP_GRACE` that the queue does not hold (never
    enqueued, or Redis lost them), and RUNNING runs whose lease expired (their worker died). Sweepers
    in several workers may run at once: rows are claimed with SKIP LOCKED and stamped `queued_at`, so
    each run is handed over by one sweeper, and at worst twice, which the runner's advisory lock makes a
    no-op. A run that keeps killing its worker is failed by the runner when it is taken once too often.
    """
    now = now or timezone.now()
    settled = now - timedelta(seconds=settings.TRIAGE_SWEEP_GRACE)
    owed = Q(queued_at__lt=settled) & (
        Q(status=PipelineRun.Status.QUEUED)
        | Q(status=PipelineRun.Status.RUNNING, lease_expires_at__lt=now)
        | Q(status=PipelineRun.Status.RUNNING, lease_expires_at__isnull=True)
    )
    with transaction.atomic():
        candidates = list(
            PipelineRun.objects.select_for_update(skip_locked=True)
            .filter(owed)
            .order_by("queued_at")
            .values_list("pk", flat=True)[:limit]
        )
        due = [run_id for run_id in candidates if not queue_holds(run_id)]
        PipelineRun.objects.filter(pk__in=due).update(queued_at=now)
    not_enqueued = []
    for run_id in due:
        try:
            submit(run_id)
        except Exception:
            # Still owed: stamped `queued_at`, it is tried again after the grace period.
            logger.exception("sweeper: run %s could not be enqueued", run_id)
            not_enqueued.append(run_id)
    if due:
        logger.info("sweeper: %s run(s) handed back to the queue, %s not enqueued", len(due), len(not_enqueued))
    return Sweep(requeued=[r for r in due if r not in not_enqueued], not_enqueued=not_enqueued)


def sweep_safely() -> bool:
    """One sweep for a periodic loop: a failure (database restarting, Redis down) waits for the next.

    Returns whether the sweep went through; a loop backs off while it does not (`sweep_backoff`).
    """
    try:
        close_old_connections()
        runs_sweep()
        scheduled_jobs_run_due()
        return True
    except Exception as exc:
        if connection_lost(exc):
            logger.warning("sweeper: the database is unreachable (%s); trying again later", exc)
        else:
            logger.exception("sweeper: this sweep failed; the next one tries again")
        return False
    finally:
        # Between sweeps no connection is held: an RQ worker forks its work-horse from this process (a
        # child must not share the parent's socket), and an idle thread must not pin a database.
        connections_close_quietly()


def connections_close_quietly() -> None:
    """Close every connection of this thread; one lost with its server may fail to close, which is no error."""
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:
            logger.debug("closing connection %s failed", conn.alias, exc_info=True)


def sweep_backoff(*, every: float, failures: int) -> float:
    """The wait before the next sweep: the interval, doubled per failed sweep in a row, at most 4 intervals."""
    return every * min(2**failures, 4)


class InProcessWorker:
    """A thread pool that works runs inside this process; each thread has its own DB connection.

    With it runs a sweeper thread: after a restart of this process the runs its pool held are owed
    work that only the database remembers. With `models` (the web process's worker, `inprocess_start`) the
    sweeper also keeps the classifier in force and its thresholds ready after each sweep
    (`triage.preload.models_refresh`), and `models_preload` loads everything in a thread of its own as the
    worker starts, so neither the first ticket after a start nor one that finds the thresholds' choice
    expired waits for them.
    """

    def __init__(self, workers: int, *, sweep_every: float | None = None, models: bool = False) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="triage-worker")
        self._futures: set[Future[None]] = set()
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        # Readiness (`/readyz`): when this worker's sweeper last came round, i.e. was seen alive.
        self.seen = timezone.now()
        self._models = models
        self.preloaded = threading.Event()
        if models:
            threading.Thread(target=self._preload, name="triage-preload", daemon=True).start()
        if sweep_every:
            self._sweeper = threading.Thread(
                target=self._sweep_loop, args=(sweep_every,), name="triage-sweeper", daemon=True
            )
            self._sweeper.start()

    def submit(self, run_id: int) -> None:
        with self._lock:
            self._held[run_id] = self._held.get(run_id, 0) + 1
        future = self._pool.submit(self._work, run_id)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._done)

    def holds(self, run_id: int) -> bool:
        with self._lock:
            return run_id in self._held

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _release(self, run_id: int) -> None:
        # In the job itself, not a done-callback: by the time `drain` returns the pool no longer holds it.
        with self._lock:
            left = self._held.pop(run_id, 1) - 1
            if left:
                self._held[run_id] = left

    def _preload(self) -> None:
        try:
            models_preload()
        except Exception:
            # Each run loads what it needs, as before: the first one after a start waits for it.
            logger.exception("the in-process worker could not preload the models; the first run will load them")
        finally:
            self.preloaded.set()

    def _sweep_loop(self, every: float) -> None:
        failures = 0
        while not self._stop.wait(sweep_backoff(every=every, failures=failures)):
            swept = sweep_safely()
            failures = 0 if swept else failures + 1
            if swept and self._models:  # (a sweep that failed found the database away: the refresh would too)
                models_refresh_safely()
            self.seen = timezone.now()

    def stop(self) -> None:
        self._stop.set()

    def _work(self, run_id: int) -> None:
        try:
            run_task(run_id)
        except Exception as exc:
            if connection_lost(exc):
                logger.warning("run %s: database unreachable (%s); the sweeper hands it back later", run_id, exc)
            else:
                logger.exception("run %s failed in the in-process worker", run_id)
        finally:
            self._release(run_id)
            connections_close_quietly()

    def drain(self, timeout: float | None = None) -> None:
        with self._lock:
            pending = set(self._futures)
        wait(pending, timeout=timeout)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._futures)


_worker: InProcessWorker | None = None
_worker_lock = threading.Lock()


def _inprocess(*, models: bool = False) -> InProcessWorker:
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = InProcessWorker(
                workers=int(getattr(settings, "TRIAGE_INPROCESS_WORKERS", 2)),
                sweep_every=settings.TRIAGE_SWEEP_INTERVAL,
                models=models,
            )
        return _worker


def inprocess_start() -> None:
    """Start the in-process worker (and its sweeper) with the web process, not at its first ticket, and have
    it load the models in the background and keep them ready (`InProcessWorker`, `models`)."""
    if settings.TRIAGE_QUEUE_BACKEND == "inprocess":
        _inprocess(models=True)


def inprocess_seen() -> datetime | None:
    """When this process's in-process worker was last seen alive (its sweeper's last round); None: not started."""
    return _worker.seen if _worker is not None else None


def inprocess_drain(timeout: float | None = None) -> None:
    if _worker is not None:
        _worker.drain(timeout)


def inprocess_stop(timeout: float | None = None) -> None:
    """Finish what the in-process worker holds, stop its sweeper and forget it (the next submit starts anew).

    For a process that ends its work cleanly, and for tests: a sweeper left running would sweep the next
    test's database.
    """
    global _worker
    with _worker_lock:
        worker, _worker = _worker, None
    if worker is not None:
        worker.drain(timeout)
        worker.stop()


def runs_resume() -> int:
    """Re-submit every run that never finished, now (a manual tool: `runs_sweep` does it on its own)."""
    ids = list(
        PipelineRun.objects.filter(status__in=[PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING]).values_list(
            "pk", flat=True
        )
    )
    for run_id in ids:
        submit(run_id)
    return len(ids)
