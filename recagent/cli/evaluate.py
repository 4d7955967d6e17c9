"""``recagent eval``: the agent against conventional recommenders, leakage-checked, resumable, with a report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def evaluate(
    agent: Path | None = typer.Option(None, "--agent", help="YAML agent config (default: the offline agent)"),
    dataset: str | None = typer.Option(None, help="dataset name or folder (default ml-100k)"),
    users: int | None = typer.Option(None, help="evaluation users, sampled with the seed (default 200)"),
    out: Path | None = typer.Option(None, "--out", help="output folder (rerun the same command to resume)"),
    no_agent: bool = typer.Option(False, "--no-agent", help="conventional recommenders only"),
    synth_dir: Path | None = typer.Option(
        None, "--synth-dir", help="synthesized run for tool-call accuracy (its test.jsonl)"
    ),
    config: Path | None = typer.Option(None, help="YAML evaluation config"),
    override: list[str] = typer.Option([], "--set", "-o", help="override, e.g. -o seed=1 -o n_candidates=50"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Utility, beyond-utility, hallucination, position bias, history length, tool calls, simulated users."""
    from recagent.agents.config import AgentConfig
    from recagent.evaluation.config import EvalConfig
    from recagent.evaluation.runner import run_eval

    cfg = EvalConfig.from_yaml(config) if config else EvalConfig.build()
    if agent is not None:
        cfg = cfg.model_copy(update={"agent": AgentConfig.from_yaml(agent)})
    direct = [
        f"{k}={v}"
        for k, v in (("dataset", dataset), ("users", users), ("out", out), ("synth_dir", synth_dir))
        if v is not None
    ]
    if no_agent:
        direct.append("include_agent=false")
    cfg = cfg.with_overrides(direct + list(override))
    console.print(
        f"evaluating on {cfg.dataset} ({cfg.part}, {cfg.users} users, seed {cfg.seed}): "
        f"{', '.join(cfg.baselines + (['agent'] if cfg.include_agent else []))}"
    )
    folder = run_eval(cfg, progress=progress)
    console.print(f"[green]done[/]: {folder / 'report.md'} (results.json, records.jsonl, plots)")
