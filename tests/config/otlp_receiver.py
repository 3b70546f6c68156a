"""A loopback OTLP/HTTP trace receiver: what a collector does with `POST /v1/traces`, for the tests.

It decodes each request body as the protobuf `ExportTraceServiceRequest` of opentelemetry-proto (gzip or not,
as the exporter sends it) and answers `ExportTraceServiceResponse`, as the OTLP/HTTP specification has it.
`BlackHole` is the opposite: a collector that accepts connections and never answers.
"""

from __future__ import annotations

import gzip
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

KINDS = {v: k.removeprefix("SPAN_KIND_").lower() for k, v in SpanProto.SpanKind.items()}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass
class ReceivedSpan:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    links: list[tuple[str, str, dict[str, Any]]]
    events: list[tuple[str, dict[str, Any]]]
    status: int
    start: int
    end: int
    service: str
    children: list[ReceivedSpan] = field(default_factory=list)


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=s.name,
                        kind=KINDS[s.kind],
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        links=[
                            (link.trace_id.hex(), link.span_id.hex(), {a.key: _value(a.value) for a in link.attributes})
                            for link in s.links
                        ],
                        events=[(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in s.events],
                        status=s.status.code,
                        start=s.start_time_unix_nano,
                        end=s.end_time_unix_nano,
                        service=str(resource.get("service.name", "")),
                    )
                )
    return spans


class OtlpReceiver:
    """`with OtlpReceiver() as r:`; point `OTEL_EXPORTER_OTLP_ENDPOINT` at `r.endpoint`; read `r.spans`."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                spans = decode(body)
                with receiver._lock:
                    receiver.requests += 1
                    receiver.spans.extend(spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]


def tree(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """The spans of one trace as trees (roots first, children by start time); `children` filled in."""
    by_id = {s.span_id: s for s in spans}
    for s in spans:
        s.children = []
    roots = []
    for s in sorted(spans, key=lambda x: x.start):
        parent = by_id.get(s.parent_id)
        (parent.children if parent else roots).append(s)
    return roots


def render(roots: list[ReceivedSpan], *, keys: tuple[str, ...] = ()) -> str:
    """The tree as indented text: name, duration, and the attributes named in `keys`."""
    lines: list[str] = []

    def walk(span: ReceivedSpan, depth: int) -> None:
        shown = ", ".join(f"{k}={span.attributes[k]}" for k in keys if k in span.attributes)
        ms = (span.end - span.start) / 1e6
        lines.append(f"{'  ' * depth}{span.name} [{span.kind}] {ms:.1f} ms" + (f"  {shown}" if shown else ""))
        for child in span.children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)


class BlackHole:
    """A collector that accepts every connection and never answers (until `release`)."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # read nothing, answer nothing
            self.connected.set()

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.accepted:
            conn.close()
        self._listener.close()
