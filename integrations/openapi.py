"""The OpenAPI 3.1 description of the generic ticket API, written by hand to say what the code does."""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "field": {"type": "string", "description": "The offending field, when one is to blame."}},
}

TICKET_IN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["external_id", "body"],
    "properties": {
        "external_id": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Your id; a second POST with the same id returns the existing ticket."},
        "subject": {"type": "string", "maxLength": 500},
        "body": {"type": "string", "minLength": 1, "maxLength": 100000, "description": "Plain text."},
        "requester": {"type": "string", "format": "email", "maxLength": 320},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 50},
        "delivery_id": {"type": "string", "maxLength": 200},
    },
}

ACTION = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["send_reply", "set_category", "set_priority", "add_tags", "solve", "refund", "cancel_order", "credit"]},
        "status": {"type": "string", "enum": ["pending", "done", "failed"]},
        "error": {"type": ["string", "null"]},
        "payload": {"type": "object"},
    },
}

TICKET = {
    "type": "object",
    "required": ["id", "source", "external_id", "status", "created_at", "outcome"],
    "properties": {
        "id": {"type": "integer"},
        "source": {"type": "string"},
        "external_id": {"type": "string"},
        "subject": {"type": "string"},
        "status": {"type": "string", "enum": ["new", "triaging", "auto_handled", "awaiting_approval", "resolved", "rejected", "failed"]},
        "created_at": {"type": "string", "format": "date-time"},
        "outcome": {
            "type": ["object", "null"],
            "properties": {
                "run": {"type": "integer"},
                "status": {"type": "string", "enum": ["queued", "running", "waiting", "completed", "failed"]},
                "route": {"type": ["string", "null"], "enum": ["auto", "human", None]},
                "error": {"type": ["string", "null"]},
                "actions": {"type": "array", "items": {"$ref": "#/components/schemas/Action"}},
            },
        },
    },
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ticket_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ticket"}}}}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gated triage ticket API", "version": "1.0.0",
                 "description": "Create tickets for triage and read their outcome. Bearer tokens are issued in the admin (API tokens)."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/tickets": {
                "post": {
                    "operationId": "ticketCreate",
                    "summary": "Create a ticket; its triage runs in the background",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TicketIn"}}}},
                    "responses": {
                        "201": _ticket_response("Created; the run is queued."),
                        "200": _ticket_response("A ticket with this external_id exists; nothing new was created."),
                        "400": _error_response("Malformed JSON or an invalid field (named in `field`)."),
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
                        "404": _error_response("No such ticket."),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"TicketIn": TICKET_IN, "Ticket": TICKET, "Action": ACTION, "Error": ERROR},
        },
    }
