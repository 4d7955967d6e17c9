"""``recagent mcp``: the recommender tools as an MCP server, over stdio (an MCP client starts it) or streamable HTTP."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

from recagent.cli.options import Dataset, Overrides
from recagent.errors import ConfigError

status = Console(stderr=True, soft_wrap=True)  # over stdio, stdout is the protocol: every notice goes to stderr


class Transport(StrEnum):
    stdio = "stdio"
    http = "http"


def mcp(
    transport: Transport | None = typer.Option(
        None, help="stdio (default: an MCP client starts this command) or http (streamable HTTP at /mcp)"
    ),
    host: str | None = typer.Option(
        None, help="http: address to listen on (default 127.0.0.1; others need $RECAGENT_API_KEYS)"
    ),
    port: int | None = typer.Option(None, help="http: TCP port (default 8001)"),
    dataset: Dataset = None,
    config: Path | None = typer.Option(None, help="MCP server config YAML (a `tools:` section picks data and models)"),
    override: Overrides = None,
) -> None:
    """Serve the recommender tools to MCP clients: each session has its own candidate sets (save_as / candidates)."""
    from recagent.serve.mcp_server import McpConfig

    extra = [f"transport={transport.value}"] if transport else []
    extra += [f"host={host}"] if host else []
    extra += [f"port={port}"] if port is not None else []
    extra += [f"tools.dataset={dataset}"] if dataset else []
    cfg = (McpConfig.from_yaml(config) if config else McpConfig()).with_overrides(extra + list(override or []))
    if cfg.transport == "stdio" and (host or port is not None):
        raise ConfigError("--host and --port are for --transport http; over stdio the MCP client starts this command")
    if cfg.transport == "stdio":
        _serve_stdio(cfg)
    else:
        _serve_http(cfg)


def _load(cfg, progress: bool):
    """The tool environment of ``cfg`` (fetching the dataset and training missing models on first use)."""
    from recagent.cli.prepare import prepare
    from recagent.tools.env import ToolEnv

    prepare(cfg.tools.dataset, cfg.tools.models, progress=progress)
    return ToolEnv.load(cfg.tools)


def _serve_stdio(cfg) -> None:
    import anyio

    from recagent.serve.mcp_server import build_server, run_stdio

    # The protocol keeps the real stdout; anything else that prints (a library, a progress bar) goes to stderr,
    # so no stray line can corrupt the JSON-RPC stream.
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    protocol_out = anyio.wrap_file(open(protocol_fd, "w", encoding="utf-8", closefd=True))
    env = _load(cfg, progress=False)
    server = build_server(env)
    status.print(f"recagent mcp: the tools over {env.dataset.name} on stdio; the client ends it", highlight=False)
    anyio.run(run_stdio, server, None, protocol_out)


def _serve_http(cfg) -> None:
    import uvicorn

    from recagent.serve.mcp_server import MCP_PATH, create_http_app, uvicorn_options

    env = _load(cfg, progress=True)
    app = create_http_app(cfg, env)
    auth = f"{len(cfg.keys())} API key(s), Authorization: Bearer KEY" if cfg.keys() else "no API key (loopback only)"
    status.print(
        f"recagent mcp: http://{cfg.host}:{cfg.port}{MCP_PATH} (the tools over {env.dataset.name}, {auth}); "
        "Ctrl-C stops",
        highlight=False,
    )
    uvicorn.run(
        app, host=cfg.host, port=cfg.port, log_level="warning", timeout_graceful_shutdown=5, **uvicorn_options(cfg)
    )
