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
        self.bodies: list[bytes] = []  # each export request as received (to forward to a real collector)
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
                    receiver.bodies.append(body)
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

    def forward(self, endpoint: str) -> None:
        """Send every export request received, byte for byte, on to another OTLP/HTTP receiver (a tracing UI)."""
        import urllib.request

        for body in list(self.bodies):
            request = urllib.request.Request(
                endpoint.rstrip("/") + "/v1/traces", data=body, headers={"Content-Type": "application/x-protobuf"}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                answer.read()

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


def waterfall_png(roots: list[ReceivedSpan], path: str, *, keys: tuple[str, ...] = (), title: str = "") -> None:
    """Draw received trees as a tracing UI's waterfall (one bar a span, nested by parent) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[tuple[int, ReceivedSpan]] = []

    def walk(span: ReceivedSpan, depth: int) -> None:
        rows.append((depth, span))
        for child in span.children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    t0 = min(s.start for _, s in rows)
    total = max(s.end for _, s in rows) - t0
    colours = {"server": "#4c72b0", "consumer": "#55a868", "internal": "#8172b2", "client": "#dd8452"}
    fig, (labels, bars) = plt.subplots(
        1, 2, figsize=(15, 0.42 * len(rows) + 1.3), gridspec_kw={"width_ratios": [1.25, 1]}, sharey=True
    )
    for i, (depth, span) in enumerate(rows):
        shown = ", ".join(f"{k.split('.', 1)[-1]}={span.attributes[k]}" for k in keys if k in span.attributes)
        labels.text(0.01 + depth * 0.035, i, span.name, va="center", fontsize=9, fontweight="bold")
        if shown:
            labels.text(0.01 + depth * 0.035, i + 0.32, shown, va="center", fontsize=6.5, color="#555555")
        start_ms, ms = (span.start - t0) / 1e6, (span.end - span.start) / 1e6
        bars.barh(i, max(ms, total / 1e6 / 400), left=start_ms, color=colours.get(span.kind, "#999999"), height=0.6)
        bars.text(start_ms + ms, i, f" {ms:.1f} ms", va="center", fontsize=7)
    labels.set_xlim(0, 1)
    labels.axis("off")
    bars.invert_yaxis()
    bars.set_yticks([])
    bars.set_xlabel("ms since the trace's first span")
    bars.spines[["top", "right", "left"]].set_visible(False)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    bars.legend(handles, list(colours), loc="lower right", fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
