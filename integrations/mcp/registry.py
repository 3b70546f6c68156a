"""The MCP servers admins register, and the tools they list: connections, refresh, calls by tool row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from integrations.mcp import client
from integrations.mcp.client import Connection, ToolCallFailed, ToolOutcome
from integrations.models import McpServer, McpTool


def mcp_connection(*, server: McpServer) -> Connection:
    """How to reach `server`, from its row."""
    return Connection(
        transport="stdio" if server.transport == McpServer.Transport.STDIO else "http",
        url=server.url,
        bearer_token=server.bearer_token,
        command=server.command,
        args=tuple(str(a) for a in (server.args or [])),
        timeout=float(server.timeout_seconds),
        name=server.name,
    )


def mcp_server_tools_refresh(*, server_id: int) -> list[McpTool]:
    """Ask the server for its tools and store them: new ones added, changed ones updated, ones it no longer
    lists kept but marked unlisted (a mapping to them then fails visibly instead of vanishing).

    The server is asked outside any transaction; a failure is recorded on the server row and raised.
    """
    server = McpServer.objects.get(pk=server_id)
    try:
        listed = client.list_tools(mcp_connection(server=server))
    except ToolCallFailed as exc:
        McpServer.objects.filter(pk=server_id).update(refresh_error=str(exc)[:5000])
        raise
    now = timezone.now()
    with transaction.atomic():
        known = {t.name: t for t in McpTool.objects.select_for_update().filter(server=server)}
        for info in listed:
            tool = known.get(info.name) or McpTool(server=server, name=info.name)
            if tool.pk is None:
                tool.read_only = info.read_only  # afterwards the admin's mark wins
            tool.description = info.description
            tool.input_schema = info.input_schema
            tool.listed = True
            tool.save()
        names = {info.name for info in listed}
        McpTool.objects.filter(server=server).exclude(name__in=names).update(listed=False)
        McpServer.objects.filter(pk=server_id).update(tools_refreshed_at=now, refresh_error="")
    return list(McpTool.objects.filter(server=server, listed=True).order_by("name"))


def mcp_tool_call(*, tool: McpTool, arguments: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> ToolOutcome:
    """Call `tool` on its server. The caller has already passed the arguments through the argument gate."""
    server = tool.server
    if not server.active:
        raise ToolCallFailed(f"MCP server {server.name} is switched off", retryable=False)
    if not tool.listed:
        raise ToolCallFailed(
            f"tool {tool.name} is no longer listed by MCP server {server.name} (refresh its tools)", retryable=False
        )
    return client.call_tool(mcp_connection(server=server), name=tool.name, arguments=arguments, meta=meta)
