"""Registered MCP servers: refreshing their tools into rows, and calling a tool by its row."""

from __future__ import annotations

import pytest

from integrations.mcp.client import ToolCallFailed
from integrations.mcp.registry import mcp_server_tools_refresh, mcp_tool_call
from integrations.models import McpServer, McpTool


def test_refresh_stores_every_tool_with_its_schema_and_read_only_mark(shop_row):
    tools = {t.name: t for t in McpTool.objects.filter(server=shop_row)}

    assert set(tools) == {"order_status", "create_refund", "orders_cancel"}
    assert tools["order_status"].read_only and not tools["create_refund"].read_only
    assert tools["create_refund"].input_schema["required"] == ["order_id", "idempotency_key"]
    shop_row.refresh_from_db()
    assert shop_row.tools_refreshed_at is not None and shop_row.refresh_error == ""


def test_a_tool_the_server_no_longer_lists_is_kept_unlisted_and_an_admins_mark_survives(shop_row):
    McpTool.objects.create(server=shop_row, name="subscription_get", input_schema={"type": "object"})
    McpTool.objects.filter(server=shop_row, name="orders_cancel").update(read_only=True)

    mcp_server_tools_refresh(server_id=shop_row.pk)

    gone = McpTool.objects.get(server=shop_row, name="subscription_get")
    assert gone.listed is False
    assert McpTool.objects.get(server=shop_row, name="orders_cancel").read_only is True
    with pytest.raises(ToolCallFailed, match="no longer listed"):
        mcp_tool_call(tool=gone, arguments={})


def test_a_refresh_that_fails_is_recorded_on_the_server(db, shop):
    row = McpServer.objects.create(name="wrong token", url=shop.url, bearer_token="wrong")

    with pytest.raises(ToolCallFailed):
        mcp_server_tools_refresh(server_id=row.pk)

    row.refresh_from_db()
    assert "HTTP 401" in row.refresh_error
    assert not McpTool.objects.filter(server=row).exists()


def test_a_switched_off_server_is_not_called(shop_row, shop):
    McpServer.objects.filter(pk=shop_row.pk).update(active=False)
    tool = McpTool.objects.select_related("server").get(server=shop_row, name="order_status")

    with pytest.raises(ToolCallFailed, match="switched off"):
        mcp_tool_call(tool=tool, arguments={"order_id": "A-10423"})
    assert shop.shop.calls["order_status"] == 0
