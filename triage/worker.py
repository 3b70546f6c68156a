"""The RQ worker `manage.py rqworker` uses (settings `RQ["WORKER_CLASS"]`).

RQ forks a work-horse for every job. The models (the embedding model and the trained classifier)
are loaded here, in the parent, before the first fork, so every work-horse inherits them instead of
loading them again (~4 s a job before). And the parent sweeps: every `TRIAGE_SWEEP_INTERVAL` seconds,
between jobs and while idle, it hands back to the queue the runs the queue lost (`runs_sweep`). Being
inside every worker, the sweeper needs no process of its own and runs wherever runs can be worked;
several sweeping at once is safe (see `runs_sweep`).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connections
from rq import Worker

from integrations.embeddings import get_local_embedder
from triage.pipeline.router import classifier_load
from triage.selectors import classifier_latest
from triage.tasks import sweep_safely

logger = logging.getLogger(__name__)


def models_preload() -> None:
    """Load what every run needs once per process: the embedding model and the latest classifier."""
    get_local_embedder().embed(["warm-up"], batch_size=1)
    latest = classifier_latest()
    if latest is not None:
        classifier_load(latest.pk)
    # The work-horses are forked from this process: none may inherit its database socket.
    connections.close_all()


class TriageWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", max(1, int(settings.TRIAGE_SWEEP_INTERVAL)))
        super().__init__(*args, **kwargs)
        try:
            models_preload()
        except Exception:
            # A worker that cannot preload still works (each job loads what it needs): slower, not down.
            logger.exception("the worker could not preload the models; each job will load them")

    @property
    def dequeue_timeout(self) -> int:
        # RQ blocks ~405 s on an empty queue; waking every sweep interval keeps an idle worker sweeping.
        return max(1, min(self.worker_ttl - 15, self.maintenance_interval))

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        sweep_safely()
