"""gunicorn's settings for the web process: `gunicorn -c config/gunicorn.py config.wsgi`.

Read from the environment so one file serves every host. Threads rather than many processes: requests spend
their time waiting on PostgreSQL, and each process holds the embedding model once it has been asked for.
"""

from __future__ import annotations

import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A request that takes longer than this is a bug (no model is called inside a request): restart the worker.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
# Recycle workers now and then so no leak grows without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = 200
accesslog = "-"
errorlog = "-"
# Behind a TLS-terminating proxy on the same host; set FORWARDED_ALLOW_IPS to the proxy's address otherwise.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server: object, worker: object) -> None:
    """Metrics: with PROMETHEUS_MULTIPROC_DIR, a dead worker's live gauges are removed (its counters stay)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]  # gunicorn's Worker, untyped
