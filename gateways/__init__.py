"""The gateway runtime: deployed agents and pipelines over HTTP API, CLI and MCP."""
