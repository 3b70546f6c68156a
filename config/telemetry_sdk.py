"""The OpenTelemetry SDK side of `config.telemetry`, imported only once a collector is named.

See `config.telemetry` for what is exported, when, and why a collector that is down costs a run nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

from config.telemetry import _bounded

DEFAULT_SERVICE_NAME = "gated-triage"

SpanExporterFactory = Callable[[], SpanExporter]


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


@dataclass
class Installed:
    """The provider installed in this process: its per-process processor and its sampler switch."""

    processor: _PerProcessBatch
    switch: _Switch

    def configure(self, exporter: SpanExporterFactory | None, *, enabled: bool) -> None:
        self.switch.on = enabled
        self.processor.configure((exporter or _otlp_exporter) if enabled else None)


def provider_install() -> Installed:
    """Install the global tracer provider (once per process: OpenTelemetry allows no second one)."""
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    # The sampler the SDK itself would take from OTEL_TRACES_SAMPLER (+ _ARG), else parent-based always-on; the
    # SDK has no public function for it. Not the provider's own exit handler, which may wait 30 s for a
    # collector that does not answer: config.telemetry's is bounded.
    switch = _Switch(sampling._get_from_env_or_default())
    provider = TracerProvider(resource=resource, sampler=switch, shutdown_on_exit=False)
    processor = _PerProcessBatch()
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return Installed(processor=processor, switch=switch)
