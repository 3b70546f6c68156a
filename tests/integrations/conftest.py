"""What the integrations' tests share: the generic API's bearer token."""

from __future__ import annotations

import hashlib

import pytest

from integrations.models import ApiToken

TOKEN = "tok_live_7d1f0a9e4b2c"


@pytest.fixture
def api_token(db):
    return ApiToken.objects.create(
        name="crm", digest=hashlib.sha256(TOKEN.encode()).hexdigest(), last4=TOKEN[-4:], source="api:crm"
    )
