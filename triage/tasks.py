"""The queue: one way in (`enqueue_run`, after commit), two ways to work it.

- `rq` (when REDIS_URL is set): django-rq's default queue, worked by `manage.py rqworker`.
- `inprocess` (the embedded default): a small thread pool inside this process.
- `immediate`: runs in the committing thread; for tests and the `evaluate` command.

All three call `run_task`, the same function, with the run's id.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

import django_rq
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from triage.models import PipelineRun
from triage.pipeline.runner import run_pipeline
from triage.retention import checkpoints_prune

logger = logging.getLogger(__name__)


def run_task(run_id: int) -> None:
    """The task: takes an id, loads the run, calls the runner. Running it twice does no harm."""
    run_pipeline(run_id=run_id)


def enqueue_run(*, run_id: int) -> None:
    """Start the run once the current transaction commits (immediately outside one)."""
    transaction.on_commit(lambda: submit(run_id))


def submit(run_id: int) -> None:
    backend = settings.TRIAGE_QUEUE_BACKEND
    if backend == "rq":
        django_rq.get_queue("default").enqueue(run_task, run_id, job_id=f"triage-run-{run_id}")
    elif backend == "inprocess":
        _inprocess().submit(run_id)
    elif backend == "immediate":
        run_task(run_id)
    elif backend == "none":
        # Intake only: runs stay queued (benchmarks of the webhook path; `resume_runs` works them later).
        return
    else:
        raise ValueError(f"unknown TRIAGE_QUEUE_BACKEND {backend!r} (rq, inprocess, immediate or none)")


class InProcessWorker:
    """A thread pool that works runs inside this process; each thread has its own DB connection."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="triage-worker")
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, run_id: int) -> None:
        future = self._pool.submit(self._work, run_id)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    @staticmethod
    def _work(run_id: int) -> None:
        close_old_connections()
        try:
            run_task(run_id)
        except Exception:
            logger.exception("run %s failed in the in-process worker", run_id)
        finally:
            connections.close_all()

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


def _inprocess() -> InProcessWorker:
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = InProcessWorker(workers=int(getattr(settings, "TRIAGE_INPROCESS_WORKERS", 2)))
        return _worker


def inprocess_drain(timeout: float | None = None) -> None:
    if _worker is not None:
        _worker.drain(timeout)


def runs_resume() -> int:
    """Re-submit runs that never finished (queued, or running when a worker died)."""
    ids = list(
        PipelineRun.objects.filter(status__in=[PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING]).values_list(
            "pk", flat=True
        )
    )
    for run_id in ids:
        submit(run_id)
    return len(ids)


def checkpoints_prune_task() -> None:
    """The scheduled retention pass: a task, so it takes nothing and calls one service."""
    result = checkpoints_prune(now=timezone.now())
    logger.info(
        "checkpoints pruned: %s step run(s) of %s run(s), %s -> %s bytes%s",
        result.step_runs,
        result.runs,
        result.bytes_before,
        result.bytes_after,
        "" if result.done else " (more left for the next pass)",
    )
