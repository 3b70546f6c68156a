"""API tokens: issued once, stored as sha256, each bound to a ticket source of its own."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from integrations.models import ApiToken, StaffToken


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


def staff_token_issue(*, user: Any, name: str) -> tuple[StaffToken, str]:
    """A new token acting as `user` (for an assistant on the product's MCP server), and its raw value, which
    is returned here once and stored nowhere."""
    raw = "tst_" + secrets.token_urlsafe(32)
    token = StaffToken.objects.create(user=user, name=name, digest=token_digest(raw), last4=raw[-4:])
    return token, raw


def staff_token_authenticate(*, raw: str) -> StaffToken | None:
    """The active token `raw` names, when its person is still active staff; its last use is recorded."""
    raw = raw.strip()
    if not raw:
        return None
    token = (
        StaffToken.objects.select_related("user")
        .filter(digest=token_digest(raw), active=True, user__is_active=True, user__is_staff=True)
        .first()
    )
    if token is not None:
        StaffToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token
