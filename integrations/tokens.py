"""API tokens: issued once, stored as sha256, each bound to a ticket source of its own."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.db import transaction

from integrations.models import ApiToken


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_issue(*, name: str, active: bool = True) -> tuple[ApiToken, str]:
    """A new token and its raw value, which is returned here once and stored nowhere.

    Its source is ``api:<id>``, read as a helpdesk connection's ``<vendor>:<id>`` is; the id only exists
    after the insert, so the row is written with a unique placeholder and renamed in the same transaction.
    """
    raw = secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            name=name,
            active=active,
            digest=token_digest(raw),
            last4=raw[-4:],
            source=f"api:new:{uuid.uuid4().hex[:16]}",
        )
        token.source = f"api:{token.pk}"
        token.save(update_fields=["source"])
    return token, raw


def api_token_authenticate(*, authorization: str) -> ApiToken | None:
    """The active token an ``Authorization: Bearer …`` header names, or None."""
    scheme, _, raw = authorization.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    # Looked up by its sha256, so no stored value is ever compared with the raw token.
    return ApiToken.objects.filter(digest=token_digest(raw.strip()), active=True).first()
