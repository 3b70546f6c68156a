"""Front: the settings to make, the credentials check, and event previews read through the Core API.

A rule webhook sends an event *preview* (event id and ``_links``, no message) unless "Send full event data"
is switched on, and Front does not retry rule webhooks: the event is read through the Core API
(``GET /events/{event_id}``, https://dev.frontapp.com/reference/get-event) with the source's API token
before the ticket is created. Only the event *id* is taken from the delivery, never its links: the request
goes to the source's own API root, so a delivery cannot send our token to another host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from integrations.helpdesks.connection import FetchFailed, api_client
from integrations.helpdesks.http import WritebackError, quote
from integrations.models import HelpdeskSource

DEFAULT_BASE_URL = "https://api2.frontapp.com"
# https://dev.frontapp.com/reference/get-api-token-details (GET /me)
CHECK_PATH = "/me"
INBOUND = ("inbound", "inbound_received")
_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")

SETUP = """\
1. Settings > Company > App store > Webhooks: enable. "Send full event data" on is best (no API read per
   ticket); off works too, but then every ticket is read through the API and needs the API token below.
2. A shared rule: When "Inbound message", Then "Send to a Webhook", Target: {url}
   (or an application webhook in Developers > your app > Webhooks, event "Inbound message").
3. The webhook secret here is the Webhooks app's API secret (rule webhooks, X-Front-Signature) or your
   app's secret (application webhooks).
4. API: an API token (Settings > Developers > API tokens) with access to the inboxes, and in "API user"
   the teammate id replies are sent as (tea_...). Base URL may stay empty (https://api2.frontapp.com).
"""


def describe(answer: Any) -> str | None:
    if not isinstance(answer, Mapping) or not (answer.get("name") or answer.get("id")):
        return None
    return str(answer.get("name") or answer.get("id"))


def preview_event_id(payload: Any) -> str | None:
    """The event id when `payload` is an inbound event's preview (no message body), else None."""
    if not isinstance(payload, Mapping):
        return None
    event = payload["payload"] if isinstance(payload.get("payload"), Mapping) else payload
    if event.get("type") not in INBOUND:
        return None
    target = event.get("target")
    data = target.get("data") if isinstance(target, Mapping) else None
    if isinstance(data, Mapping) and (data.get("body") or data.get("text")):
        return None  # full event data
    event_id = event.get("id")
    return event_id if isinstance(event_id, str) and _EVENT_ID.fullmatch(event_id) else None


def event_fetch(*, source: HelpdeskSource, event_id: str) -> dict[str, Any]:
    """The full event through the Core API. Raises `FetchFailed` saying why it could not be read."""
    if not source.api_token:
        raise FetchFailed(
            f"Front sent an event preview (event {event_id}) without the message, and this source has no API "
            "token to read it: set the API token, or switch on 'Send full event data' in Front's Webhooks app",
            retryable=False,
        )
    try:
        answer = api_client(source=source).http.send("GET", f"/events/{quote(event_id)}")
    except WritebackError as exc:
        raise FetchFailed(f"reading Front event {event_id}: {exc}", retryable=True) from exc
    if not isinstance(answer, dict):
        raise FetchFailed(f"reading Front event {event_id}: the answer is not an event", retryable=True)
    return answer


def prepare(*, source: HelpdeskSource, payload: Any, headers: Mapping[str, str]) -> Any:
    """A preview becomes the full event, in the shape it came in (bare, or wrapped as application webhooks)."""
    event_id = preview_event_id(payload)
    if event_id is None:
        return payload
    event = event_fetch(source=source, event_id=event_id)
    return {**payload, "payload": event} if isinstance(payload.get("payload"), Mapping) else event
