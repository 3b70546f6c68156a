"""What a job costs in RQ's forking worker, ours (models preloaded before the fork), and a non-forking one.

RQ forks a work-horse for every job; whatever the parent has not loaded, every work-horse loads
again. This runs the same N real tickets (the local models, no network) through `manage.py rqworker
--burst` with `rq.Worker`, with `triage.worker.TriageWorker` and with `rq.SimpleWorker` (no fork: the
jobs run in the worker's own process, which loads the models on its first job and keeps them), on the
embedded PostgreSQL in a throw-away database and a Redis database of its own, and prints per worker
class: the burst's wall time (the worker's start-up included) and the median and mean job time as RQ
recorded it; then one JSON line of them. TriageWorker's median minus SimpleWorker's is what the fork and
the work-horse's isolation cost a job.

    uv run python bench/worker_fork.py [--tickets 10] [--redis redis://127.0.0.1:6379/12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEV_MODE", "1")

import django

django.setup()

import django_rq
from django.conf import settings
from rq import Queue

from triage.contracts import TicketIn
from triage.datasets import dataset_load
from triage.evaluation import isolated_database
from triage.models import PipelineRun
from triage.services import categories_import, classifier_train, examples_import, knowledge_base_import, ticket_ingest
from triage.tasks import run_task

DEMO = ROOT / "triage" / "demo"
TEXTS = [
    "Where is my order TW-{n}? The tracking page has not changed for a week.",
    "I was charged twice for order TW-{n}, please refund one of the charges.",
    "How do I reset my password? The link in email {n} has expired.",
    "The grinder from order TW-{n} arrived with a cracked hopper.",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=10)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()
    settings.RQ_QUEUES = {"default": {"URL": args.redis, "DEFAULT_TIMEOUT": 600}}
    settings.TRIAGE_QUEUE_BACKEND = "rq"
    with isolated_database() as name:
        data = dataset_load(DEMO, tickets=False)
        categories_import(rows=list(data.categories.items()))
        examples_import(rows=[(e.text, e.label) for e in data.examples])
        classifier_train()
        knowledge_base_import(directory=DEMO / "kb")
        print(f"{'worker class':34} {'tickets':>7} {'burst s':>8} {'median job s':>13} {'mean job s':>11} completed")
        figures: dict[str, float | int] = {"tickets": args.tickets}
        classes = {
            "rq.Worker": "rq_worker",
            "triage.worker.TriageWorker": "triage_worker",
            "rq.SimpleWorker": "simple_worker",
        }
        for round_, worker_class in enumerate(classes):
            queue: Queue = django_rq.get_queue("default")
            queue.connection.flushdb()
            runs = []
            for n in range(args.tickets):
                text = TEXTS[n % len(TEXTS)].format(n=100_000 + round_ * 1000 + n)
                result = ticket_ingest(
                    ticket_in=TicketIn(source="bench", external_id=f"{round_}-{n}", body=text), enqueue=False
                )
                runs.append(result.run.pk)
                queue.enqueue(run_task, result.run.pk, job_id=f"triage-run-{result.run.pk}")
            env = {**os.environ, "TRIAGE_DB_NAME": name, "REDIS_URL": args.redis, "TRIAGE_LOG_LEVEL": "WARNING"}
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "manage.py", "rqworker", "default", "--burst", "--worker-class", worker_class],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            burst = time.perf_counter() - started
            jobs = [queue.fetch_job(f"triage-run-{pk}") for pk in runs]
            durations = [(j.ended_at - j.started_at).total_seconds() for j in jobs if j and j.started_at and j.ended_at]
            done = PipelineRun.objects.filter(pk__in=runs).exclude(
                status__in=[PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING]
            )
            print(
                f"{worker_class:34} {args.tickets:>7} {burst:>8.1f} {statistics.median(durations):>13.2f} "
                f"{statistics.fmean(durations):>11.2f} {done.count()}/{len(runs)}"
            )
            queue.connection.flushdb()
            key = classes[worker_class]
            figures[f"{key}_burst_s"] = round(burst, 2)
            figures[f"{key}_median_job_s"] = round(statistics.median(durations), 3)
            figures[f"{key}_mean_job_s"] = round(statistics.fmean(durations), 3)
            figures[f"{key}_finished"] = done.count()
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
