"""`manage.py mcp_server`: the product's MCP server for a staff member's assistant.

    manage.py mcp_server                          # stdio; the staff token in TRIAGE_MCP_TOKEN
    manage.py mcp_server --http --port 8001       # streamable HTTP at http://127.0.0.1:8001/mcp

Why the HTTP endpoint is served by this command (uvicorn) and not mounted in Django: the web app runs under
gunicorn's WSGI workers, and the SDK's transport is an ASGI app whose streams and task groups need an event
loop; a separate process keeps the MCP endpoint from holding WSGI threads, and lets it scale and restart on
its own. Behind the same reverse proxy it answers under `/mcp` beside the staff app.
"""

from __future__ import annotations

import os

import uvicorn
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.mcp_server import build_server, http_app
from integrations.tokens import staff_token_authenticate


class Command(BaseCommand):
    help = "Serve the product's MCP server: stdio (token in TRIAGE_MCP_TOKEN) or streamable HTTP (--http)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--http", action="store_true", help="Serve streamable HTTP instead of stdio.")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--path", default="/mcp")

    def handle(self, *args: object, **options: object) -> None:
        if options["http"]:
            host, port = str(options["host"]), int(str(options["port"]))
            self.stderr.write(f"MCP server (streamable HTTP) on http://{host}:{port}{options['path']}")
            uvicorn.run(http_app(host=host, path=str(options["path"])), host=host, port=port, log_level="warning")
            return
        token = os.environ.get("TRIAGE_MCP_TOKEN", "")
        staff = staff_token_authenticate(raw=token)
        if staff is None:
            raise CommandError(
                "TRIAGE_MCP_TOKEN is not set or is not an active staff token (admin: Staff tokens): the stdio "
                "server acts as that person."
            )
        # stdout is the protocol's channel: nothing else may be written to it.
        self.stderr.write(f"MCP server (stdio) acting as {staff.user.get_username()}")
        build_server(stdio_token=token).run("stdio")
