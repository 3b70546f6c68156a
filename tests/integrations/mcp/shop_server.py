"""A small shop's MCP server for the tests: orders, refunds and cancellations, over streamable HTTP.

Written with the official SDK (`MCPServer`), served by uvicorn on loopback in a thread, behind a bearer
token, as a shop or billing system would expose its tools. It counts every call per idempotency key and
carries out each refund or cancellation once per key, as a payment API does (Stripe's `Idempotency-Key`).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

ORDER_ID = r"^A-\d{4,8}$"


@dataclass
class Shop:
    """The shop's books, read by the tests: orders, what was refunded, every call counted."""

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)  # by idempotency key
    cancellations: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)  # tool name -> calls
    calls_by_key: Counter[str] = field(default_factory=Counter)  # idempotency key -> calls
    meta_keys: list[str] = field(default_factory=list)  # the idempotency key each call carried in _meta
    fail_next: Counter[str] = field(default_factory=Counter)  # tool name -> calls still to fail

    def _maybe_fail(self, tool: str) -> None:
        self.calls[tool] += 1
        if self.fail_next[tool] > 0:
            self.fail_next[tool] -= 1
            raise ToolError(f"{tool}: the payment provider timed out, try again")


def build_shop_server(shop: Shop) -> MCPServer:
    server = MCPServer("tidewater-shop", instructions="Orders, refunds and cancellations of the Tidewater shop.")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def order_status(
        order_id: Annotated[str, Field(pattern=ORDER_ID, description="Order number, e.g. A-10423")],
    ) -> dict:
        """The status of one order: where it is, the carrier and tracking number, and when it should arrive."""
        shop._maybe_fail("order_status")
        order = shop.orders.get(order_id)
        if order is None:
            raise ToolError(f"no order {order_id}")
        return {
            "order_id": order_id,
            "status": order["status"],
            "carrier": order["carrier"],
            "tracking_number": order["tracking_number"],
            "estimated_delivery": order["estimated_delivery"],
        }

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
    def create_refund(
        order_id: Annotated[str, Field(pattern=ORDER_ID)],
        idempotency_key: Annotated[str, Field(min_length=8, max_length=200)],
        ctx: Context,
        reason: Annotated[str, Field(max_length=500)] = "",
    ) -> dict:
        """Refund an order in full to the card it was paid with. Once per idempotency key."""
        shop.calls_by_key[idempotency_key] += 1
        meta = ctx.request_context.meta or {}
        shop.meta_keys.append(str(meta.get("idempotency_key", "")))
        shop._maybe_fail("create_refund")
        if idempotency_key in shop.refunds:
            return shop.refunds[idempotency_key]
        order = shop.orders.get(order_id)
        if order is None:
            raise ToolError(f"no order {order_id}")
        refund = {
            "refund_id": f"re_{len(shop.refunds) + 1:04d}",
            "order_id": order_id,
            "amount": order["total"],
            "currency": order["currency"],
            "reason": reason,
        }
        shop.refunds[idempotency_key] = refund
        return refund

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
    def orders_cancel(
        order_id: Annotated[str, Field(pattern=ORDER_ID)],
        idempotency_key: Annotated[str, Field(min_length=8, max_length=200)],
    ) -> dict:
        """Cancel an order that has not shipped yet. Once per idempotency key."""
        shop.calls_by_key[idempotency_key] += 1
        shop._maybe_fail("orders_cancel")
        if idempotency_key not in shop.cancellations:
            shop.cancellations[idempotency_key] = {"order_id": order_id, "cancelled": True}
        return shop.cancellations[idempotency_key]

    return server


class BearerRequired:
    """Answers 401 to a request without the shop's bearer token, as the shop's gateway would."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != self.expected:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"missing or wrong bearer token"})
            return
        await self.app(scope, receive, send)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedShop:
    """The shop server on 127.0.0.1:<free port>/mcp in a daemon thread, until `stop()`."""

    def __init__(self, shop: Shop, *, token: str) -> None:
        self.shop = shop
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        app = BearerRequired(build_shop_server(shop).streamable_http_app(), token)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> ServedShop:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the shop MCP server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
