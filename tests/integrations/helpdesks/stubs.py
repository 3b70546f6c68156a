"""Helpdesk test fixtures: sources, vendor-correct signing, and a loopback helpdesk (a pytest plugin,
registered in tests/conftest.py, so the write-back and admin tests elsewhere in the tree can use them)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integrations.helpdesks.documented import BODIES, auth_problems

# Vendor-sourced payloads live beside each vendor package, with a SOURCE.md naming where each comes from.
HELPDESKS = Path(__file__).resolve().parents[3] / "integrations" / "helpdesks"
SECRET = "whsec-test-4f1c2b9a7e"


def _b64(secret: str, message: bytes, algo: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), message, getattr(hashlib, algo)).digest()).decode()


def _hex(secret: str, message: bytes, algo: str) -> str:
    return hmac.new(secret.encode(), message, getattr(hashlib, algo)).hexdigest()


def signed_headers(
    vendor: str, body: bytes, *, secret: str = SECRET, at: float | None = None, app: bool = False
) -> dict[str, str]:
    """Headers exactly as the vendor would send them for `body`, signed with `secret` at time `at`.

    Each signature is one `hmac` call written from the vendor's documentation (cited in the vendor's
    fixtures/SOURCE.md), never our own verify code.
    """
    at = time.time() if at is None else at
    if vendor == "zendesk":
        stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "X-Zendesk-Webhook-Signature": _b64(secret, stamp.encode() + body, "sha256"),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
            "X-Zendesk-Webhook-Invocation-Id": str(uuid.uuid4()),
        }
    if vendor == "freshdesk":
        return {"X-Webhook-Token": secret}
    if vendor == "helpscout":
        return {"X-HelpScout-Signature": _b64(secret, body, "sha1"), "X-HelpScout-Event": "convo.created"}
    if vendor in ("intercom", "zammad"):
        headers = {"X-Hub-Signature": "sha1=" + _hex(secret, body, "sha1")}
        if vendor == "zammad":
            headers |= {"X-Zammad-Delivery": str(uuid.uuid4()), "X-Zammad-Trigger": "triage: new ticket"}
        return headers
    if vendor == "front":
        if app:
            stamp = str(int(at * 1000))
            return {
                "X-Front-Signature": _b64(secret, stamp.encode() + b":" + body, "sha256"),
                "X-Front-Request-Timestamp": stamp,
            }
        return {"X-Front-Signature": _b64(secret, body, "sha1")}
    if vendor == "chatwoot":
        stamp = str(int(at))
        return {
            "X-Chatwoot-Signature": "sha256=" + _hex(secret, stamp.encode() + b"." + body, "sha256"),
            "X-Chatwoot-Timestamp": stamp,
        }
    raise ValueError(vendor)


def fixture_path(name: str) -> Path:
    """``"<vendor>/<file>.json"`` -> ``integrations/helpdesks/<vendor>/fixtures/<file>.json``."""
    vendor, _, file = name.partition("/")
    return HELPDESKS / vendor / "fixtures" / file


def vendor_fixtures(vendor: str) -> list[Path]:
    return sorted((HELPDESKS / vendor / "fixtures").glob("*.json"))


def fixture_body(name: str) -> bytes:
    return fixture_path(name).read_bytes()


@pytest.fixture
def helpdesk_source(db):
    from integrations.models import HelpdeskSource

    def _make(vendor: str, **fields):
        fields.setdefault("name", f"{vendor}-{uuid.uuid4().hex[:6]}")
        fields.setdefault("secret", SECRET)
        return HelpdeskSource.objects.create(vendor=vendor, **fields)

    return _make


@pytest.fixture
def deliver(client):
    """POST a raw body to a source's webhook endpoint."""

    def _deliver(source, body: bytes, headers: dict[str, str]):
        return client.post(
            f"/webhooks/{source.vendor}/{source.pk}", data=body, content_type="application/json", headers=headers
        )

    return _deliver


def reserialized(body: bytes) -> bytes:
    return json.dumps(json.loads(body)).encode()


