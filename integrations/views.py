"""HTTP edges: helpdesk webhooks and the generic ticket API. They read, check size, and hand over."""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.module_loading import import_string
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from pydantic import ValidationError

from integrations.helpdesks.base import MAX_INTEGER_DIGITS, field_error, json_load, out_of_range_path
from integrations.helpdesks.deliveries import webhook_deliver
from integrations.models import ApiToken
from integrations.openapi import openapi_document
from integrations.tokens import api_token_authenticate
from integrations.vendors import VENDORS

logger = logging.getLogger(__name__)


def _limit() -> int:
    return int(getattr(settings, "TRIAGE_WEBHOOK_MAX_BYTES", 1024 * 1024))


def _read_body(request: HttpRequest) -> bytes | None:
    """The raw body, or None when it is over the limit (checked before and while reading)."""
    limit = _limit()
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def _too_large() -> JsonResponse:
    return JsonResponse({"error": f"body is over {_limit()} bytes"}, status=413)


@csrf_exempt
@require_POST
def helpdesk_webhook(request: HttpRequest, vendor: str, source_id: int) -> JsonResponse:
    if vendor not in VENDORS:
        return JsonResponse({"error": f"unknown vendor {vendor!r}"}, status=404)
    body = _read_body(request)
    if body is None:
        return _too_large()
    # `token`: the URL token of a source that opted into unsigned deliveries (Chatwoot before signed webhooks).
    outcome = webhook_deliver(
        vendor=vendor,
        source_id=source_id,
        headers=request.headers,
        body=body,
        url_token=request.GET.get("token", ""),
    )
    return JsonResponse(outcome.body, status=outcome.status)


# --- generic API ------------------------------------------------------------------------------------


def _authenticated(request: HttpRequest) -> ApiToken | None:
    return api_token_authenticate(authorization=request.headers.get("Authorization") or "")


def _unauthorized() -> JsonResponse:
    response = JsonResponse({"error": "a valid bearer token is required"}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="tickets"'
    return response


def _ticket_view(ticket: Any) -> dict[str, Any]:
    # The domain's answer contract (`TRIAGE_TICKET_OUT`): the OpenAPI document is built from the same model.
    return dict(import_string(settings.TRIAGE_TICKET_OUT)(ticket))


@csrf_exempt
@require_POST
def api_tickets_create(request: HttpRequest) -> JsonResponse:
    token = _authenticated(request)
    if token is None:
        return _unauthorized()
    body = _read_body(request)
    if body is None:
        return _too_large()
    try:
        data = json_load(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return JsonResponse({"error": f"malformed JSON: {exc}"[:300], "field": "(root)"}, status=400)
    if not isinstance(data, dict):
        return JsonResponse({"error": "the body must be a JSON object", "field": "(root)"}, status=400)
    if (field := out_of_range_path(data)) is not None:
        return JsonResponse(
            {"error": f"{field}: an integer over {MAX_INTEGER_DIGITS} digits is out of range", "field": field},
            status=400,
        )
    contract = import_string(settings.TRIAGE_TICKET_CONTRACT)
    # The API client can fix its request, so over-long or unstorable identifiers and over-long free text
    # are refused naming the field (a webhook cannot, and is fitted instead: see intake.webhook_receive).
    try:
        # The token decides the source, whatever the request says: a token sees and creates only its own tickets.
        ticket_in = contract.model_validate({**data, "source": token.source})
    except ValidationError as exc:
        # Named exactly as the webhook intake names a refused `TicketIn` field (base.field_error).
        error = field_error(exc)
        return JsonResponse({"error": f"{error.field}: {error.reason}", "field": error.field}, status=400)
    ingest = import_string(settings.TRIAGE_INGEST_SERVICE)
    try:
        result = ingest(ticket_in=ticket_in)
    except IntegrityError:  # pragma: no cover - ingest answers races itself
        return JsonResponse({"error": "conflict, retry"}, status=409)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return JsonResponse(_ticket_view(result.ticket), status=201 if result.created else 200)


@require_GET
def api_ticket_detail(request: HttpRequest, ticket_id: int) -> JsonResponse:
    token = _authenticated(request)
    if token is None:
        return _unauthorized()
    # Another source's ticket is "no such ticket" (404, not 403): a token cannot learn which ids exist.
    ticket = apps.get_model("triage", "Ticket").objects.filter(pk=ticket_id, source=token.source).first()
    if ticket is None:
        return JsonResponse({"error": "no such ticket"}, status=404)
    return JsonResponse(_ticket_view(ticket))


@require_GET
def api_openapi(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_document())


# The machines' addresses (the JSON API, helpdesks' webhooks): what they get back is JSON, errors included.
_MACHINE_PATHS = ("/api/", "/webhooks/")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler404`: an address under the API or the webhooks that matches no route (`/api/tickets/abc`) answers
    as the API's own 404 does, in JSON; every other address gets the site's not-found page."""
    if request.path.startswith(_MACHINE_PATHS):
        return JsonResponse({"error": "no such resource"}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`: JSON for the machines' addresses (nothing of the error in it), the error page otherwise."""
    if request.path.startswith(_MACHINE_PATHS):
        return JsonResponse({"error": "internal error"}, status=500)
    return defaults.server_error(request)
