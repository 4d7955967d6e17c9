"""``recagent serve``: the agent behind an OpenAI-compatible API and a web chat page."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from recagent.cli.options import Adapter, BaseUrl, Dataset, Model, Overrides, agent_overrides

status = Console(stderr=True, soft_wrap=True)


def serve(
    host: str | None = typer.Option(
        None, help="address to listen on (default 127.0.0.1; others need $RECAGENT_API_KEYS)"
    ),
    port: int | None = typer.Option(None, help="TCP port (default 8000)"),
    model: Model = None,
    base_url: BaseUrl = None,
    adapter: Adapter = None,
    dataset: Dataset = None,
    config: Path | None = typer.Option(None, help="serve config YAML (an `agent:` section holds the agent config)"),
    override: Overrides = None,
) -> None:
    """Serve the agent: POST /v1/chat/completions (OpenAI protocol), sessions, /health, /metrics and a chat page at /."""
    import uvicorn

    from recagent.agents.session_db import check_sessions
    from recagent.cli.prepare import prepare
    from recagent.serve.app import create_app
    from recagent.serve.config import ServeConfig
    from recagent.serve.transport import uvicorn_options

    extra = [f"host={host}"] if host else []
    extra += [f"port={port}"] if port is not None else []
    extra += agent_overrides(model, base_url, adapter, None, dataset, prefix="agent.")
    cfg = (ServeConfig.from_yaml(config) if config else ServeConfig()).with_overrides(extra + list(override or []))
    sessions = check_sessions(cfg.agent.sessions)  # a bad URL or an unreachable database: one line, before any work
    prepare(cfg.agent.tools.dataset, cfg.agent.tools.models, cfg.agent.policy)
    auth = f"{len(cfg.keys())} API key(s)" if cfg.keys() else "no API key (loopback only)"
    status.print(
        f"recagent serve: http://{cfg.host}:{cfg.port}/ ({cfg.agent.tools.dataset}, policy {cfg.agent.policy.kind}, {auth}, "
        f"sessions in {sessions}); Ctrl-C stops",
        highlight=False,
    )
    # uvicorn_options: header deadline, keep-alive, connection cap and header size from the config (slow clients)
    uvicorn.run(
        create_app(cfg),
        host=cfg.host,
        port=cfg.port,
        log_level="warning",
        timeout_graceful_shutdown=30,
        **uvicorn_options(cfg),
    )
