"""Freshdesk: the settings to make and the credentials check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# https://developers.freshdesk.com/api/#me (View Me: the agent whose API key is used)
CHECK_PATH = "/api/v2/agents/me"

SETUP = """\
1. Admin > Workflows > Automations > Ticket creation > New rule; condition as you need; action
   "Trigger webhook".
2. Request type: POST   URL: {url}   Encoding: JSON   Content: Advanced, with the JSON body from the README
   (Helpdesk intake).
3. Custom headers: X-Webhook-Token: <the webhook secret set here> (Freshdesk signs nothing: this shared
   token is the only check, keep it long and random).
4. API: base URL https://<yours>.freshdesk.com and your API key (Profile settings > View API key).
"""


def describe(answer: Any) -> str | None:
    contact = answer.get("contact") if isinstance(answer, Mapping) else None
    if not isinstance(contact, Mapping):
        return None
    return f"{contact.get('name') or ''} <{contact.get('email') or ''}>"
