"""The product as an MCP server, for an assistant a staff member uses (Claude Desktop, an IDE, an agent).

Five tools: search the knowledge base, get a ticket and its trace, list pending approvals, triage a text
without storing it, and decide an approval. Every call is authenticated as one staff member by their own
token (`integrations.models.StaffToken`, issued in admin): over HTTP the `Authorization: Bearer` header of
that request, over stdio the token the command was started with. Each call checks that person's
permissions as the inbox does (the same permission names), and a decision goes through the inbox's own
service (`approval_decide`): the same checks (no money approval without `approvals.approve_money`, the reply
checks, first decision wins) and the same audit row, under their name.

Served by `manage.py mcp_server` (stdio, or `--http` for streamable HTTP).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import timezone
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field
from starlette.types import ASGIApp, Receive, Scope, Send

from approvals.models import ApprovalRequest
from approvals.selectors import InboxFilters, approval_inbox_ids, approval_rows, inbox_items
from approvals.services import AlreadyDecided, DecisionError, MoneyPermissionRequired, approval_decide
from integrations.tokens import staff_token_authenticate
from triage import selectors
from triage.embedding import embed_texts
from triage.models import Ticket
from triage.preview import triage_preview

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Gated ticket triage for a support team. Search the knowledge base, read a ticket and the trace of what "
    "the chain did, list the approvals waiting for a person, preview what the chain would do with a text, "
    "and approve, edit or reject an approval as the signed-in staff member. Money is only approved by "
    "someone with the money-approval permission."
)
READ = ToolAnnotations(read_only_hint=True)


def _bearer(headers: Any) -> str:
    scheme, _, raw = (headers.get("authorization") or "").partition(" ")
    return raw.strip() if scheme.lower() == "bearer" else ""


def build_server(*, stdio_token: str = "") -> MCPServer:
    """The server; `stdio_token` is the staff token of a stdio session (HTTP calls bring their own)."""
    server = MCPServer("gated-triage", instructions=INSTRUCTIONS)

    def staff(ctx: Context, *perms: str) -> Any:
        """The person this call acts for, holding `perms`; refused (a tool error) otherwise."""
        close_old_connections()  # a long-lived server: never reuse a connection the database dropped
        headers = ctx.headers
        raw = _bearer(headers) if headers is not None else stdio_token
        token = staff_token_authenticate(raw=raw)
        if token is None:
            raise ToolError("Not authenticated: a valid staff token is needed (admin: Staff tokens).")
        user = token.user
        missing = [p for p in perms if not user.has_perm(p)]
        if missing:
            raise ToolError(f"Refused: {user.get_username()} lacks the permission(s) {', '.join(missing)}.")
        return user

    @server.tool(annotations=READ)
    def search_knowledge_base(
        query: Annotated[str, Field(min_length=1, max_length=2000, description="What to look for")],
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=10)] = 5,
    ) -> dict[str, Any]:
        """The knowledge-base passages nearest the query (what the chain retrieves), best first."""
        staff(ctx, "triage.view_ticket")
        retrieval = selectors.chunk_search(embedding=embed_texts([query])[0], limit=limit)
        return {
            "passages": [
                {
                    "chunk_id": p.chunk_id,
                    "article": p.article_title,
                    "heading": p.heading,
                    "score": round(p.score, 4),
                    "text": p.text,
                }
                for p in retrieval.passages
            ]
        }

    @server.tool(annotations=READ)
    def get_ticket(ticket_id: Annotated[int, Field(ge=1)], ctx: Context) -> dict[str, Any]:
        """A ticket and its trace: every step attempt with its gates, the actions, the approval and decisions."""
        staff(ctx, "triage.view_ticket")
        try:
            trace = selectors.ticket_trace(ticket_id=ticket_id)
        except Ticket.DoesNotExist:
            raise ToolError(f"No ticket {ticket_id}.") from None
        return _trace_out(trace)

    @server.tool(annotations=READ)
    def list_pending_approvals(
        ctx: Context,
        money: Annotated[bool | None, Field(description="Only money (true) or no money (false); omit: both")] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        """The approvals waiting for a person, most urgent first, with why each one waits."""
        user = staff(ctx, "approvals.view_approvalrequest")
        money_filter = "" if money is None else ("yes" if money else "no")
        ids = list(approval_inbox_ids(filters=InboxFilters(money=money_filter), now=timezone.now())[:limit])
        items = inbox_items(approvals=approval_rows(ids=ids))
        can_money = user.has_perm("approvals.approve_money")
        return {
            "approvals": [
                {
                    "approval_id": item.approval.pk,
                    "ticket_id": item.ticket.pk,
                    "subject": item.ticket.subject,
                    "body": item.ticket.body[:2000],
                    "requester": item.ticket.requester,
                    "proposed_category": item.approval.proposed_category,
                    "proposed_actions": item.approval.proposed_actions,
                    "moves_money": item.approval.money,
                    "you_may_approve": can_money or not item.approval.money,
                    "why_it_waits": [v.get("reason") for v in item.failed],
                    "draft": item.approval.draft,
                    "created_at": item.approval.created_at.isoformat(),
                }
                for item in items
            ]
        }

    @server.tool(annotations=READ)
    def triage_text(
        body: Annotated[str, Field(min_length=1, max_length=100_000)],
        ctx: Context,
        subject: Annotated[str, Field(max_length=500)] = "",
        requester: Annotated[str, Field(max_length=320)] = "",
    ) -> dict[str, Any]:
        """What the chain would do with this text and why (category, gates, route, draft), storing nothing."""
        staff(ctx, "triage.view_ticket")
        preview = triage_preview(subject=subject, body=body, requester=requester)
        return {
            "route": preview.route,
            "why": preview.reasons,
            "category": preview.category,
            "confidence": preview.confidence,
            "proposed_actions": preview.proposed_actions,
            "draft": preview.draft,
            "lookup": preview.lookup,
            "gates": [v.model_dump(mode="json", exclude={"details"}) for v in preview.verdicts],
            "steps": [{"step": s.step, "status": s.status, "note": s.note} for s in preview.steps],
            "stored": False,
        }

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=False))
    def decide_approval(
        approval_id: Annotated[int, Field(ge=1)],
        verdict: Literal["approve", "edit", "reject"],
        ctx: Context,
        reason: Annotated[str, Field(max_length=2000, description="Required to reject")] = "",
        reply: Annotated[str | None, Field(max_length=20_000, description="edit: the reply to send instead")] = None,
        category: Annotated[str | None, Field(max_length=100, description="edit: the category instead")] = None,
    ) -> dict[str, Any]:
        """Approve, edit then approve, or reject a waiting approval, as the inbox does; the run then carries it
        out. Refused without the money-approval permission when it moves money."""
        user = staff(ctx, "approvals.view_approvalrequest", "approvals.add_decision")
        if not ApprovalRequest.objects.filter(pk=approval_id).exists():
            raise ToolError(f"No approval {approval_id}.")
        try:
            decision = approval_decide(
                approval_id=approval_id,
                actor=user,
                verdict=verdict,
                reason=reason,
                category=category if verdict == "edit" else None,
                reply=reply if verdict == "edit" else None,
            )
        except MoneyPermissionRequired as exc:
            raise ToolError(f"Refused (no money-approval permission): {exc.reason} Nothing changed.") from None
        except AlreadyDecided as exc:
            raise ToolError(f"Refused: {exc.reason}") from None
        except DecisionError as exc:
            raise ToolError(f"Refused: {exc.reason}. Nothing changed.") from None
        logger.info("approval %s decided (%s) by %s through MCP", approval_id, verdict, user.get_username())
        return {
            "decision_id": decision.pk,
            "approval_id": approval_id,
            "ticket_id": decision.approval.ticket_id,
            "verdict": decision.verdict,
            "decided_by": user.get_username(),
            "status": "the run carries the decision out now",
        }

    return server


def _trace_out(trace: selectors.TicketTrace) -> dict[str, Any]:
    ticket = trace.ticket
    return {
        "ticket": {
            "id": ticket.pk,
            "source": ticket.source,
            "external_id": ticket.external_id,
            "subject": ticket.subject,
            "body": ticket.body,
            "requester": ticket.requester,
            "status": ticket.status,
            "created_at": ticket.created_at.isoformat(),
        },
        "runs": [
            {
                "run_id": r.run.pk,
                "status": r.run.status,
                "route": r.run.route,
                "error": r.run.error,
                "latency_ms": round(r.latency_ms, 1),
                "cost": str(r.cost),
                "steps": [
                    {
                        "step": s.step_run.step,
                        "attempt": s.step_run.attempt,
                        "status": s.step_run.status,
                        "latency_ms": round(s.step_run.latency_ms, 1),
                        "model": s.step_run.model,
                        "why": s.step_run.route_reason,
                        "error": s.step_run.error,
                        "gates": [
                            {"gate": v.get("gate"), "passed": v.get("passed"), "reason": v.get("reason")}
                            for v in s.verdicts
                        ],
                        "output": s.output,
                    }
                    for s in r.steps
                ],
                "actions": [
                    {
                        "kind": a.kind,
                        "status": a.status,
                        "idempotency_key": a.idempotency_key,
                        "attempts": a.attempts,
                        "result": a.result,
                        "error": a.error,
                    }
                    for a in r.actions
                ],
                "approval": (
                    {"id": r.approval.pk, "status": r.approval.status, "reason": r.approval.reason}
                    if r.approval is not None
                    else None
                ),
                "decisions": [
                    {
                        "verdict": d.verdict,
                        "by": d.actor.get_username(),
                        "at": d.created_at.isoformat(),
                        "reason": d.reason,
                        "before": d.before,
                        "after": d.after,
                    }
                    for d in r.decisions
                ],
            }
            for r in trace.runs
        ],
    }


class StaffBearerRequired:
    """ASGI middleware: a request without a valid staff token is answered 401 before any MCP is spoken.

    Not the SDK's OAuth resource-server support: that advertises an OAuth authorization server, and the
    product issues plain per-person tokens in admin instead. Each tool authenticates its call again
    (`staff`), so a token revoked mid-session stops at the next call.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._authenticate: Callable[..., Any] = sync_to_async(staff_token_authenticate)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            raw = _bearer(headers)
            if not raw or await self._authenticate(raw=raw) is None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"error": "a valid staff token is needed"}'})
                return
        await self.app(scope, receive, send)


def http_app(*, host: str = "127.0.0.1", path: str = "/mcp") -> ASGIApp:
    """The streamable HTTP endpoint (stateless: any of several processes can answer any request)."""
    app = build_server().streamable_http_app(streamable_http_path=path, stateless_http=True, host=host)
    return StaffBearerRequired(app)