@pytest.fixture
def sign():
    return signed_headers


@pytest.fixture
def payload():
    return fixture_body


# --- a loopback helpdesk ----------------------------------------------------------------------------


class StubHelpdesk:
    """An in-memory helpdesk speaking one vendor's documented REST endpoints on 127.0.0.1.

    `faults` is consumed by reply-posting requests, one per request: ("429", retry_after),
    ("500",), or ("slow", seconds) — the reply is stored, then the answer comes too late.
    Set `fail_all` to answer every request 503.

    Every request is checked against the vendor's documented request (tests/integrations/helpdesks/
    documented.py): authentication header (exact when `expect(user=, token=)` was called), required body
    fields and allowed values. A request that breaks one is answered 400 (401 for authentication) and kept in
    `violations`. Help Scout's bearer tokens must be ones its token endpoint issued and has not `expire`d.
    Read-only endpoints the intake and admin use are served too: who-am-I per vendor, Zendesk's users
    (`users`), Front's events (`events`), Help Scout's conversations with their primary customer.
    """

    def __init__(self, vendor: str):
        from integrations.helpdesks.base import html_to_text

        self.vendor = vendor
        self.to_text = html_to_text
        self.replies: dict[str, list[str]] = defaultdict(list)
        self.tags: dict[str, list[str]] = defaultdict(list)
        self.priority: dict[str, str] = {}
        self.status: dict[str, str] = {}
        self.requests: list[tuple[str, str, dict[str, str], object]] = []
        self.faults: list[tuple] = []
        self.fail_all = False
        self.violations: list[str] = []
        self.user: str | None = None
        self.token: str | None = None
        self.issued: list[str] = []  # Help Scout access tokens issued and still valid
        self.token_requests: list[dict] = []
        self.token_lifetime = 7200
        self.users: dict[str, dict] = {}  # Zendesk user id -> user
        self.events: dict[str, dict] = {}  # Front event id -> full event
        self.me: dict | None = None  # the who-am-I answer; None: the vendor's documented example shape
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, answer, extra = stub.dispatch(self.command, self.path, dict(self.headers), body)
                if status == "slow":
                    time.sleep(answer)
                    status, answer = 200, {}
                data = json.dumps(answer).encode() if answer is not None else b""
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def expect(self, *, user: str | None = None, token: str | None = None) -> None:
        """Check requests carry exactly these credentials (as the vendor documents them)."""
        self.user, self.token = user, token

    def expire(self) -> None:
        """Every Help Scout token issued so far stops working (as when its expires_in has passed)."""
        self.issued.clear()

    @property
    def reply_posts(self) -> int:
        return sum(1 for _, _, _, kind in self.requests if kind == "reply")

    def dispatch(self, method: str, path: str, headers: dict, body):
        with self.lock:
            route = self.route(method, path, body)
            kind = route[0] if route else None
            self.requests.append((method, path, headers, kind))
            if self.fail_all:
                return 503, {"error": "down"}, {}
            if route is None:
                return 404, {"error": f"no route {method} {path}"}, {}
            kind, ticket, apply = route
            if kind == "token":
                return 200, apply(), {}
            auth = self._auth_problems(headers)
            if auth:
                self.violations.extend(auth)
                return 401, {"error": "; ".join(auth)}, {}
            if kind in ("reply", "tags", "tag-create", "update"):
                problems = BODIES[self.vendor](kind, body if isinstance(body, dict) else {})
                if problems:
                    self.violations.extend(f"{method} {path}: {p}" for p in problems)
                    return 400, {"errors": problems}, {}
            if kind == "reply" and self.faults:
                fault = self.faults.pop(0)
                if fault[0] == "429":
                    return 429, {"error": "rate limited"}, {"Retry-After": str(fault[1])}
                if fault[0] == "500":
                    return 500, {"error": "boom"}, {}
                if fault[0] == "slow":
                    apply()
                    return "slow", fault[1], {}
            answer = apply()
            if kind == "read" and answer is None and not ticket:
                return 404, {"error": "not found"}, {}
            return 200, answer, {}

    def _auth_problems(self, headers: dict) -> list[str]:
        if self.vendor == "helpscout":
            auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
            return [] if auth.removeprefix("Bearer ") in self.issued else [f"bearer token not valid: {auth!r}"]
        return auth_problems(self.vendor, headers, user=self.user, token=self.token)

    def _issue_token(self, body) -> dict:
        # https://developer.helpscout.com/mailbox-api/overview/authentication/#client-credentials-flow
        self.token_requests.append(body)
        if body.get("grant_type") != "client_credentials" or not body.get("client_id") or not body.get("client_secret"):
            return {"error": "invalid_request"}
        token = f"hs-{uuid.uuid4().hex}"
        self.issued.append(token)
        return {"token_type": "bearer", "access_token": token, "expires_in": self.token_lifetime}

    def _read_only(self, method: str, path: str):
        """Who-am-I and the look-ups intake makes, per vendor (documented example shapes)."""
        v, p = self.vendor, path.split("?")[0]
        if method != "GET":
            return None
        me_paths = {
            "zendesk": "/api/v2/users/me.json",
            "freshdesk": "/api/v2/agents/me",
            "helpscout": "/v2/users/me",
            "intercom": "/me",
            "front": "/me",
            "chatwoot": "/api/v1/profile",
            "zammad": "/api/v1/users/me",
        }
        if p == me_paths[v]:
            default = {
                "zendesk": {
                    "user": {"id": 35436, "name": "Johnny Agent", "email": "johnny@example.com", "role": "agent"}
                },
                "freshdesk": {"id": 1, "contact": {"name": "Rachel", "email": "rachel@freshdesk.com"}},
                "helpscout": {"id": 12, "firstName": "Vernon", "lastName": "Bear", "email": "vbear@example.com"},
                "intercom": {"type": "admin", "id": "991267460", "name": "Ciaran", "email": "admin@example.com"},
                "front": {"_links": {"self": self.base_url + "/me"}, "name": "Tidewater", "id": "cmp_123"},
                "chatwoot": {"id": 1, "name": "Agent", "email": "agent@example.com"},
                "zammad": {"id": 3, "firstname": "Nicole", "lastname": "Braun", "email": "nicole@example.com"},
            }[v]
            return "read", "", lambda: self.me if self.me is not None else default
        if v == "zendesk" and (r := re.fullmatch(r"/api/v2/users/(\d+)\.json", p)):
            user = self.users.get(r[1])
            return "read", "", lambda: {"user": user} if user else None
        if v == "front" and (r := re.fullmatch(r"/events/(\w+)", p)):
            event = self.events.get(r[1])
            return "read", "", lambda: event
        return None

    def route(self, method: str, path: str, body):
        """(kind, ticket id, apply) for a documented endpoint of this vendor, else None."""
        v, b = self.vendor, body or {}
        m = lambda pattern: re.fullmatch(pattern, path.split("?")[0])  # noqa: E731 - a one-line matcher read as a table
        if v == "helpscout" and m(r"/v2/oauth2/token") and method == "POST":
            return "token", "", lambda: self._issue_token(b)
        if (found := self._read_only(method, path)) is not None:
            return found
        if v == "zendesk":
            if (r := m(r"/api/v2/tickets/([^/]+)/comments\.json")) and method == "GET":
                t = r[1]
                return "read", t, lambda: {"comments": [{"body": x, "public": True} for x in self.replies[t]]}
            if (r := m(r"/api/v2/tickets/([^/]+)/tags\.json")) and method == "PUT":
                t = r[1]
                return "tags", t, lambda: self._add_tags(t, b["tags"])
            if (r := m(r"/api/v2/tickets/([^/]+)\.json")) and method == "PUT":
                t, ticket = r[1], b["ticket"]
                if "comment" in ticket:
                    return "reply", t, lambda: self._reply(t, ticket["comment"]["body"])
                return "update", t, lambda: self._update(t, ticket.get("priority"), ticket.get("status"))
        if v == "freshdesk":
            if (r := m(r"/api/v2/tickets/(\d+)/conversations")) and method == "GET":
                t = r[1]
                return "read", t, lambda: [{"body": x, "body_text": self.to_text(x)} for x in self.replies[t]]
            if (r := m(r"/api/v2/tickets/(\d+)/reply")) and method == "POST":
                t = r[1]
                return "reply", t, lambda: self._reply(t, b["body"])
            if (r := m(r"/api/v2/tickets/(\d+)")) and method == "GET":
                t = r[1]
                return "read", t, lambda: {"id": int(t), "tags": list(self.tags[t])}
            if (r := m(r"/api/v2/tickets/(\d+)")) and method == "PUT":
                t = r[1]

                def apply():
                    if "tags" in b:
                        self.tags[t] = list(b["tags"])
                    return self._update(
                        t,
                        {1: "low", 2: "normal", 3: "high", 4: "urgent"}.get(b.get("priority")),
                        {4: "solved"}.get(b.get("status")),
                    )

                return "update", t, apply
        if v == "helpscout":
            if (r := m(r"/v2/conversations/(\d+)/threads")) and method == "GET":
                t = r[1]
                return (
                    "read",
                    t,
                    lambda: {"_embedded": {"threads": [{"type": "reply", "body": x} for x in self.replies[t]]}},
                )
            if (r := m(r"/v2/conversations/(\d+)/reply")) and method == "POST":
                t = r[1]
                return "reply", t, lambda: self._reply(t, b["text"])
            if (r := m(r"/v2/conversations/(\d+)/tags")) and method == "PUT":
                t = r[1]

                def apply():
                    self.tags[t] = list(b["tags"])
                    return None

                return "tags", t, apply
            if (r := m(r"/v2/conversations/(\d+)")) and method == "GET":
                t = r[1]
                return (
                    "read",
                    t,
                    lambda: {
                        "id": int(t),
                        "tags": [{"tag": x} for x in self.tags[t]],
                        "primaryCustomer": {"id": 7231, "type": "customer", "email": "customer@example.com"},
                    },
                )
            if (r := m(r"/v2/conversations/(\d+)")) and method == "PATCH":
                t = r[1]
                return "update", t, lambda: self._update(t, None, "solved" if b.get("value") == "closed" else None)
        if v == "intercom":
            if (r := m(r"/conversations/(\w+)")) and method == "GET":
                t = r[1]
                return (
                    "read",
                    t,
                    lambda: {
                        "id": t,
                        "state": "closed" if self.status.get(t) == "solved" else "open",
                        "conversation_parts": {
                            "conversation_parts": [
                                {"part_type": "comment", "author": {"type": "admin"}, "body": x}
                                for x in self.replies[t]
                            ]
                        },
                    },
                )
            if (r := m(r"/conversations/(\w+)/reply")) and method == "POST":
                t = r[1]
                return "reply", t, lambda: self._reply(t, b["body"])
            if m(r"/tags") and method == "POST":
                return "tag-create", "", lambda: {"type": "tag", "id": "tag-" + b["name"], "name": b["name"]}
            if (r := m(r"/conversations/(\w+)/tags")) and method == "POST":
                t = r[1]
                return "tags", t, lambda: self._add_tags(t, [b["id"].removeprefix("tag-")])
            if (r := m(r"/conversations/(\w+)")) and method == "PUT":
                t = r[1]
                return (
                    "update",
                    t,
                    lambda: self._update(t, "high" if b.get("priority") == "priority" else "normal", None),
                )
            if (r := m(r"/conversations/(\w+)/parts")) and method == "POST" and b.get("message_type") == "close":
                t = r[1]
                return "update", t, lambda: self._update(t, None, "solved")
        if v == "front":
            if (r := m(r"/conversations/(\w+)/messages")) and method == "GET":
                t = r[1]
                return "read", t, lambda: {"_results": [{"body": x, "is_inbound": False} for x in self.replies[t]]}
            if (r := m(r"/conversations/(\w+)/messages")) and method == "POST":
                t = r[1]
                return "reply", t, lambda: self._reply(t, b["body"])
            if m(r"/tags") and method == "GET":
                return "read", "", lambda: {"_results": []}
            if m(r"/tags") and method == "POST":
                return "tag-create", "", lambda: {"id": "tag_" + b["name"], "name": b["name"]}
            if (r := m(r"/conversations/(\w+)/tags")) and method == "POST":
                t = r[1]
                return "tags", t, lambda: self._add_tags(t, [i.removeprefix("tag_") for i in b["tag_ids"]])
            if (r := m(r"/conversations/(\w+)")) and method == "PATCH":
                t = r[1]
                return "update", t, lambda: self._update(t, None, "solved" if b.get("status") == "archived" else None)
        if v == "chatwoot":
            if (r := m(r"/api/v1/accounts/\d+/conversations/(\d+)/messages")) and method == "GET":
                t = r[1]
                return "read", t, lambda: {"payload": [{"content": x, "message_type": 1} for x in self.replies[t]]}
            if (r := m(r"/api/v1/accounts/\d+/conversations/(\d+)/messages")) and method == "POST":
                t = r[1]
                return "reply", t, lambda: self._reply(t, b["content"])
            if (r := m(r"/api/v1/accounts/\d+/conversations/(\d+)/labels")) and method == "GET":
                t = r[1]
                return "read", t, lambda: {"payload": list(self.tags[t])}
            if (r := m(r"/api/v1/accounts/\d+/conversations/(\d+)/labels")) and method == "POST":
                t = r[1]

                def apply():
                    self.tags[t] = list(b["labels"])
                    return {"payload": self.tags[t]}

                return "tags", t, apply
            if (r := m(r"/api/v1/accounts/\d+/conversations/(\d+)/toggle_priority")) and method == "POST":
                t = r[1]
                return "update", t, lambda: self._update(t, b["priority"], None)
            if (r := m(r"/api/v1/accounts/\d+/conversations/(\d+)/toggle_status")) and method == "POST":
                t = r[1]
                return "update", t, lambda: self._update(t, None, "solved" if b["status"] == "resolved" else None)
        if v == "zammad":
            if (r := m(r"/api/v1/ticket_articles/by_ticket/(\d+)")) and method == "GET":
                t = r[1]
                return "read", t, lambda: [{"body": x, "sender": "Agent"} for x in self.replies[t]]
            if m(r"/api/v1/ticket_articles") and method == "POST":
                t = str(b["ticket_id"])
                return "reply", t, lambda: self._reply(t, b["body"])
            if m(r"/api/v1/tags/add") and method == "POST":
                t = str(b["o_id"])
                return "tags", t, lambda: self._add_tags(t, [b["item"]])
            if (r := m(r"/api/v1/tickets/(\d+)")) and method == "PUT":
                t = r[1]
                return (
                    "update",
                    t,
                    lambda: self._update(
                        t,
                        (b.get("priority") or "").partition(" ")[2] or None,
                        "solved" if b.get("state") == "closed" else None,
                    ),
                )
        return None

    def _reply(self, ticket: str, body: str):
        self.replies[ticket].append(body)
        return {"id": len(self.replies[ticket])}

    def _add_tags(self, ticket: str, tags: list[str]):
        for tag in tags:
            if tag not in self.tags[ticket]:
                self.tags[ticket].append(tag)
        return {"tags": self.tags[ticket]}

    def _update(self, ticket: str, priority: str | None, status: str | None):
        if priority:
            self.priority[ticket] = priority
        if status:
            self.status[ticket] = status
        return {"id": ticket}


@pytest.fixture
def stub_helpdesk():
    stubs: list[StubHelpdesk] = []

    def _start(vendor: str) -> StubHelpdesk:
        stubs.append(StubHelpdesk(vendor))
        return stubs[-1]

    yield _start
    for stub in stubs:
        stub.close()
