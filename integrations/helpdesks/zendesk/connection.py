"""Zendesk: the settings to make, the credentials check, and the requester looked up when only its id is sent.

Zendesk's ``ticket.created`` event names the requester by ``requester_id`` only; the Users API
(``GET /api/v2/users/{id}``, https://developer.zendesk.com/api-reference/ticketing/users/users/#show-user)
gives the e-mail. Answers are cached (Django cache, `TRIAGE_INTAKE_LOOKUP_CACHE_SECONDS`), so a busy
requester costs one request per period.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.cache import cache

from integrations.helpdesks.base import IncomingTicket, requester_email
from integrations.helpdesks.connection import FetchFailed, api_client
from integrations.helpdesks.http import WritebackError, quote
from integrations.models import HelpdeskSource

logger = logging.getLogger(__name__)

# https://developer.zendesk.com/api-reference/ticketing/users/users/#show-self
CHECK_PATH = "/api/v2/users/me.json"

SETUP = """\
1. Admin Center > Apps and integrations > Webhooks > Create webhook. Either "Zendesk events" with the event
   "Ticket created", or "Trigger or automation".
2. Endpoint URL: {url}   Request method: POST   Request format: JSON.
3. Authentication: none (the webhook is signed). Create, then "Reveal secret" and paste it here as the
   webhook secret.
4. For a trigger: Admin Center > Objects and rules > Triggers, condition "Ticket is Created", action
   "Notify by > Active webhook" with the JSON body from the README (Helpdesk intake).
5. API: the agent e-mail above, and an API token (Admin Center > Apps and integrations > Zendesk API >
   Settings > Token access). The token is needed for write-back and to look up requesters that the
   "Ticket created" event names only by id.
"""


def describe(answer: Any) -> str | None:
    # An unauthenticated /users/me answers 200 with an anonymous user whose id is null.
    user = answer.get("user") if isinstance(answer, Mapping) else None
    if not isinstance(user, Mapping) or not user.get("id"):
        return None
    return f"{user.get('name') or ''} <{user.get('email') or ''}> ({user.get('role') or 'unknown role'})"


def requester_id_of(payload: Any, incoming: IncomingTicket) -> str:
    given = getattr(incoming, "requester_id", "")  # set by parsers that read it into the ticket
    if given:
        return str(given)
    if not isinstance(payload, Mapping):
        return ""
    for holder in (payload.get("detail"), payload.get("ticket")):
        if isinstance(holder, Mapping) and isinstance(holder.get("requester_id"), (str, int)):
            value = str(holder["requester_id"]).strip()
            if value.isdigit():
                return value
    return ""


def complete(*, source: HelpdeskSource, payload: Any, incoming: IncomingTicket) -> IncomingTicket:
    """The requester's e-mail from the Users API when the delivery gives only `requester_id`."""
    if incoming.requester:
        return incoming
    user_id = requester_id_of(payload, incoming)
    if not user_id:
        return incoming
    key = f"zendesk:user-email:{source.pk}:{user_id}"
    email = cache.get(key)
    if email is None:
        if not source.api_token or not source.base_url:
            # A source without API credentials cannot write back either: its admin page says so. The
            # ticket is still made, without a requester, rather than held until someone sets a token.
            logger.warning(
                "zendesk %s: requester %s not looked up: the source has no API token or base URL",
                source.ticket_source,
                user_id,
            )
            return incoming
        try:
            answer = api_client(source=source).http.send("GET", f"/api/v2/users/{quote(user_id)}.json")
        except WritebackError as exc:
            if exc.status == 404:  # the user is gone: the ticket is still a ticket
                logger.warning("zendesk %s: requester %s not found", source.ticket_source, user_id)
                answer = {}
            else:
                raise FetchFailed(f"looking up requester {user_id}: {exc}", retryable=True) from exc
        user = answer.get("user") if isinstance(answer, Mapping) else None
        email = requester_email(user.get("email")) if isinstance(user, Mapping) else ""
        cache.set(key, email, timeout=int(getattr(settings, "TRIAGE_INTAKE_LOOKUP_CACHE_SECONDS", 3600)))
    return dataclasses.replace(incoming, requester=email) if email else incoming
