"""MCP, the protocol side: connecting to a shop's or billing system's MCP server, listing its tools and
calling them (`client`), and the connections admins register (`registry`).

The triage domain decides *which* tool runs, with which arguments and when (`triage.tools`); this package
only speaks the protocol, through the official `mcp` SDK.
"""
