"""Command-line options several commands share, declared once: the agent flags of chat, recommend and serve.

Each is a typer ``Annotated`` alias; a command takes it as ``model: Model = None``. :func:`agent_overrides`
turns the flags into the agent-config overrides they stand for, so every command reads them alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Model = Annotated[str | None, typer.Option(help="local checkpoint folder, or the model name on --base-url")]
BaseUrl = Annotated[str | None, typer.Option(help="OpenAI-compatible policy server (API key from $OPENAI_API_KEY)")]
Adapter = Annotated[
    str | None,
    typer.Option(
        help="LoRA adapter folder for the local model; 'none': the untrained base "
        "(default: the trained policy shipped with recagent)"
    ),
]
MaxSteps = Annotated[int | None, typer.Option(help="policy calls per turn before the agent must answer")]
Dataset = Annotated[str | None, typer.Option(help="dataset name or folder")]
AgentConfigFile = Annotated[Path | None, typer.Option("--config", help="agent config YAML")]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", "-o", help="config override KEY=VALUE (dotted key, YAML value), repeatable"),
]


def config_epilog(job: str) -> str:
    """The one line each command with --config / -o shows under its options."""
    return f"Every config key with its type, default and help: recagent config show {job}"


def agent_overrides(
    model: str | None,
    base_url: str | None,
    adapter: str | None,
    max_steps: int | None,
    dataset: str | None,
    prefix: str = "",
) -> list[str]:
    """The config overrides the shared agent flags stand for (``prefix``: where the agent config sits in the job's)."""
    extra = []
    if base_url:
        extra += ["policy.kind=openai", f"policy.base_url={base_url}"]
    if model:
        extra.append(f"policy.model={model}")
    if adapter:  # "none": the untrained base model, no adapter
        extra.append("policy.adapter=null" if adapter.lower() == "none" else f"policy.adapter={adapter}")
    if max_steps:
        extra.append(f"max_steps={max_steps}")
    if dataset:
        extra.append(f"tools.dataset={dataset}")
    return [prefix + e for e in extra]
