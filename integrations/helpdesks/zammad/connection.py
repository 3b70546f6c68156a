"""Zammad: the settings to make and the credentials check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# https://docs.zammad.org/en/latest/api/user.html (GET /api/v1/users/me: the authenticated user)
CHECK_PATH = "/api/v1/users/me"

SETUP = """\
1. Settings > Manage > Webhook > New webhook. Endpoint: {url}   HMAC SHA1 signature token: the webhook
   secret set here.   SSL verification: on.
2. Settings > Manage > Trigger > New trigger: condition "Action is created" (and what you need),
   execute "Webhook" with the webhook above (default payload).
3. API: base URL of your Zammad and an access token (Profile > Token Access) with "ticket.agent".
"""


def describe(answer: Any) -> str | None:
    if not isinstance(answer, Mapping) or not answer.get("id"):
        return None
    name = f"{answer.get('firstname') or ''} {answer.get('lastname') or ''}".strip()
    return f"{name} <{answer.get('email') or ''}>"
