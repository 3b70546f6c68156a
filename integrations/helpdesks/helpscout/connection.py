"""Help Scout: the settings to make and the credentials check (an OAuth2 token first, then who we are)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_BASE_URL = "https://api.helpscout.net"
# https://developer.helpscout.com/mailbox-api/endpoints/users/me/
CHECK_PATH = "/v2/users/me"

SETUP = """\
1. Manage > Apps > Webhooks (Build a custom app > Webhooks): Callback URL {url}; Secret key: the webhook
   secret set here; event "Conversation Created" (convo.created). Payload version: V2.
2. API: Your profile > My Apps > Create My App (redirection URL: any). "API user" = the App ID, API
   token = the App Secret: tokens are obtained with them (OAuth2 client credentials) and renewed before
   they expire. Base URL may stay empty (https://api.helpscout.net).
"""


def describe(answer: Any) -> str | None:
    if not isinstance(answer, Mapping) or not answer.get("id"):
        return None
    name = f"{answer.get('firstName') or ''} {answer.get('lastName') or ''}".strip()
    return f"{name} <{answer.get('email') or ''}>"
