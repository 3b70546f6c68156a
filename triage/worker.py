"""The RQ worker `manage.py rqworker` uses (settings `RQ["WORKER_CLASS"]`).

RQ forks a work-horse for every job. The models (the embedding model and the trained classifier) and
the thresholds chosen for the classifier are loaded here, in the parent, before the first fork and again
between jobs when they change, so every work-horse inherits them instead of loading them again (~4 s a
job before the models were, 0.25 s before the thresholds were: `triage.preload.models_refresh`). And the parent sweeps:
every `TRIAGE_SWEEP_INTERVAL` seconds, between jobs and while idle, it hands back to the queue the runs the
queue lost (`runs_sweep`). Being inside every worker, the sweeper needs no process of its own and runs
wherever runs can be worked; several sweeping at once is safe (see `runs_sweep`).

Telemetry: the worker sets up tracing (`config.telemetry`; a no-op without a collector), and each work-horse
builds its own span exporter after the fork, the first time a span ends in it. A work-horse ends with
`os._exit`, so it sends its job's spans before it exits, waiting at most `TRIAGE_OTEL_HORSE_FLUSH_SECONDS`
(the job's outcome is recorded by then). It counts its metrics in its worker's multiprocess file
(`triage.instruments.metrics_process_adopt`), not in a file of its own per job.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.conf import settings
from rq import Queue, Worker
from rq.job import Job

from config.telemetry import telemetry_flush, telemetry_setup
from triage.instruments import metrics_process_adopt
from triage.preload import models_preload, models_refresh_safely
from triage.tasks import sweep_safely

logger = logging.getLogger(__name__)


class TriageWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", max(1, int(settings.TRIAGE_SWEEP_INTERVAL)))
        super().__init__(*args, **kwargs)
        telemetry_setup()
        try:
            models_preload()
        except Exception:
            # A worker that cannot preload still works (each job loads what it needs): slower, not down.
            logger.exception("the worker could not preload the models; each job will load them")

    @property
    def dequeue_timeout(self) -> int:
        # RQ blocks ~405 s on an empty queue; waking every sweep interval keeps an idle worker sweeping.
        return max(1, min(self.worker_ttl - 15, self.maintenance_interval))

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # One work-horse at a time per worker: it may write its worker's metrics file (see triage.instruments).
        metrics_process_adopt(f"rqworker-{os.getppid()}")
        super().main_work_horse(job, queue)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        try:
            return super().perform_job(job, queue)
        finally:
            if getattr(self, "_is_horse", False):
                telemetry_flush(timeout=float(settings.TRIAGE_OTEL_HORSE_FLUSH_SECONDS))

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        sweep_safely()
        models_refresh_safely()
