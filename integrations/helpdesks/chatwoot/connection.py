"""Chatwoot: the settings to make, the credentials check, and unsigned deliveries by URL token (opt-in)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_BASE_URL = "https://app.chatwoot.com"
# https://developers.chatwoot.com/api-reference/profile/fetch-user-profile
CHECK_PATH = "/api/v1/profile"
# Releases before signed webhooks send no X-Chatwoot-Signature: an opted-in source accepts such a
# delivery by the secret `token` of its URL instead (integrations.helpdesks.intake.webhook_authenticate).
URL_TOKEN_SIGNATURE = "X-Chatwoot-Signature"

SETUP = """\
1. Settings > Integrations > Webhooks > Add new webhook. Webhook URL: {url}
2. Events: "Conversation created" and "Message created".
3. Chatwoot with signed webhooks: paste the webhook's secret here as the webhook secret.
   Older Chatwoot (no secret shown): switch on "accept unsigned deliveries with the URL token" here; the
   URL above then carries the token. This is weaker than a signature (see docs/SECURITY.md).
4. API: base URL of your Chatwoot, "API user" = the account id (in the app's URLs), API token = an
   agent's access token (Profile settings > Access token).
"""


def describe(answer: Any) -> str | None:
    if not isinstance(answer, Mapping) or not answer.get("id"):
        return None
    return f"{answer.get('name') or ''} <{answer.get('email') or ''}>"
