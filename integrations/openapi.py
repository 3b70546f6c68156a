"""The OpenAPI 3.1 description of the generic ticket API.

The request and answer schemas come from the domain's pydantic contracts (`TRIAGE_TICKET_CONTRACT`,
`TRIAGE_TICKET_OUT_CONTRACT`), so their fields, limits and enumerations cannot drift from the code;
what is written here is the paths, the error shape and the descriptions.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from integrations.helpdesks.base import MAX_INTEGER_DIGITS

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "field": {"type": "string", "description": "The offending field, when one is to blame."},
    },
}

# What the API says about each field besides the limits; the limits themselves are the contract's
# (`TRIAGE_TICKET_CONTRACT`), read from its JSON schema, so the document cannot drift from the code.
TICKET_IN_DESCRIPTIONS = {
    "external_id": "Your id, unique among this token's tickets; a second POST with the same id returns the existing "
    "ticket. Each token has tickets of its own: another token's external_id is another ticket. "
    "NUL characters and lone surrogates are refused (400 naming the field).",
    "subject": "Plain text. NUL characters are removed and lone surrogates become U+FFFD (neither can be stored); "
    "over the limit is a 400.",
    "body": "Plain text, not blank. NUL characters are removed and lone surrogates become U+FFFD; "
    "over the limit is a 400.",
    "requester": "The requester's e-mail address; empty, or left out, when there is none.",
    "tags": "Labels; NUL characters are removed and lone surrogates become U+FFFD.",
    "delivery_id": "Your id for this request, kept for tracing. NUL characters and lone surrogates are refused "
    "(400 naming the field).",
}


def _character_class(codes: list[int]) -> str:
    """A regular expression's character class (without the brackets) of these code points, as runs."""
    runs: list[tuple[int, int]] = []
    for code in sorted(codes):
        if runs and code == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], code)
        else:
            runs.append((code, code))
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in runs)


@functools.cache
def _nul_or_space() -> str:
    r"""What the contract's "not blank" strips (`str.strip`: Python's whitespace, which is not JSON Schema's `\s`)
    and the NUL the intake removes first: a body made only of these is refused. Worked out when the document is
    first asked for (about 30 ms), not when the module is imported by every process that loads the URLs."""
    return _character_class([0] + [c for c in range(0x10000) if chr(c).isspace()])


def ticket_in_schema() -> dict[str, Any]:
    contract = import_string(settings.TRIAGE_TICKET_CONTRACT)
    schema = contract.model_json_schema()
    properties = {}
    for name, prop in schema["properties"].items():
        if name == "source":  # set from the token, never by the client
            continue
        prop = {k: v for k, v in prop.items() if k != "title"}
        if name == "body":  # not blank once its NULs are removed: one character neither NUL nor Python's whitespace
            prop["pattern"] = f"[^{_nul_or_space()}]"
        if name == "tags":  # a tag is not empty once its NULs are removed
            prop["items"] = {**prop["items"], "pattern": "[^\\u0000]"}
        if name in ("external_id", "delivery_id"):  # identifiers with a NUL are refused (see the description)
            prop["pattern"] = "^[^\\u0000]*$"
        if name == "requester":  # an e-mail address, or none (empty, as when it is left out)
            without_default = {k: v for k, v in prop.items() if k != "default"}
            prop = {
                "anyOf": [{**without_default, "format": "email"}, {"type": "string", "maxLength": 0}],
                "default": prop.get("default", ""),
            }
        if name in TICKET_IN_DESCRIPTIONS:
            prop["description"] = TICKET_IN_DESCRIPTIONS[name]
        properties[name] = prop
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [f for f in schema["required"] if f != "source"],
        "properties": properties,
        "description": f"Integers in the body may have at most {MAX_INTEGER_DIGITS} digits "
        "(a longer one is a 400 naming its field).",
    }


def response_schemas() -> dict[str, dict[str, Any]]:
    """The answer's schemas (`Ticket` and the models it uses), from the domain's contract
    (`TRIAGE_TICKET_OUT_CONTRACT`): nested models become components of their own."""
    contract = import_string(settings.TRIAGE_TICKET_OUT_CONTRACT)
    schema = contract.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    components: dict[str, dict[str, Any]] = schema.pop("$defs", {})
    components["Ticket"] = schema
    return components


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ticket_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ticket"}}},
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Gated triage ticket API",
            "version": "1.0.0",
            "description": "Create tickets for triage and read their outcome. "
            "Bearer tokens are issued in the admin (API tokens); "
            "each token creates and reads only its own tickets.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/tickets": {
                "post": {
                    "operationId": "ticketCreate",
                    "summary": "Create a ticket; its triage runs in the background",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TicketIn"}}},
                    },
                    "responses": {
                        "201": _ticket_response("Created; the run is queued."),
                        "200": _ticket_response(
                            "A ticket of this token with this external_id exists; nothing new was created."
                        ),
                        "400": _error_response(
                            "Malformed JSON or an invalid field (named in `field`): missing, too long, "
                            f"an identifier with NUL or a lone surrogate, an integer over {MAX_INTEGER_DIGITS} digits."
                        ),
                        "401": _error_response("Missing or unknown token."),
                        "413": _error_response("Body over the size limit."),
                    },
                }
            },
            "/api/tickets/{id}": {
                "get": {
                    "operationId": "ticketGet",
                    "summary": "A ticket's status and the outcome of its latest run",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {
                        "200": _ticket_response("The ticket."),
                        "401": _error_response("Missing or unknown token."),
                        "404": _error_response(
                            "No such ticket among this token's tickets (another token's ticket is 404 too)."
                        ),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"TicketIn": ticket_in_schema(), **response_schemas(), "Error": ERROR},
        },
    }
