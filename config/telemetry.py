"""OpenTelemetry set-up, in one place: traces exported over OTLP/HTTP when a collector is named, nothing otherwise.

`telemetry_setup()` is called where a process starts serving: `config/wsgi.py` (each gunicorn worker, and
`runserver`, which also hosts the in-process worker) and `triage.worker.TriageWorker` (the RQ worker). It does
something only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and
`OTEL_SDK_DISABLED` is not true; otherwise no tracer provider is installed and the API's tracer stays the
no-op one (`integrations.tracing`), so an untraced deployment costs nothing.

Everything else is the standard `OTEL_*` environment, read by the SDK itself: `OTEL_SERVICE_NAME` (default
here: ``gated-triage``), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`
(seconds one export may take, retries included; 10), `OTEL_EXPORTER_OTLP_COMPRESSION`, `OTEL_TRACES_SAMPLER`
(+ `_ARG`), and `OTEL_BSP_MAX_QUEUE_SIZE` (2048) / `OTEL_BSP_SCHEDULE_DELAY` (5000 ms) /
`OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (512).

A collector that is down never slows a run: spans go to a `BatchSpanProcessor`, whose bounded queue is
exported by a thread of its own; the run's thread only appends to the queue (and, the queue full, the span
is dropped). One export waits at most the exporter's timeout, on that thread.

Forking. RQ forks a work-horse per job and gunicorn forks its workers. The processor here is built lazily
in the process that first ends a span (`_PerProcessBatch`), so a forked child never shares its parent's
export thread, queue or HTTP connection: it initialises its own after the fork. A work-horse ends with
`os._exit`, which runs no exit handler, so the worker flushes the job's spans with `telemetry_flush`, bounded.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from integrations.tracing import current_ids

logger = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}


def telemetry_enabled() -> bool:
    """Whether traces are exported: a collector is named and the SDK is not switched off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


_provider: Any = None  # config.telemetry_sdk.Installed, once tracing was turned on in this process
_setup_lock = threading.Lock()


def telemetry_setup(*, exporter: Callable[[], Any] | None = None) -> bool:
    """Install the tracer provider when a collector is named (idempotent; `exporter` replaces OTLP in tests).

    Returns whether spans are now exported. Called again after the environment changed, it follows it: a
    collector no longer named turns exporting off (the installed provider then samples nothing). Without a
    collector the SDK is not even imported: an untraced process pays for none of it.
    """
    global _provider
    enabled = exporter is not None or telemetry_enabled()
    with _setup_lock:
        if _provider is None:
            if not enabled:
                return False
            from config.telemetry_sdk import provider_install

            _provider = provider_install()
            atexit.register(_flush_at_exit)
        _provider.configure(exporter, enabled=enabled)
    return enabled


def _bounded(call: Callable[[], object], *, timeout: float) -> bool:
    """Run `call` on a daemon thread; True when it returned within `timeout` seconds.

    The SDK's `force_flush` and `shutdown` ignore their timeouts while an export is under way (an export
    waits up to the OTLP timeout, retries included), so the wait is bounded here instead.
    """
    done = threading.Event()

    def run() -> None:
        try:
            call()
        except Exception:
            logger.exception("telemetry: flushing or shutting down the span processor failed")
        finally:
            done.set()

    threading.Thread(target=run, name="telemetry-flush", daemon=True).start()
    return done.wait(timeout)


def telemetry_flush(*, timeout: float) -> bool:
    """Export what this process has queued, waiting at most `timeout` seconds (False: not all of it in time).

    Used where a process is about to end (an RQ work-horse, which exits without exit handlers; interpreter
    exit): a collector that does not answer costs at most `timeout`, and what was not sent is dropped.
    """
    provider = _provider
    if provider is None:
        return True
    return _bounded(provider.processor.force_flush, timeout=timeout)


def _flush_at_exit() -> None:
    """At interpreter exit: send what is queued. No thread may start now, so this waits at most one export's
    timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`), not the SDK's own 30 s shutdown."""
    if _provider is not None:
        try:
            _provider.processor.force_flush()
        except Exception:
            logger.exception("telemetry: spans could not be sent at exit")


class TraceContextFilter(logging.Filter):
    """Adds `trace_id` and `span_id` to a log record made inside a recording span (none outside one).

    The JSON formatter writes them as fields (python-json-logger writes a record's extra attributes); the
    plain one (`PlainFormatter`) appends them when there are any.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


class PlainFormatter(logging.Formatter):
    """The human-readable line of development mode, with the trace and span ids when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        return f"{line} [trace={trace_id} span={getattr(record, 'span_id', '')}]" if trace_id else line
