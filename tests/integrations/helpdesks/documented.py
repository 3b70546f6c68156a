"""The write-back requests each vendor documents, as the loopback helpdesk (stubs.py) checks them: method and
path (the stub's routes), the authentication header, and the JSON body's required fields and allowed values.

Each check cites the vendor's page for that request. A request that breaks one is answered as the vendor
would (400/401/422) and recorded in `StubHelpdesk.violations`, so a write-back test fails on its shape.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

Problems = list[str]


def _str(body: Any, key: str, problems: Problems, *, where: str = "") -> None:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}{key}: a non-empty string is required")


def _one_of(body: Any, key: str, allowed: tuple, problems: Problems, *, where: str = "") -> None:
    value = body.get(key) if isinstance(body, dict) else None
    if value not in allowed:
        problems.append(f"{where}{key}: {value!r} is not one of {allowed}")


def _str_list(body: Any, key: str, problems: Problems) -> None:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{key}: a list of strings is required")


def _only(body: Any, allowed: set[str], problems: Problems) -> None:
    if isinstance(body, dict) and (extra := set(body) - allowed):
        problems.append(f"not in the documented body: {sorted(extra)}")


# --- Zendesk: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#update-ticket and
# .../tickets/ticket_comments/ (a comment is added by updating the ticket), tags:
# https://developer.zendesk.com/api-reference/ticketing/ticket-management/tags/#add-tags (PUT adds).
# Auth: https://developer.zendesk.com/api-reference/introduction/security-and-auth/ ("{email}/token:{token}").
def zendesk(kind: str, body: Any) -> Problems:
    problems: Problems = []
    if kind == "tags":
        _str_list(body, "tags", problems)
        return problems
    ticket = body.get("ticket") if isinstance(body, dict) else None
    if not isinstance(ticket, dict):
        return ["ticket: an object is required"]
    if "comment" in ticket:
        comment = ticket["comment"]
        _str(comment, "body", problems, where="ticket.comment.")
        if not isinstance(comment.get("public"), bool):
            problems.append("ticket.comment.public: a boolean is required")
    if "priority" in ticket:
        _one_of(ticket, "priority", ("urgent", "high", "normal", "low"), problems, where="ticket.")
    if "status" in ticket:
        _one_of(ticket, "status", ("new", "open", "pending", "hold", "solved", "closed"), problems, where="ticket.")
    if not {"comment", "priority", "status"} & set(ticket):
        problems.append("ticket: nothing to update")
    return problems


# --- Freshdesk: https://developers.freshdesk.com/api/#reply_ticket (body required),
# https://developers.freshdesk.com/api/#update_ticket (priority 1-4, status 2-5, tags: array of strings).
# Auth: https://developers.freshdesk.com/api/#authentication (API key as user, "X" as password).
def freshdesk(kind: str, body: Any) -> Problems:
    problems: Problems = []
    if kind == "reply":
        _str(body, "body", problems)
        return problems
    if "tags" in body:
        _str_list(body, "tags", problems)
    if "priority" in body:
        _one_of(body, "priority", (1, 2, 3, 4), problems)
    if "status" in body:
        _one_of(body, "status", (2, 3, 4, 5), problems)
    _only(body, {"tags", "priority", "status"}, problems)
    return problems


# --- Help Scout: https://developer.helpscout.com/mailbox-api/endpoints/conversations/threads/reply/ (customer
# and text required; customer by id or email), .../conversations/tags/update/ ("tags": array of names),
# .../conversations/update/ (JSON Patch: op "replace", path "/status", value active|closed|open|pending|spam).
def helpscout(kind: str, body: Any) -> Problems:
    problems: Problems = []
    if kind == "reply":
        _str(body, "text", problems)
        customer = body.get("customer")
        if not isinstance(customer, dict) or not (customer.get("id") or customer.get("email")):
            problems.append("customer: an object with id or email is required")
    elif kind == "tags":
        _str_list(body, "tags", problems)
    elif kind == "update":
        _one_of(body, "op", ("replace",), problems)
        _one_of(body, "path", ("/status",), problems)
        _one_of(body, "value", ("active", "closed", "open", "pending", "spam"), problems)
    return problems


# --- Intercom 2.11 (github.com/intercom/Intercom-OpenAPI descriptions/2.11/api.intercom.io.yaml):
# admin_reply_conversation_request (message_type comment|note, type "admin", admin_id required; body for a
# comment; checked 2026-11 against commit 8889625a of that repository),
# POST /conversations/{id}/tags (id and admin_id required), create_or_update_tag_request (name required),
# close_conversation_request (message_type "close", type "admin", admin_id required). PUT /conversations/{id}
# (update_conversation_request) takes read and custom_attributes only: no priority.
def intercom(kind: str, body: Any) -> Problems:
    problems: Problems = []
    if kind == "reply":
        _one_of(body, "message_type", ("comment", "note"), problems)
        _one_of(body, "type", ("admin",), problems)
        _str(body, "admin_id", problems)
        _str(body, "body", problems)
    elif kind == "tags":
        _str(body, "id", problems)
        _str(body, "admin_id", problems)
    elif kind == "tag-create":
        _str(body, "name", problems)
    elif kind == "update":
        if isinstance(body, dict) and body.get("message_type") == "close":
            _one_of(body, "type", ("admin",), problems)
            _str(body, "admin_id", problems)
        else:
            _only(body, {"read", "custom_attributes"}, problems)
    return problems


# --- Front Core API: https://dev.frontapp.com/reference/create-message-reply (body required; author_id
# optional), https://dev.frontapp.com/reference/add-conversation-tag (tag_ids required),
# https://dev.frontapp.com/reference/create-tag (name required),
# https://dev.frontapp.com/reference/update-conversation (status: archived|open|deleted|spam).
def front(kind: str, body: Any) -> Problems:
    problems: Problems = []
    if kind == "reply":
        _str(body, "body", problems)
    elif kind == "tags":
        _str_list(body, "tag_ids", problems)
    elif kind == "tag-create":
        _str(body, "name", problems)
    elif kind == "update":
        _one_of(body, "status", ("archived", "open", "deleted", "spam"), problems)
    return problems


# --- Chatwoot Application API: https://developers.chatwoot.com/api-reference/messages/create-new-message
# (content required; message_type outgoing|incoming; private boolean),
# .../conversations/add-labels ("labels": array), .../conversations/toggle-priority (urgent|high|medium|low|
# none), .../conversations/toggle-status (open|resolved|pending|snoozed). Auth: the api_access_token header.
def chatwoot(kind: str, body: Any) -> Problems:
    problems: Problems = []
    if kind == "reply":
        _str(body, "content", problems)
        _one_of(body, "message_type", ("outgoing", "incoming"), problems)
        if not isinstance(body.get("private", False), bool):
            problems.append("private: a boolean is required")
    elif kind == "tags":
        _str_list(body, "labels", problems)
    elif kind == "update":
        if "priority" in body:
            _one_of(body, "priority", ("urgent", "high", "medium", "low", "none"), problems)
        else:
            _one_of(body, "status", ("open", "resolved", "pending", "snoozed"), problems)
    return problems


# --- Zammad: https://docs.zammad.org/en/latest/api/ticket/articles.html (ticket_id and body required),
# https://docs.zammad.org/en/latest/api/ticket/tags.html (object, o_id, item),
# https://docs.zammad.org/en/latest/api/ticket/index.html (update: priority / state by name).
# Auth: https://docs.zammad.org/en/latest/api/intro.html ("Authorization: Token token=...").
def zammad(kind: str, body: Any) -> Problems:
    problems: Problems = []
    if kind == "reply":
        if not isinstance(body.get("ticket_id"), int):
            problems.append("ticket_id: an integer is required")
        _str(body, "body", problems)
        _one_of(body, "content_type", ("text/plain", "text/html"), problems)
    elif kind == "tags":
        _one_of(body, "object", ("Ticket",), problems)
        _str(body, "item", problems)
        if not body.get("o_id"):
            problems.append("o_id: required")
    elif kind == "update":
        if "priority" in body:
            _one_of(body, "priority", ("1 low", "2 normal", "3 high"), problems)
        if "state" in body:
            _one_of(body, "state", ("new", "open", "closed", "pending reminder", "pending close"), problems)
    return problems


BODIES: dict[str, Callable[[str, Any], Problems]] = {
    "zendesk": zendesk,
    "freshdesk": freshdesk,
    "helpscout": helpscout,
    "intercom": intercom,
    "front": front,
    "chatwoot": chatwoot,
    "zammad": zammad,
}


def auth_problems(vendor: str, headers: dict[str, str], *, user: str | None, token: str | None) -> Problems:
    """The authentication each vendor documents; the exact credentials when the test names them."""
    h = {k.lower(): v for k, v in headers.items()}
    auth = h.get("authorization", "")
    if vendor == "zendesk":
        want = "Basic " + base64.b64encode(f"{user}/token:{token}".encode()).decode() if token else None
        ok = auth == want if want else auth.startswith("Basic ")
    elif vendor == "freshdesk":
        want = "Basic " + base64.b64encode(f"{token}:X".encode()).decode() if token else None
        ok = auth == want if want else auth.startswith("Basic ")
    elif vendor in ("intercom", "front"):
        ok = auth == f"Bearer {token}" if token else auth.startswith("Bearer ") and len(auth) > 7
        if vendor == "intercom" and not h.get("intercom-version"):
            return ["Intercom-Version header is missing"]
    elif vendor == "chatwoot":
        ok = h.get("api_access_token") == token if token else bool(h.get("api_access_token"))
    elif vendor == "zammad":
        ok = auth == f"Token token={token}" if token else auth.startswith("Token token=")
    else:  # helpscout: checked against the tokens the stub issued
        return []
    return [] if ok else [f"authentication header not as documented: {auth or '(none)'}"]
