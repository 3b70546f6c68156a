"""Spans for the calls that leave the product: a model, a tool, a helpdesk. One small helper every layer may use.

Everything here goes through the OpenTelemetry *API* only. Until `config.telemetry.telemetry_setup` installs
an SDK tracer provider (it does so only when `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set), the API's tracer is a no-op: `start_as_current_span` hands back
a non-recording span and each `set_attribute` returns at once, so an untraced deployment pays nothing.

Claude's calls are traced by the anthropic SDK itself (its `anthropic.messages.create` span, GenAI
conventions; see `integrations/llm/anthropic.py`). A provider without its own instrumentation (the local
drafter) uses `model_call`. Model and tool calls follow the OpenTelemetry GenAI semantic conventions: a
CLIENT span named `"{gen_ai.operation.name} {gen_ai.request.model}"` (`"execute_tool {gen_ai.tool.name}"` for
a tool) with the operation, provider, requested and answering model and token usage. The installed
`opentelemetry-semantic-conventions` (0.66b2) lists these names as moved to the GenAI conventions repository,
and names `gen_ai.provider.name` as the replacement of `gen_ai.system`; the names are written out here, not
imported, so a later package that drops them cannot break an import.

For the MCP tool step (and anything else that calls out), use `tool_call` / `outbound_call` and set
`triage.*` attributes for what is ours.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from decimal import Decimal
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

TRACER_NAME = "gated-triage"

# GenAI semantic conventions (see the module docstring for where these names come from).
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
ERROR_TYPE = "error.type"


def tracer() -> trace.Tracer:
    """The product's tracer (a no-op one until telemetry is set up)."""
    return trace.get_tracer(TRACER_NAME)


def span_inner(name: str, **kwargs: Any) -> AbstractContextManager[Span]:
    """`tracer().start_as_current_span(name, **kwargs)` for a span inside another of ours (a run's steps).

    With no SDK tracer provider installed (no collector named: `config.telemetry`), the API's no-op tracer
    would hand back the current span itself, after building a context and attaching and detaching it (about
    10 microseconds a span, several a run): the current span is handed back here directly, as it is.
    """
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return nullcontext(trace.get_current_span())
    return tracer().start_as_current_span(name, **kwargs)


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """Span attributes from loose values: None dropped, Decimal as float, everything else as it is."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or value == "":
            continue
        out[key] = float(value) if isinstance(value, Decimal) else value
    return out


def span_set(span: Span, **values: Any) -> None:
    """Set attributes given as keyword arguments whose names use `__` for dots (``triage__route="auto"``)."""
    if span.is_recording():
        span.set_attributes(_attributes({k.replace("__", "."): v for k, v in values.items()}))


def span_error(span: Span, exc: BaseException) -> None:
    """Mark a span failed by `exc`: the exception event, `error.type` and an ERROR status."""
    if span.is_recording():
        span.record_exception(exc)
        span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))


@contextmanager
def model_call(*, provider: str, operation: str, model: str, max_tokens: int | None = None) -> Iterator[Span]:
    """A span around one model call (GenAI conventions). Record the answer with `model_usage`.

    `operation` is a GenAI operation name: ``chat`` for a Messages/Chat API call, ``text_completion`` for a
    drafter that completes text. A failure raised inside is recorded on the span and re-raised.
    """
    attributes = {
        GEN_AI_OPERATION_NAME: operation,
        GEN_AI_PROVIDER_NAME: provider,
        GEN_AI_REQUEST_MODEL: model,
        GEN_AI_REQUEST_MAX_TOKENS: max_tokens,
    }
    with _client_span(f"{operation} {model}".strip(), attributes) as span:
        yield span


def model_usage(
    span: Span,
    *,
    response_model: str = "",
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    cache_read_tokens: int | None = None,
    response_id: str = "",
    finish_reason: str = "",
) -> None:
    """What a model answered with: the model that answered and the tokens (GenAI conventions).

    `input_tokens` is every input token, cached ones included, as the conventions ask; the cached share
    is in the two cache attributes.
    """
    if not span.is_recording():
        return
    span.set_attributes(
        _attributes(
            {
                GEN_AI_RESPONSE_MODEL: response_model,
                GEN_AI_RESPONSE_ID: response_id,
                GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
                GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
                GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: cache_write_tokens,
                GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cache_read_tokens,
            }
        )
    )
    if finish_reason:
        span.set_attribute(GEN_AI_RESPONSE_FINISH_REASONS, [finish_reason])


@contextmanager
def tool_call(*, tool: str, call_id: str = "", server: str = "", **attributes: Any) -> Iterator[Span]:
    """A span around one tool call (GenAI ``execute_tool``): MCP look-ups and actions.

    Extra keyword attributes use `__` for dots (``triage__action_key="run:4:0:refund"``).
    """
    values = {
        GEN_AI_OPERATION_NAME: "execute_tool",
        GEN_AI_TOOL_NAME: tool,
        GEN_AI_TOOL_CALL_ID: call_id,
        GEN_AI_TOOL_TYPE: "extension",
        "server.address": server,
    }
    values.update({k.replace("__", "."): v for k, v in attributes.items()})
    with _client_span(f"execute_tool {tool}", values) as span:
        yield span


@contextmanager
def outbound_call(name: str, **attributes: Any) -> Iterator[Span]:
    """A CLIENT span around any other call that leaves the product (a helpdesk write-back)."""
    with _client_span(name, {k.replace("__", "."): v for k, v in attributes.items()}) as span:
        yield span


@contextmanager
def _client_span(name: str, attributes: Mapping[str, Any]) -> Iterator[Span]:
    """A CLIENT span as the current span; a failure raised inside is recorded on it (`span_error`) and re-raised."""
    with tracer().start_as_current_span(
        name,
        kind=SpanKind.CLIENT,
        attributes=_attributes(attributes),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span_error(span, exc)
            raise


def carrier_current() -> dict[str, str]:
    """The current span's W3C trace context (``traceparent``, ``tracestate``) to store or send on; {} if none."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}


def span_context_from(carrier: Mapping[str, str] | None) -> SpanContext | None:
    """The span context a stored W3C carrier names, or None when it names none (or is malformed)."""
    if not carrier:
        return None
    ctx = propagate.extract(dict(carrier))
    span_context = trace.get_current_span(ctx).get_span_context()
    return span_context if span_context.is_valid else None


def link_to(carrier: Mapping[str, str] | None, **attributes: Any) -> list[Link]:
    """A span link to the span a stored carrier names (none when it names none)."""
    span_context = span_context_from(carrier)
    if span_context is None:
        return []
    return [Link(span_context, _attributes({k.replace("__", "."): v for k, v in attributes.items()}))]


def parent_context(carrier: Mapping[str, str] | None) -> otel_context.Context:
    """A context whose parent is the span a carrier names: a fresh root (empty context) when it names none."""
    span_context = span_context_from(carrier)
    if span_context is None:
        return otel_context.Context()
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), otel_context.Context())


def current_ids() -> tuple[str, str] | None:
    """The current trace id and span id as hex (for log lines), or None outside a recording span."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)
