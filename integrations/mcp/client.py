"""An MCP client over the official SDK (`mcp` 2.x): list a server's tools, call one.

A connection is opened per operation and closed after it: the product calls tools rarely (a look-up per
ticket, a refund per decision), from synchronous workers, and a pooled session would have to survive
worker forks and server restarts. Every operation is bounded by the connection's timeout, so a server
that does not answer costs one timeout, never a stuck worker.

Errors come back as `ToolCallFailed`, a `ProviderError`, saying whether trying again can help: refused
connections, timeouts, 429 and 5xx, and a tool's own error result can; a refused token (401/403) or a
server that speaks no MCP cannot.

The SDK (with its HTTP client and JSON-RPC models) is imported when a tool is first listed or called, not
with this module: importing it costs more than a second of every process's start (measured with `python -X
importtime`: 1.2-1.6 s of 5-6 s on the 2-core machine), and every web, worker and `manage.py` process loads
this module through the chain's execute step while most never call a tool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from integrations.llm.base import ProviderError

if TYPE_CHECKING:
    from mcp import Client
    from mcp_types import CallToolResult, RequestParamsMeta

IDEMPOTENCY_META_KEY = "idempotency_key"


class ToolCallFailed(ProviderError):
    """An MCP operation failed; `retryable` says whether trying again can help."""


@dataclass(frozen=True)
class Connection:
    """How to reach one MCP server: streamable HTTP (with a bearer token) or a local command over stdio."""

    transport: Literal["http", "stdio"]
    url: str = ""
    bearer_token: str = field(default="", repr=False)
    command: str = ""
    args: Sequence[str] = ()
    timeout: float = 10.0
    name: str = ""

    def describe(self) -> str:
        return self.name or (self.url if self.transport == "http" else self.command)


@dataclass(frozen=True)
class ToolInfo:
    """A tool as its server lists it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool answered: its structured result when it gave one (else its text parsed as JSON when it
    is JSON), and its text."""

    structured: dict[str, Any] | None
    text: str


def list_tools(connection: Connection) -> list[ToolInfo]:
    """The tools the server offers (every page of the listing)."""
    return _run(connection, _list_tools)


def call_tool(
    connection: Connection, *, name: str, arguments: Mapping[str, Any], meta: Mapping[str, Any] | None = None
) -> ToolOutcome:
    """Call tool `name`. A result the tool marked as an error is raised as a retryable `ToolCallFailed`."""

    async def call(client: Client) -> ToolOutcome:
        result = await client.call_tool(
            name, dict(arguments), meta=cast("RequestParamsMeta", dict(meta)) if meta else None
        )
        return _outcome(name, result)

    return _run(connection, call)


async def _list_tools(client: Client) -> list[ToolInfo]:
    tools: list[ToolInfo] = []
    cursor: str | None = None
    for _ in range(100):  # a paginator that never ends must not hang a worker
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            annotations = tool.annotations
            tools.append(
                ToolInfo(
                    name=tool.name,
                    description=tool.description or "",
                    input_schema=dict(tool.input_schema or {}),
                    read_only=bool(annotations and annotations.read_only_hint),
                )
            )
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _outcome(name: str, result: CallToolResult) -> ToolOutcome:
    from mcp_types import TextContent

    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    if result.is_error:
        raise ToolCallFailed(f"tool {name} answered an error: {text[:500]}", retryable=True)
    structured = result.structured_content
    if structured is None and text:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        structured = parsed if isinstance(parsed, dict) else None
    return ToolOutcome(structured=dict(structured) if structured is not None else None, text=text)


def _run_sync[T](main: Callable[[], Awaitable[T]]) -> T:
    """Run `main` to completion from synchronous code. Where this thread already runs an event loop (a
    caller inside async code, or a library driving one from this thread, as Playwright's sync API does),
    `anyio.run` refuses to start a second one; the call then gets a fresh loop on a thread of its own."""
    import anyio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(main)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcp-call") as pool:
        return pool.submit(anyio.run, main).result()


def _run[T](connection: Connection, operation: Callable[[Client], Awaitable[T]]) -> T:
    """Open a session, run `operation(client)` within the connection's timeout, close; errors classified."""
    import anyio
    import httpx2
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client

    # The SDK answers an HTTP error status with a generic JSON-RPC error; the status itself (401 or 503?)
    # decides whether trying again can help, so it is noted as responses arrive.
    refused: list[int] = []

    async def note_status(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            refused.append(response.status_code)

    async def main() -> T:
        with anyio.fail_after(connection.timeout):
            if connection.transport == "stdio":
                params = StdioServerParameters(command=connection.command, args=list(connection.args))
                async with Client(params) as client:
                    return await operation(client)
            headers = {"Authorization": f"Bearer {connection.bearer_token}"} if connection.bearer_token else {}
            timeout = httpx2.Timeout(connection.timeout)
            async with (
                httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks={"response": [note_status]}) as http,
                Client(streamable_http_client(connection.url, http_client=http)) as client,
            ):
                return await operation(client)

    try:
        return _run_sync(main)
    except ToolCallFailed:
        raise
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise _classified(connection, exc, refused[-1] if refused else None) from exc


def _leaves(exc: BaseException) -> list[BaseException]:
    """The errors inside (nested) exception groups: the SDK's task groups wrap what went wrong."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _classified(connection: Connection, exc: BaseException, status: int | None) -> ToolCallFailed:
    import anyio
    import httpx2
    from mcp.shared.exceptions import MCPError

    where = f"MCP server {connection.describe()}"
    for leaf in _leaves(exc):
        if isinstance(leaf, ToolCallFailed):
            return leaf
        if isinstance(leaf, httpx2.HTTPStatusError):
            status = leaf.response.status_code
        if status is not None and isinstance(leaf, (httpx2.HTTPStatusError, MCPError)):
            retryable = status in (408, 409, 425, 429) or status >= 500
            hint = " (check its bearer token)" if status in (401, 403) else ""
            return ToolCallFailed(f"{where} answered HTTP {status}{hint}", retryable=retryable, status=status)
        if isinstance(leaf, TimeoutError):
            return ToolCallFailed(f"{where} did not answer within {connection.timeout:g} s", retryable=True)
        if isinstance(leaf, (httpx2.TransportError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)):
            return ToolCallFailed(f"{where} unreachable: {type(leaf).__name__}: {leaf}", retryable=True)
        if isinstance(leaf, MCPError):
            return ToolCallFailed(f"{where}: {leaf}", retryable=False)
    leaf = _leaves(exc)[0]
    return ToolCallFailed(f"{where}: {type(leaf).__name__}: {leaf}", retryable=False)
