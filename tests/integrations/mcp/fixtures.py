"""Fixtures around the loopback shop MCP server (a plugin registered by tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integrations.mcp.registry import mcp_server_tools_refresh
from integrations.models import McpServer
from tests.integrations.mcp.shop_server import ServedShop, Shop

SHOP_TOKEN = "shop-token-5f1c"


def shop_orders() -> dict[str, dict[str, str]]:
    return {
        "A-10423": {
            "status": "in transit",
            "carrier": "UPS",
            "tracking_number": "1Z999AA10123456784",
            "estimated_delivery": "2026-12-02",
            "total": "42.00",
            "currency": "USD",
        },
        "A-20577": {
            "status": "delivered",
            "carrier": "USPS",
            "tracking_number": "9400111899223197428490",
            "estimated_delivery": "2026-11-20",
            "total": "18.50",
            "currency": "USD",
        },
    }


@pytest.fixture
def shop() -> Iterator[ServedShop]:
    """The shop's MCP server on loopback (streamable HTTP, bearer token), fresh books per test."""
    served = ServedShop(Shop(orders=shop_orders()), token=SHOP_TOKEN).start()
    yield served
    served.stop()


@pytest.fixture
def shop_row(db, shop: ServedShop) -> McpServer:
    """The shop registered as an admin would, its tools refreshed."""
    row = McpServer.objects.create(name="Tidewater shop", url=shop.url, bearer_token=SHOP_TOKEN, timeout_seconds=10)
    mcp_server_tools_refresh(server_id=row.pk)
    return row
