"""What load balancers, orchestrators and Prometheus ask: `/healthz`, `/readyz`, `/metrics`.

- `/healthz`: the process is up and answering. Touches nothing else (no database), so a database outage
  does not make an orchestrator restart every web process.
- `/readyz`: this process can do its work: the database answers, Redis answers (when the queue is RQ), and
  a worker was seen recently (an RQ worker's heartbeat in Redis; or the in-process worker's threads alive).
  200 or 503, with each check in the JSON body.
- `/metrics`: Prometheus text format (`triage.instruments`). Open by default, like Prometheus exporters;
  with `METRICS_TOKEN` set it wants ``Authorization: Bearer <token>``.

`config.probes_middleware` answers these paths before any other middleware: a probe comes to an address
(not an allowed host name) over plain HTTP, which host validation and the HTTPS redirect would refuse.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Worker

from triage import tasks
from triage.instruments import DatabaseCollector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str
    ms: float


def _timed(probe: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        detail = probe()
    except Exception as exc:  # noqa: BLE001 - a probe reports every failure, it never raises
        return Check(False, f"{type(exc).__name__}: {exc}"[:300], round((time.perf_counter() - started) * 1000, 1))
    return Check(True, detail, round((time.perf_counter() - started) * 1000, 1))


def database_check() -> str:
    """A new connection answers `SELECT 1`: what the next request and the workers will need.

    Not this thread's connection, which may be open and well while new ones are refused (the server at its
    connection limit, a failover), and which a failed probe would leave broken for the next request.
    """
    connection = connections.create_connection("default")
    # Its own copy of the settings (the wrapper shares the project's dict): a server that does not answer
    # makes the probe fail after TRIAGE_PROBE_TIMEOUT, not hang (libpq's connect_timeout: whole seconds, >= 2).
    options = {
        **connection.settings_dict.get("OPTIONS", {}),
        "connect_timeout": max(2, int(settings.TRIAGE_PROBE_TIMEOUT)),
    }
    connection.settings_dict = {**connection.settings_dict, "OPTIONS": options}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()
    return "answered"


_redis_client: redis.Redis | None = None
_redis_lock = threading.Lock()


def _redis() -> redis.Redis:
    """A client of the queue's Redis with short timeouts: a probe must answer before the balancer gives up."""
    global _redis_client
    with _redis_lock:
        if _redis_client is None:
            timeout = float(settings.TRIAGE_PROBE_TIMEOUT)
            _redis_client = redis.Redis.from_url(
                str(settings.RQ_QUEUES["default"]["URL"]), socket_connect_timeout=timeout, socket_timeout=timeout
            )
        return _redis_client


def redis_check() -> str:
    _redis().ping()
    return "answered"


def worker_check() -> str:
    """A worker seen within `TRIAGE_WORKER_SEEN_SECONDS`; raises (not ready) when none was."""
    backend = settings.TRIAGE_QUEUE_BACKEND
    window = float(settings.TRIAGE_WORKER_SEEN_SECONDS)
    if backend == "rq":
        now = datetime.now(UTC)
        ages = []
        # RQ's own registry: each worker writes `last_heartbeat` while idle (every dequeue timeout, the sweep
        # interval here) and while a job runs.
        for worker in Worker.all(connection=_redis()):
            beat = worker.last_heartbeat
            if beat is not None:
                ages.append((now - (beat if beat.tzinfo else beat.replace(tzinfo=UTC))).total_seconds())
        recent = [a for a in ages if a <= window]
        if not recent:
            raise LookupError(
                f"no RQ worker seen in the last {window:.0f} s ({len(ages)} registered)"
                + (f", the latest {min(ages):.0f} s ago" if ages else "")
            )
        return f"{len(recent)} RQ worker(s), the latest heartbeat {max(min(recent), 0):.0f} s ago"
    if backend == "inprocess":
        seen = tasks.inprocess_seen()
        if seen is None:
            raise LookupError("the in-process worker has not started in this process")
        age = (timezone.now() - seen).total_seconds()
        if age > window:
            raise LookupError(f"the in-process worker's sweeper was last seen {age:.0f} s ago")
        return f"in-process worker, its sweeper seen {age:.0f} s ago"
    # `immediate` works runs in the request that commits them; `none` is intake only (benchmarks).
    return f"queue backend {backend!r}: no separate worker"


def readiness() -> dict[str, Check]:
    checks = {"database": _timed(database_check)}
    if settings.TRIAGE_QUEUE_BACKEND == "rq":
        checks["redis"] = _timed(redis_check)
    checks["worker"] = _timed(worker_check)
    return checks


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


_last_ready: bool | None = None


def readyz(request: HttpRequest) -> HttpResponse:
    global _last_ready
    checks = readiness()
    ready = all(c.ok for c in checks.values())
    response = JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": {name: asdict(c) for name, c in checks.items()}},
        status=200 if ready else 503,
    )
    # Logged when readiness changes, not at every probe (Django would log each 503: one line every few
    # seconds from every balancer for as long as an outage lasts).
    response._has_been_logged = True  # type: ignore[attr-defined]  # Django's own flag for "already logged"
    if ready != _last_ready:
        failed = "; ".join(f"{name}: {c.detail}" for name, c in checks.items() if not c.ok)
        if ready:
            logger.info("ready: every check passes")
        else:
            logger.warning("not ready: %s", failed)
        _last_ready = ready
    return response


class _GuardedDatabaseCollector(Collector):
    """The database figures, or `triage_database_up 0` when the database does not answer the scrape."""

    def collect(self) -> Iterator[Metric]:
        up = 1.0
        try:
            families = list(DatabaseCollector().collect())
        except Exception:  # noqa: BLE001 - the process's own counters are still worth scraping
            families, up = [], 0.0
            connections["default"].close()
        yield GaugeMetricFamily("triage_database_up", "Whether the database answered this scrape.", value=up)
        yield from families


def _authorised(request: HttpRequest) -> bool:
    token = settings.TRIAGE_METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics(request: HttpRequest) -> HttpResponse:
    if not _authorised(request):
        response = HttpResponse("a bearer token is required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    database = CollectorRegistry()
    database.register(_GuardedDatabaseCollector())
    if settings.PROMETHEUS_MULTIPROC_DIR:
        # Every process of this machine that shares the directory (gunicorn and RQ workers), added up.
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted, path=settings.PROMETHEUS_MULTIPROC_DIR)
    else:
        counted = REGISTRY
    return HttpResponse(generate_latest(counted) + generate_latest(database), content_type=CONTENT_TYPE_LATEST)


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}
