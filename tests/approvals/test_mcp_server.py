"""The product's own MCP server, called with the real SDK client over streamable HTTP on loopback.

The server answers from uvicorn in a thread. Its database work runs in other threads than the test's, so
those threads are handed the test's connection (as Django's live server does), which keeps the test's
transaction, and the demo company loaded once per session, as they are.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from django.db import connections
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from approvals import mcp_server
from approvals.models import ApprovalRequest, Decision
from integrations.tokens import staff_token_authenticate, staff_token_issue
from tests.integrations.mcp.shop_server import free_port


@pytest.fixture
def our_server(db, monkeypatch) -> Iterator[str]:
    shared = connections["default"]
    shared.inc_thread_sharing()

    def on_shared_connection(**kwargs: Any) -> Any:
        connections["default"] = shared
        return staff_token_authenticate(**kwargs)

    monkeypatch.setattr(mcp_server, "staff_token_authenticate", on_shared_connection)
    monkeypatch.setattr(mcp_server, "close_old_connections", lambda: None)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(mcp_server.http_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(timeout=10)
    shared.dec_thread_sharing()


def call(url: str, token: str, tool: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
    """(is_error, answer) of one tool call made with the SDK's client; the answer parsed when it is JSON."""

    async def main() -> tuple[bool, Any]:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            result = await client.call_tool(tool, arguments)
        text = "\n".join(getattr(c, "text", "") for c in result.content)
        try:
            return bool(result.is_error), json.loads(text)
        except ValueError:
            return bool(result.is_error), text

    return anyio.run(main)


def test_the_server_refuses_a_money_approval_to_an_agent_without_the_permission(our_server, paused, agent):
    approval = paused(money=True)
    _, token = staff_token_issue(user=agent, name="agent's assistant")

    is_error, answer = call(our_server, token, "decide_approval", {"approval_id": approval.pk, "verdict": "approve"})

    assert is_error
    assert "money-approval permission" in answer and "Nothing changed" in answer
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.PENDING
    assert not Decision.objects.filter(approval=approval).exists()


def test_a_permitted_person_decides_through_the_server_audited_like_the_inbox(our_server, paused, money_agent):
    approval = paused(money=True)
    _, token = staff_token_issue(user=money_agent, name="senior's assistant")

    is_error, answer = call(our_server, token, "decide_approval", {"approval_id": approval.pk, "verdict": "approve"})

    assert not is_error, answer
    assert answer["decided_by"] == money_agent.username
    decision = Decision.objects.get(approval=approval)
    assert decision.actor == money_agent and decision.verdict == "approve"
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.APPROVED


def test_a_request_without_a_valid_token_is_refused_before_any_tool(our_server):
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises its transport's error group for a 401
        call(our_server, "not-a-token", "list_pending_approvals", {})


def test_lists_pending_approvals_and_reads_a_ticket_with_its_trace(our_server, paused, agent):
    approval = paused(money=True)
    _, token = staff_token_issue(user=agent, name="agent's assistant")

    _, pending = call(our_server, token, "list_pending_approvals", {})
    _, ticket = call(our_server, token, "get_ticket", {"ticket_id": approval.ticket_id})

    (item,) = [a for a in pending["approvals"] if a["approval_id"] == approval.pk]
    assert item["moves_money"] is True and item["you_may_approve"] is False
    assert ticket["ticket"]["id"] == approval.ticket_id
    assert [s["step"] for s in ticket["runs"][0]["steps"]][:2] == ["retrieve", "classify"]


def test_searches_the_knowledge_base_and_triages_a_text_without_storing_it(our_server, agent):
    from triage.models import PipelineRun, Ticket

    _, token = staff_token_issue(user=agent, name="agent's assistant")
    tickets, runs = Ticket.objects.count(), PipelineRun.objects.count()

    _, found = call(our_server, token, "search_knowledge_base", {"query": "how do I reset my password"})
    _, preview = call(our_server, token, "triage_text", {"body": "Please refund my order, the beans were stale."})

    assert found["passages"] and "password" in found["passages"][0]["text"].lower()
    assert preview["route"] == "human" and preview["stored"] is False
    assert any("person must approve" in why for why in preview["why"])
    assert (Ticket.objects.count(), PipelineRun.objects.count()) == (tickets, runs)


def test_a_viewer_without_the_decision_permission_cannot_decide(our_server, paused, make_user):
    approval = paused()
    viewer = make_user("viewer1", roles=("viewer",))
    _, token = staff_token_issue(user=viewer, name="viewer's assistant")

    is_error, answer = call(our_server, token, "decide_approval", {"approval_id": approval.pk, "verdict": "approve"})

    assert is_error and "approvals.add_decision" in answer
    assert not Decision.objects.filter(approval=approval).exists()
