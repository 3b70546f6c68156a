"""Signed webhook deliveries per second into the real app server, beside a bare Django view.

gunicorn (several workers) serves the project on 127.0.0.1 with this module as its URL conf: the
project's URLs plus `/bench/bare`, a view that reads the body and answers 200 with no database. Both
are loaded in the same run by the same client processes, so the ratio says what intake costs: the
Zendesk signature check, the payload parse, the contract, and one transaction for delivery + ticket +
run on the embedded PostgreSQL. The queue backend is "none" (intake only: runs stay queued).

Then 10,000 deliveries, 10% of them re-sent duplicates, in shuffled concurrent order: every one must be
answered 2xx, and the database must hold exactly one ticket, one run and one delivery row per unique
delivery.

    DJANGO_DEV_MODE=1 uv run python bench/webhook_load.py [--workers 4] [--clients 8] [--requests 3000]
        [--total 10000] [--startup-timeout 300]

It uses its own database (TRIAGE_DB_NAME=bench_webhooks), emptied at the start. gunicorn preloads the app
(`--preload`): importing the project takes ~11 s (mcp, scipy, scikit-learn, redis; measured at load 10), and
four workers each importing it on a loaded 2-core machine can outlast the old fixed 90 s wait (the likely
cause of an earlier "gunicorn did not come up"); preloaded, it is imported once and the workers are forked.
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("TRIAGE_DB_NAME", "bench_webhooks")
os.environ.setdefault("TRIAGE_QUEUE_BACKEND", "none")
os.environ.setdefault("TRIAGE_LOG_LEVEL", "WARNING")

SECRET = "bench-secret-0c5d9e"

# --- the app gunicorn serves (imported by the workers as bench.webhook_load:application) ------------

if os.environ.get("BENCH_WEBHOOK_SERVER") == "1":
    import django
    from django.conf import settings as dj_settings

    django.setup()
    dj_settings.ROOT_URLCONF = __name__
    # Persistent connections, as the DATABASE_URL deployment shape has (conn_max_age=60); the embedded
    # default opens one per request, which would measure connection set-up rather than intake.
    dj_settings.DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("BENCH_CONN_MAX_AGE", "60"))

    from django.core.wsgi import get_wsgi_application
    from django.http import HttpRequest, JsonResponse
    from django.urls import include, path
    from django.views.decorators.csrf import csrf_exempt

    @csrf_exempt
    def bare(request: HttpRequest) -> JsonResponse:
        request.read()
        return JsonResponse({"ok": True})

    urlpatterns = [path("bench/bare", bare), path("", include("config.urls"))]
    application = get_wsgi_application()


# --- the client -------------------------------------------------------------------------------------


def zendesk_delivery(n: int, run_tag: str) -> tuple[bytes, dict[str, str]]:
    payload = {
        "type": "zen:event-type:ticket.created",
        "id": f"evt-{run_tag}-{n}",
        "account_id": 1,
        "subject": f"zen:ticket:{n}",
        "time": datetime.now(UTC).isoformat(),
        "detail": {
            "id": f"{run_tag}-{n}",
            "subject": f"Order {n} is late",
            "tags": ["bench"],
            "description": f"<p>My order {n} has not arrived yet. Could you check where it is?</p>",
            "requester_id": str(90_000 + n),  # as Zendesk sends it: the requester by id only
        },
        "event": {"meta": {"sequence": {"id": f"seq-{run_tag}-{n}", "position": 1, "total": 1}}},
    }
    body = json.dumps(payload).encode()
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(SECRET.encode(), stamp.encode() + body, hashlib.sha256).digest()).decode()
    return body, {
        "X-Zendesk-Webhook-Signature": signature,
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Invocation-Id": f"inv-{run_tag}-{n}",
        "Content-Type": "application/json",
    }


def _client(args: tuple[int, str, list[tuple[bytes, dict[str, str]]]]) -> list[tuple[int, str]]:
    port, path, requests = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    answers = []
    for body, headers in requests:
        for attempt in range(3):
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                answers.append((response.status, data.decode()[:200]))
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                break
            except (TimeoutError, ConnectionError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                if attempt == 2:
                    answers.append((0, "connection failed"))
    conn.close()
    return answers


def blast(pool, port: int, path: str, requests: list, clients: int) -> tuple[float, list[tuple[int, str]]]:
    shards = [(port, path, requests[i::clients]) for i in range(clients)]
    started = time.perf_counter()
    results = pool.map(_client, shards)
    elapsed = time.perf_counter() - started
    return elapsed, [a for shard in results for a in shard]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("POST", "/bench/bare", body=b"{}")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"gunicorn did not come up within {timeout:.0f} s (see --startup-timeout)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client connections")
    parser.add_argument("--requests", type=int, default=3000, help="requests per throughput phase")
    parser.add_argument("--total", type=int, default=10_000, help="deliveries in the duplicates phase")
    parser.add_argument("--duplicates", type=float, default=0.10, help="share of re-sent deliveries")
    parser.add_argument(
        "--startup-timeout", type=float, default=300, help="seconds to wait for gunicorn to answer (loaded machines)"
    )
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from integrations.models import HelpdeskSource, WebhookDelivery
    from triage.models import PipelineRun, Ticket

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:  # a clean bench database every run
        cursor.execute(
            "TRUNCATE integrations_webhookdelivery, triage_action, triage_steprun, triage_pipelinerun, triage_ticket"
            " RESTART IDENTITY CASCADE"
        )
    HelpdeskSource.objects.filter(name="bench").delete()
    source = HelpdeskSource.objects.create(name="bench", vendor="zendesk", secret=SECRET)
    connection.close()

    port = free_port()
    env = {
        **os.environ,
        "BENCH_WEBHOOK_SERVER": "1",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "bench-only-" + "k" * 40),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "bench.webhook_load:application",
        "--chdir",
        str(ROOT),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(args.threads),
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
        "--backlog",
        "2048",
        # import the project once in the master, fork the workers from it (see the module docstring)
        "--preload",
    ]
    server = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)
    try:
        launched = time.perf_counter()
        wait_for(port, server, args.startup_timeout)
        startup_s = time.perf_counter() - launched
        hook = f"/webhooks/zendesk/{source.pk}"
        run_tag = f"r{int(time.time())}"
        with multiprocessing.get_context("fork").Pool(args.clients) as pool:
            # warm every worker (connections, imports) on both paths
            warm = [zendesk_delivery(n, run_tag + "w") for n in range(args.clients * 10)]
            blast(pool, port, "/bench/bare", warm, args.clients)
            blast(pool, port, hook, warm, args.clients)

            # throughput: bare view and signed deliveries, interleaved in two rounds each
            bare_times, hook_times, hook_errors = [], [], 0
            for rnd in range(2):
                reqs = [zendesk_delivery(n, f"{run_tag}t{rnd}") for n in range(args.requests)]
                elapsed, answers = blast(pool, port, "/bench/bare", reqs, args.clients)
                bare_times.append(len(reqs) / elapsed)
                elapsed, answers = blast(pool, port, hook, reqs, args.clients)
                hook_times.append(len(reqs) / elapsed)
                hook_errors += sum(1 for status, _ in answers if status != 202)
            bare_rps, hook_rps = max(bare_times), max(hook_times)

            # 10,000 deliveries, 10% of them duplicates (same delivery re-sent), shuffled
            unique = int(args.total * (1 - args.duplicates))
            originals = [zendesk_delivery(n, f"{run_tag}d") for n in range(unique)]
            rng = random.Random(4)
            resent = [originals[rng.randrange(unique)] for _ in range(args.total - unique)]
            mixed = originals + resent
            rng.shuffle(mixed)
            elapsed, answers = blast(pool, port, hook, mixed, args.clients)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    statuses: dict[int, int] = {}
    for status, _ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    prefix = f"{run_tag}d-"
    tickets = Ticket.objects.filter(source=source.ticket_source, external_id__startswith=prefix).count()
    runs = PipelineRun.objects.filter(
        ticket__source=source.ticket_source, ticket__external_id__startswith=prefix
    ).count()
    deliveries = WebhookDelivery.objects.filter(source=source, external_id__startswith=prefix).count()
    doubled = (
        Ticket.objects.filter(source=source.ticket_source, external_id__startswith=prefix)
        .values("external_id")
        .annotate(n=django.db.models.Count("id"))
        .filter(n__gt=1)
        .count()
    )
    ok = (
        statuses.get(202, 0) == unique
        and statuses.get(200, 0) == args.total - unique
        and tickets == runs == deliveries == unique
    )

    print(
        f"gunicorn {args.workers} workers x {args.threads} threads (preloaded, up in {startup_s:.1f}s), "
        f"{args.clients} client connections, embedded PostgreSQL, queue backend 'none' (intake only)"
    )
    print(f"bare Django view          : {bare_rps:8.0f} req/s")
    print(f"signed Zendesk deliveries : {hook_rps:8.0f} req/s  ({hook_errors} non-202 answers)")
    print(f"ratio webhook / bare      : {hook_rps / bare_rps:8.2f}")
    print(
        f"{args.total} deliveries, {args.total - unique} duplicates: {elapsed:.1f}s ({args.total / elapsed:.0f}/s); "
        f"answers {dict(sorted(statuses.items()))}"
    )
    print(
        f"  unique {unique}: tickets {tickets}, runs {runs}, delivery rows {deliveries}, doubled tickets {doubled}, "
        f"lost {unique - tickets}  -> {'OK: nothing lost or doubled' if ok and doubled == 0 else 'MISMATCH'}"
    )
    print(
        json.dumps(
            {
                "bench": "webhook_load",
                "workers": args.workers,
                "threads": args.threads,
                "clients": args.clients,
                "requests": args.requests,
                "startup_s": round(startup_s, 1),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "bare_rps": round(bare_rps),
                "webhook_rps": round(hook_rps),
                "ratio": round(hook_rps / bare_rps, 3),
                "total": args.total,
                "duplicates": args.total - unique,
                "answers": {str(k): v for k, v in sorted(statuses.items())},
                "tickets": tickets,
                "runs": runs,
                "delivery_rows": deliveries,
                "lost": unique - tickets,
                "doubled": doubled,
                "ok": bool(ok and doubled == 0),
            }
        )
    )
    if not ok or doubled:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
