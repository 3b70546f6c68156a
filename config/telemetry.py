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
from collections.abc import Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

from integrations.tracing import current_ids

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "gated-triage"
_TRUE = {"1", "true", "yes", "on"}

SpanExporterFactory = Callable[[], SpanExporter]


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


def _otlp_exporter() -> SpanExporter:
    # Imported here: a deployment without a collector never loads the exporter (nor `requests`' session).
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: from the OTEL_* environment


class _PerProcessBatch(SpanProcessor):
    """A `BatchSpanProcessor` per process, built by the first span that ends in it (see the module docstring).

    Off (no exporter factory) it drops every span: tests turn exporting on and off in one process, where the
    global tracer provider can only be installed once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._factory: SpanExporterFactory | None = None
        self._inner: BatchSpanProcessor | None = None
        self._pid: int | None = None

    def configure(self, factory: SpanExporterFactory | None) -> None:
        with self._lock:
            old, self._inner, self._pid, self._factory = self._inner, None, None, factory
        if old is not None:
            _shutdown_quietly(old)

    def _current(self) -> BatchSpanProcessor | None:
        pid = os.getpid()
        if self._pid == pid:
            return self._inner
        with self._lock:
            if self._pid != pid:
                # After a fork the parent's processor is left alone: its thread does not exist here, and its
                # queue and connection are the parent's to export.
                self._inner = BatchSpanProcessor(self._factory()) if self._factory else None
                self._pid = pid
            return self._inner

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        inner = self._current()
        if inner is not None:
            inner.on_end(span)

    def shutdown(self) -> None:
        inner = self._inner if self._pid == os.getpid() else None
        if inner is not None:
            _shutdown_quietly(inner)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        inner = self._inner if self._pid == os.getpid() else None
        return inner.force_flush(timeout_millis) if inner is not None else True


def _shutdown_quietly(processor: BatchSpanProcessor, timeout: float = 1.0) -> None:
    """Shut a processor down waiting at most `timeout`: its own shutdown may wait 30 s on a dead collector."""
    _bounded(processor.shutdown, timeout=timeout)


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


class _Switch(Sampler):
    """The configured sampler while exporting, else ALWAYS_OFF: once a provider is installed (it cannot be
    removed again), turning exporting off still makes every span a non-recording one that costs nothing."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.on = True

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        chosen = self.sampler if self.on else ALWAYS_OFF
        return chosen.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"Switch({self.sampler.get_description()}, on={self.on})"


_processor: _PerProcessBatch | None = None
_switch: _Switch | None = None
_setup_lock = threading.Lock()


def telemetry_setup(*, exporter: SpanExporterFactory | None = None) -> bool:
    """Install the tracer provider when a collector is named (idempotent; `exporter` replaces OTLP in tests).

    Returns whether spans are now exported. Called again after the environment changed, it follows it: a
    collector no longer named turns exporting off (the installed provider then drops every span).
    """
    global _processor, _switch
    enabled = exporter is not None or telemetry_enabled()
    with _setup_lock:
        if _processor is None or _switch is None:
            if not enabled:
                return False
            resource = Resource.create()
            if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
                resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
            # The sampler the SDK itself would take from OTEL_TRACES_SAMPLER (+ _ARG), else parent-based
            # always-on; the SDK has no public function for it. Not the provider's own exit handler, which may
            # wait 30 s for a collector that does not answer: ours is bounded.
            _switch = _Switch(sampling._get_from_env_or_default())
            provider = TracerProvider(resource=resource, sampler=_switch, shutdown_on_exit=False)
            _processor = _PerProcessBatch()
            provider.add_span_processor(_processor)
            trace.set_tracer_provider(provider)
            atexit.register(_flush_at_exit)
        _switch.on = enabled
        _processor.configure((exporter or _otlp_exporter) if enabled else None)
    return enabled


def telemetry_flush(*, timeout: float) -> bool:
    """Export what this process has queued, waiting at most `timeout` seconds (False: not all of it in time).

    Used where a process is about to end (an RQ work-horse, which exits without exit handlers; interpreter
    exit): a collector that does not answer costs at most `timeout`, and what was not sent is dropped.
    """
    processor = _processor
    if processor is None:
        return True
    return _bounded(processor.force_flush, timeout=timeout)


def _flush_at_exit() -> None:
    """At interpreter exit: send what is queued. No thread may start now, so this waits at most one export's
    timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`), not the SDK's own 30 s shutdown."""
    if _processor is not None:
        try:
            _processor.force_flush()
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
