"""The MCP client against the loopback shop server (the official SDK on both sides)."""

from __future__ import annotations

import pytest

from integrations.mcp.client import Connection, ToolCallFailed, call_tool, list_tools
from tests.integrations.mcp.fixtures import SHOP_TOKEN
from tests.integrations.mcp.shop_server import free_port


def test_lists_the_servers_tools_with_descriptions_schemas_and_read_only_hints(shop):
    tools = {t.name: t for t in list_tools(Connection(transport="http", url=shop.url, bearer_token=SHOP_TOKEN))}

    assert set(tools) == {"order_status", "create_refund", "orders_cancel"}
    assert tools["order_status"].read_only is True
    assert tools["create_refund"].read_only is False
    assert tools["order_status"].description.startswith("The status of one order")
    schema = tools["create_refund"].input_schema
    assert schema["required"] == ["order_id", "idempotency_key"]
    assert schema["properties"]["order_id"]["pattern"] == r"^A-\d{4,8}$"


def test_calls_a_tool_and_parses_its_json_answer(shop):
    outcome = call_tool(
        Connection(transport="http", url=shop.url, bearer_token=SHOP_TOKEN),
        name="order_status",
        arguments={"order_id": "A-10423"},
    )

    assert outcome.structured == {
        "order_id": "A-10423",
        "status": "in transit",
        "carrier": "UPS",
        "tracking_number": "1Z999AA10123456784",
        "estimated_delivery": "2026-12-02",
    }
    assert shop.shop.calls["order_status"] == 1


def test_the_idempotency_key_travels_in_meta(shop):
    call_tool(
        Connection(transport="http", url=shop.url, bearer_token=SHOP_TOKEN),
        name="create_refund",
        arguments={"order_id": "A-10423", "idempotency_key": "run:7:3:refund"},
        meta={"idempotency_key": "run:7:3:refund"},
    )

    assert shop.shop.meta_keys == ["run:7:3:refund"]


def test_a_tool_error_is_retryable_and_says_what_the_tool_said(shop):
    shop.shop.fail_next["order_status"] = 1

    with pytest.raises(ToolCallFailed) as failed:
        call_tool(
            Connection(transport="http", url=shop.url, bearer_token=SHOP_TOKEN),
            name="order_status",
            arguments={"order_id": "A-10423"},
        )

    assert failed.value.retryable is True
    assert "payment provider timed out" in str(failed.value)


def test_a_wrong_token_is_not_retried(shop):
    with pytest.raises(ToolCallFailed) as failed:
        list_tools(Connection(transport="http", url=shop.url, bearer_token="wrong"))

    assert failed.value.retryable is False
    assert failed.value.status == 401


def test_a_server_that_is_not_there_is_retryable():
    connection = Connection(transport="http", url=f"http://127.0.0.1:{free_port()}/mcp", timeout=3)

    with pytest.raises(ToolCallFailed) as failed:
        list_tools(connection)

    assert failed.value.retryable is True
    assert "unreachable" in str(failed.value) or "did not answer" in str(failed.value)
