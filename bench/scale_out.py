"""Scale-out: tickets per second through the whole chain with 1, 2 and 4 RQ workers sharing one PostgreSQL.

The deployment shape of docs/DEPLOY.md on one machine: `REDIS_URL` to a Redis, N `manage.py rqworker
default` processes (the project's worker class, `triage.worker.TriageWorker`: models loaded once before it
forks a work-horse per job), one PostgreSQL with pgvector (the embedded one, in a throw-away database),
the local models (embedder, classifier, drafter; no network). The demo company's categories, examples
and knowledge base are loaded once; every round sends tickets never seen before (so each is embedded:
the embedding cache keys on the text), the demo's own ticket texts.

Per worker count: the workers are started and wait until registered (their start-up is not timed); then
the tickets are ingested and enqueued, and the clock runs until every run has finished (auto-handled,
waiting for a person, or failed). Beside it, the embedding model's own throughput on the same texts, in
this process: one text per call (as the chain embeds a ticket) and in batches of 64. On a machine with C
cores, workers beyond C share the same cores: there, more workers cannot add throughput.

    uv run python bench/scale_out.py [--tickets 60] [--workers 1,2,4] [--redis redis://127.0.0.1:6379/7]

Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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
from rq import Worker

from integrations.embeddings import get_local_embedder
from triage.contracts import TicketIn
from triage.datasets import dataset_load
from triage.evaluation import isolated_database
from triage.management.commands.demo import DEMO_TARGET
from triage.models import PipelineRun
from triage.selectors import gate_policy_current
from triage.services import (
    categories_import,
    classifier_train,
    examples_import,
    gate_policy_save,
    knowledge_base_import,
    ticket_ingest,
)
from triage.tasks import run_task

DEMO = ROOT / "triage" / "demo"


def embedder_throughput(texts: list[str]) -> tuple[float, float]:
    """Texts per second: one text per call (the chain's way), and batches of 64."""
    embedder = get_local_embedder()
    embedder.embed(["warm-up"], batch_size=1)
    start = time.perf_counter()
    for text in texts:
        embedder.embed([text], batch_size=1)
    single = len(texts) / (time.perf_counter() - start)
    start = time.perf_counter()
    embedder.embed(texts, batch_size=64)
    batched = len(texts) / (time.perf_counter() - start)
    return single, batched


def workers_start(count: int, *, database: str, redis: str) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "TRIAGE_DB_NAME": database, "REDIS_URL": redis, "TRIAGE_LOG_LEVEL": "WARNING"}
    return [
        subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "default"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def workers_stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)  # RQ's warm shutdown: the current job finishes
    for worker in workers:
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=60, help="tickets per worker count")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    settings.RQ_QUEUES = {"default": {"URL": args.redis, "DEFAULT_TIMEOUT": 600}}
    settings.TRIAGE_QUEUE_BACKEND = "rq"
    demo = dataset_load(DEMO)
    texts = [t.text for t in demo.tickets]
    if len(texts) < args.tickets * len(counts):
        raise SystemExit(f"the demo has {len(texts)} tickets: at most {len(texts) // len(counts)} per worker count")
    results: dict[str, float] = {}
    with isolated_database() as database:
        categories_import(rows=list(demo.categories.items()))
        examples_import(rows=[(e.text, e.label) for e in demo.examples])
        classifier_train()
        knowledge_base_import(directory=DEMO / "kb")
        # The demo's own target (its ~39 examples a category cannot show 1%): some tickets are auto-handled
        # and carry out their actions, as in the demo, instead of every one waiting for a person.
        policy = gate_policy_current()
        policy.target_mishandled_rate = DEMO_TARGET
        gate_policy_save(policy=policy, actor=None)
        queue = django_rq.get_queue("default")
        worker_class = settings.RQ["WORKER_CLASS"]
        print(f"{os.cpu_count()} cores; {args.tickets} tickets per worker count; worker class {worker_class}")
        print(f"{'workers':>7} {'seconds':>8} {'tickets/s':>10} {'finished':>9}  outcome")
        for round_, count in enumerate(counts):
            queue.connection.flushdb()
            workers = workers_start(count, database=database, redis=args.redis)
            try:
                deadline = time.monotonic() + 900  # model loading in N processes at once, on a busy machine
                while Worker.count(connection=queue.connection) < count:
                    if any(w.poll() is not None for w in workers):
                        raise SystemExit("a worker exited before it started working")
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{count} workers were not all registered after 900 s")
                    time.sleep(0.2)
                batch = texts[round_ * args.tickets : (round_ + 1) * args.tickets]
                started = time.perf_counter()
                runs = []
                for n, text in enumerate(batch):
                    ingested = ticket_ingest(
                        ticket_in=TicketIn(source="bench", external_id=f"{round_}-{n}", body=text), enqueue=False
                    )
                    runs.append(ingested.run.pk)
                    queue.enqueue(run_task, ingested.run.pk, job_id=f"triage-run-{ingested.run.pk}")
                pending = PipelineRun.objects.filter(
                    pk__in=runs, status__in=[PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING]
                )
                while pending.exists():
                    time.sleep(0.1)
                seconds = time.perf_counter() - started
            finally:
                workers_stop(workers)
            outcome = {
                status: PipelineRun.objects.filter(pk__in=runs, status=status).count()
                for status in (PipelineRun.Status.COMPLETED, PipelineRun.Status.WAITING, PipelineRun.Status.FAILED)
            }
            rate = len(runs) / seconds
            results[f"workers_{count}_tickets_per_s"] = round(rate, 2)
            print(
                f"{count:>7} {seconds:>8.1f} {rate:>10.2f} {sum(outcome.values()):>5}/{len(runs):<3}  "
                + ", ".join(f"{k} {v}" for k, v in outcome.items())
            )
        queue.connection.flushdb()
    used = texts[: args.tickets * len(counts)]
    single, batched = embedder_throughput(used)
    results["embedder_one_text_per_call_per_s"] = round(single, 2)
    results["embedder_batch_64_per_s"] = round(batched, 2)
    print(f"embedding model alone, same {len(used)} texts, this process: one text per call {single:.1f}/s, ", end="")
    print(f"batches of 64 {batched:.1f}/s")
    first = results[f"workers_{counts[0]}_tickets_per_s"]
    for count in counts[1:]:
        print(f"{count} workers / {counts[0]}: {results[f'workers_{count}_tickets_per_s'] / first:.2f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
