"""A loopback stand-in for the Anthropic Messages API, for driving the real `anthropic` SDK.

It speaks `POST /v1/messages` as documented: a message with a `tool_use` block and
`stop_reason: "tool_use"`, `usage` with input, output, cache-creation and cache-read tokens; errors
as `{"type": "error", "error": {"type": ..., "message": ...}}` with the HTTP status and, where
given, a `retry-after` header. Each request takes the next scripted `Reply` (or the `default`
callable's answer when the script has run out). Every request and every delivered answer is logged,
so a test can compare what was charged with what was served.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_USAGE = {
    "input_tokens": 420,
    "output_tokens": 60,
    "cache_creation_input_tokens": 1800,
    "cache_read_input_tokens": 0,
}
PASSAGE = re.compile(r'<passage chunk_id="(\d+)"[^>]*>\n(.*?)\n</passage>', re.S)


@dataclass
class Reply:
    """One scripted answer: a tool call (`tool_input`), an error (`status` >= 400), or, with status 0,
    a connection dropped without any answer."""

    status: int = 200
    tool_input: dict[str, Any] | None = None
    error_type: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_USAGE))
    delay: float = 0.0
    model: str | None = None  # default: the model asked for


def error(status: int, error_type: str, *, retry_after: str | None = None, message: str = "") -> Reply:
    return Reply(
        status=status,
        error_type=error_type,
        message=message or error_type.replace("_", " "),
        headers={"retry-after": retry_after} if retry_after is not None else {},
    )


def dropped() -> Reply:
    return Reply(status=0)


def answer(tool_input: dict[str, Any], **kw: Any) -> Reply:
    return Reply(tool_input=tool_input, **kw)


def classification(category: str, *, confidence: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {
        "category": category,
        "confidence": confidence,
        "out_of_scope": category == "out_of_scope",
        "priority": "normal",
        "rationale": "scripted",
        **extra,
    }


def valid_answer(body: dict[str, Any], *, category: str | None = None) -> Reply:
    """A well-formed answer to whatever tool the request forces (the first category, or `category`)."""
    tool = body["tool_choice"]["name"]
    schema = body["tools"][0]["input_schema"]
    if tool == "record_classification":
        return answer(classification(category or schema["properties"]["category"]["enum"][0]))
    system = "\n".join(block["text"] for block in body.get("system", []))
    passages = PASSAGE.findall(system)
    chunk_id, text = passages[0] if passages else ("0", "We will look into it.")
    return answer({"body": text.strip().splitlines()[0], "citations": [int(chunk_id)] if passages else []})


@dataclass
class Served:
    id: str
    model: str
    status: int
    usage: dict[str, int] | None
    delivered: bool  # the write succeeded; a client that timed out may still not have read it
    delay: float = 0.0


class FakeAnthropic:
    """`with FakeAnthropic(script) as fake:` ... `fake.base_url`, `fake.requests`, `fake.served`."""

    def __init__(self, script: list[Reply] | None = None, default: Callable[[dict[str, Any]], Reply] | None = None):
        self.script = list(script or [])
        self.default = default or valid_answer
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.served: list[Served] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            return self.script.pop(0) if self.script else self.default(body)

    def __enter__(self) -> FakeAnthropic:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.split("?")[0] != "/v1/messages":
                    return self._send(
                        404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}}
                    )
                with fake._lock:
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                reply = fake.next_reply(body)
                msg_id = f"msg_fake{next(fake._ids):06d}"
                model = reply.model or body.get("model", "")
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status == 0:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    with fake._lock:
                        fake.served.append(Served(msg_id, model, 0, None, False, reply.delay))
                    return None
                if reply.status >= 400:
                    payload = {"type": "error", "error": {"type": reply.error_type, "message": reply.message}}
                    delivered = self._send(reply.status, payload, reply.headers)
                    with fake._lock:
                        fake.served.append(Served(msg_id, model, reply.status, None, delivered, reply.delay))
                    return None
                payload = {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [
                        {
                            "type": "tool_use",
                            "id": f"toolu_{msg_id}",
                            "name": body["tool_choice"]["name"],
                            "input": reply.tool_input or {},
                        }
                    ],
                    "stop_reason": "tool_use",
                    "stop_sequence": None,
                    "usage": reply.usage,
                }
                delivered = self._send(200, payload, {"request-id": f"req_{msg_id}", **reply.headers})
                with fake._lock:
                    fake.served.append(Served(msg_id, model, 200, reply.usage, delivered, reply.delay))
                return None

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> bool:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    return True
                except (BrokenPipeError, ConnectionResetError):
                    return False  # the client gave up (timeout): it never saw this answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def models_asked(self) -> list[str]:
        return [r["model"] for r in self.requests]
