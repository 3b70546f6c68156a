"""What a helpdesk connection needs besides its webhook: reading the vendor's API during intake, checking the
credentials an admin typed, and the vendor-side settings to show them.

Each vendor has a ``<vendor>/connection.py`` with:

- ``SETUP``: what to set on the vendor's side, in the vendor's own words (shown in admin);
- ``CHECK_PATH``: a read-only request that needs the source's API credentials (who am I);
- optionally ``prepare(*, source, payload, headers) -> payload``: read what the delivery only points at
  (Front's event preview) before it is parsed;
- optionally ``complete(*, source, payload, incoming) -> incoming``: fill in what the delivery names only by
  id (Zendesk's requester) before the ticket is created;
- optionally ``URL_TOKEN_SIGNATURE``: the signature header whose absence lets an opted-in source accept a
  delivery by its URL token instead (Chatwoot before signed webhooks).

A `FetchFailed` from `prepare`/`complete` keeps the delivery as a `FailedDelivery` (retryable when the API
may answer later); it never drops it and never answers 500.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
from typing import Any

from django.conf import settings

from integrations.helpdesks import vendor_module
from integrations.helpdesks.http import WritebackError, WritebackSettings
from integrations.models import HelpdeskSource


class FetchFailed(Exception):
    """The vendor's API could not give what the delivery needs; `retryable` when a later replay may succeed."""

    def __init__(self, reason: str, *, retryable: bool):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    request: str  # what was sent, e.g. "GET https://acme.zendesk.com/api/v2/users/me.json"
    message: str  # who we are on success; what failed otherwise
    status: int | None = None


def connection_module(vendor: str) -> ModuleType:
    vendor_module(vendor)  # unknown vendors fail here, with the vendor's name
    return import_module(f"integrations.helpdesks.{vendor}.connection")


def base_url_of(source: HelpdeskSource) -> str:
    """The source's API root, or the vendor's public one where the vendor has a single API host."""
    return source.base_url or getattr(connection_module(source.vendor), "DEFAULT_BASE_URL", "")


def api_client(*, source: HelpdeskSource, breaker: bool = True) -> Any:
    """The vendor's REST client for `source`, with intake's tighter limits: a webhook is waiting for its answer,
    so one attempt of at most `TRIAGE_INTAKE_FETCH_TIMEOUT` seconds (the delivery is kept when it fails)."""
    client = vendor_module(source.vendor).Client(
        base_url=base_url_of(source),
        api_user=source.api_user,
        api_token=source.api_token,
        source=source.ticket_source if breaker else "",
    )
    timeout = float(getattr(settings, "TRIAGE_INTAKE_FETCH_TIMEOUT", 5.0))
    client.http.config = dataclasses.replace(
        WritebackSettings.from_settings(), timeout=timeout, attempts=1, budget=timeout + 1
    )
    return client


def credentials_check(*, source: HelpdeskSource) -> CheckResult:
    """Call the vendor's read-only "who am I" endpoint with the source's credentials; say what failed."""
    module = connection_module(source.vendor)
    path: str = module.CHECK_PATH
    base = base_url_of(source)
    request = f"GET {base.rstrip('/')}{path}" if base else f"GET {path}"
    if not base:
        return CheckResult(False, request, "the source has no base URL (the vendor's API root)")
    if not source.api_token:
        return CheckResult(False, request, "the source has no API token")
    try:
        client = api_client(source=source, breaker=False)
        answer = client.http.send("GET", path)
    except WritebackError as exc:
        return CheckResult(False, request, str(exc), exc.status)
    describe = getattr(module, "describe", None)
    who = describe(answer) if describe is not None else ""
    if who is None:
        return CheckResult(False, request, "the API answered, but not as an authenticated user", 200)
    return CheckResult(True, request, f"authenticated{': ' + who if who else ''}", 200)
