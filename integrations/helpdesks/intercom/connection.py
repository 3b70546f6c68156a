"""Intercom: the settings to make and the credentials check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_BASE_URL = "https://api.intercom.io"
# https://developers.intercom.com/docs/references/2.11/rest-api/api.intercom.io/admins/identifyadmin
CHECK_PATH = "/me"

SETUP = """\
1. Developer Hub > your app > Webhooks: Endpoint URL {url}; topic "conversation.user.created".
2. The webhook secret here is the app's client secret (Basic information > Client secret): Intercom signs
   each notification with it (X-Hub-Signature).
3. API: the app's access token (Authentication), and in "API user" the id of the admin replies are sent
   as (GET /admins). Base URL may stay empty (https://api.intercom.io; EU/AU workspaces: their own host).
"""


def describe(answer: Any) -> str | None:
    if not isinstance(answer, Mapping) or answer.get("type") != "admin":
        return None
    return f"{answer.get('name') or ''} <{answer.get('email') or ''}> (admin {answer.get('id')})"
