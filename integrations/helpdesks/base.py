"""What every helpdesk vendor package shares: signatures, payload access, HTML to text.

A vendor package (`integrations/helpdesks/<vendor>.py`) provides:

- ``verify(*, headers, body, secret) -> bool``: the signature on the raw body, compared in constant time;
- ``signed_at(*, headers) -> float | None``: the signed timestamp (epoch seconds) where the vendor signs one;
- ``parse(*, payload, headers) -> IncomingTicket | None``: the documented payload as a ticket, ``None`` for
  events that carry no new ticket (answered 2xx and ignored);
- ``Client``: the vendor's REST API for write-back (a `HelpdeskClient`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any


class SignatureError(Exception):
    """Missing, wrong or stale signature: answered 401."""


class PayloadError(Exception):
    """The payload lacks a required field or has the wrong shape: answered 400 naming the field."""

    def __init__(self, field_name: str, reason: str = "is required"):
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class IncomingTicket:
    """A ticket as a vendor payload states it, before it becomes a `TicketIn`."""

    external_id: str
    body: str
    subject: str = ""
    requester: str = ""
    tags: list[str] = field(default_factory=list)
    delivery_id: str = ""
    event: str = ""


# --- signatures -----------------------------------------------------------------------------------


def hmac_digest(secret: str, message: bytes, algorithm: str) -> bytes:
    return hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).digest()


def matches_base64(given: str | None, secret: str, message: bytes, algorithm: str) -> bool:
    if not given or not secret:
        return False
    expected = base64.b64encode(hmac_digest(secret, message, algorithm)).decode()
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def matches_hex(given: str | None, secret: str, message: bytes, algorithm: str, *, prefix: str = "") -> bool:
    """`given` is ``<prefix><hex>``, e.g. ``sha1=3f…``; the hex part is compared case-insensitively."""
    if not given or not secret:
        return False
    given = given.strip()
    if prefix:
        if not given.lower().startswith(prefix):
            return False
        given = given[len(prefix):]
    expected = hmac_digest(secret, message, algorithm).hex()
    return hmac.compare_digest(expected.encode(), given.lower().encode("ascii", "replace"))


def epoch_seconds(value: str | None, *, header: str) -> float:
    """A signed timestamp header in unix seconds or milliseconds."""
    if not value:
        raise SignatureError(f"{header} is missing")
    try:
        number = float(value.strip())
    except ValueError as exc:
        raise SignatureError(f"{header} is not a timestamp") from exc
    return number / 1000 if number > 1e11 else number


# --- payload access -------------------------------------------------------------------------------


def require(payload: Any, path: str, *, at: str = "") -> Any:
    """The value at dotted `path`; a `PayloadError` naming the path (under `at`) when it is missing or empty."""
    full = f"{at}.{path}" if at else path
    value = payload
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise PayloadError(full)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise PayloadError(full)
    return value


def optional(payload: Any, path: str, default: Any = "") -> Any:
    try:
        return require(payload, path)
    except PayloadError:
        return default


def text_id(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PayloadError(path, "must be a string or an integer")
    return str(value).strip()


def text_of(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(path, "must be a string")
    return value


def tag_list(value: Any) -> list[str]:
    """Tags as vendors send them: a list of strings or of {"name"|"tag": ...}, or one separated string."""
    if isinstance(value, str):
        items: list[Any] = re.split(r"[,\s]+", value)
    elif isinstance(value, list):
        items = value
    elif isinstance(value, Mapping):
        items = value.get("tags") or value.get("data") or []  # Intercom wraps its tag list
    else:
        return []
    tags = []
    for item in items:
        if isinstance(item, Mapping):
            item = item.get("name") or item.get("tag") or ""
        if isinstance(item, str) and item.strip() and item.strip() not in tags:
            tags.append(item.strip()[:100])
    return tags[:50]


def requester_email(value: Any) -> str:
    """An e-mail address or nothing: a malformed requester must not turn the ticket away."""
    if not isinstance(value, str):
        return ""
    value = value.strip()
    # The dot is looked for in plain code: as a third regex part, "[^@\\s<>]+\\.[^@\\s<>]+" made the
    # match quadratic on a long run of dots from the sender.
    if re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", value) and "." in value.split("@", 1)[1][1:-1]:
        return value[:320]
    return ""


# --- HTML to text ---------------------------------------------------------------------------------

BLOCK_TAGS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr", "table", "ul", "ol"})
DROPPED_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript", "iframe", "object"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._dropped = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED_TAGS:
            self._dropped += 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in DROPPED_TAGS:
            self._dropped = max(0, self._dropped - 1)
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._dropped:
            self.parts.append(data)


def html_to_text(value: str) -> str:
    """Plain text from an HTML body: markup, scripts and styles dropped, entities decoded, blocks kept as lines."""
    if "<" not in value and "&" not in value:
        return value.strip()
    parser = _TextExtractor()
    parser.feed(value)
    parser.close()
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def comparable(text: str) -> str:
    """A reply as a remote helpdesk may echo it back (HTML or not), for 'was it already posted?' checks."""
    return re.sub(r"\s+", " ", html_to_text(text)).strip()
