"""The RQ worker `manage.py rqworker` uses (settings `RQ["WORKER_CLASS"]`).

RQ forks a work-horse for every job. The models (the embedding model and the trained classifier) and
the thresholds chosen for the classifier are loaded here, in the parent, before the first fork and again
between jobs when they change, so every work-horse inherits them instead of loading them again (~4 s a
job before the models were, 0.25 s before the thresholds were: `models_refresh`). And the parent sweeps:
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

from django import db
from django.conf import settings
from django.db import connections
from rq import Queue, Worker
from rq.job import Job

from config.telemetry import telemetry_flush, telemetry_setup
from integrations.embeddings import get_local_embedder
from triage.autonomy import CHOICE_TTL_SECONDS, thresholds_current
from triage.instruments import metrics_process_adopt
from triage.pipeline.router import classifier_cache_keep, classifier_load
from triage.selectors import classifier_latest, gate_policy_current
from triage.tasks import sweep_safely

logger = logging.getLogger(__name__)


def models_preload() -> None:
    """Load what every run needs once per process: the embedding model, then `models_refresh`."""
    get_local_embedder().embed(["warm-up"], batch_size=1)
    models_refresh()


def models_refresh() -> None:
    """Have in this process what every run reads and a work-horse would otherwise load or work out again for
    each job, and lose when it exits: the classifier in force (unpickled) and the thresholds chosen for it
    (`thresholds_current`, with the MAPIE and scikit-learn modules the choice imports).

    Measured with `bench/worker_fork.py` on 2026-11-30: with only the models preloaded, each work-horse chose
    the thresholds again, importing those modules (about 130 of them), and a job took 0.30-0.35 s against
    0.07 s in a worker that does not fork. Called before the first fork and at every maintenance pass (every
    `TRIAGE_SWEEP_INTERVAL` seconds): a new classifier version (a promotion, a roll-back) is loaded here, not
    in every job, and the choice is renewed two passes before it expires. Three small queries when
    nothing moved.
    """
    try:
        latest = classifier_latest()
        if latest is not None:
            classifier_load(latest.pk)
            classifier_cache_keep(latest.pk)  # the version it replaced is not kept for the worker's life
            thresholds_current(
                classifier=latest,
                policy=gate_policy_current(),
                # Two passes ahead, but never more than half its life: a long sweep interval must not turn into
                # choosing again at every pass.
                renew_within=min(2 * max(1.0, float(settings.TRIAGE_SWEEP_INTERVAL)), CHOICE_TTL_SECONDS / 2),
            )
    finally:
        # The work-horses are forked from this process: none may inherit its database socket.
        connections.close_all()


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
        # Without it the jobs still work (each loads and chooses what it needs): slower, not down.
        try:
            models_refresh()
        except db.Error as exc:
            logger.warning("the worker could not refresh the classifier and thresholds: %s", exc)
        except Exception:
            logger.exception("the worker could not refresh the classifier and thresholds")
