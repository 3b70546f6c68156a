"""A SERVER span per HTTP request, so a webhook or API call that creates a ticket is a span its run links to.

Written here rather than taken from `opentelemetry-instrumentation-django`: that package (beta, with its
WSGI and util-http siblings) is not in the lock, and what the product needs is one span per request with the
HTTP semantic-convention attributes and the W3C context of the caller, which this does in a few lines. With
tracing off the tracer is the API's no-op one and this costs a header look-up.

The probes (`/healthz`, `/readyz`, `/metrics`) make no spans: `config.probes_middleware`, before this one,
answers them.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode

from integrations.tracing import span_error, tracer


class RequestSpanMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # The caller's trace, when it sent one (traceparent/tracestate); a new trace otherwise.
        parent = propagate.extract({k.lower(): v for k, v in request.headers.items()}, context=otel_context.Context())
        method = request.method or "GET"
        with tracer().start_as_current_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": request.path, "url.scheme": request.scheme or ""},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                response = self.get_response(request)
            except BaseException as exc:
                span_error(span, exc)
                raise
            if span.is_recording():
                match = request.resolver_match
                if match is not None and match.route:
                    route = "/" + match.route.lstrip("/")
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            return response
