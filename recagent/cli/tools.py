"""``recagent tools``: list the recommender tools and call one from the shell."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="List and call the recommender tools.", no_args_is_help=True)
console = Console()


def _registry(dataset: str, models: list[str] | None = None):
    from recagent.tools.env import ToolEnv, ToolEnvConfig
    from recagent.tools.recommender_tools import build_registry

    if not models:
        return build_registry(ToolEnv.load(ToolEnvConfig.build(dataset=dataset)))
    default = "sasrec" if "sasrec" in models else models[0]
    return build_registry(ToolEnv.load(ToolEnvConfig.build(dataset=dataset, models=models, default_model=default)))


@app.command("list")
def list_tools(
    as_json: bool = typer.Option(False, "--json", help="print the OpenAI tools JSON schemas"),
) -> None:
    """Show every tool with its description and arguments (no data or models needed)."""
    from recagent.tools.recommender_tools import TOOL_FUNCTIONS
    from recagent.tools.toolkit import Tool, ToolRegistry

    registry = ToolRegistry(env=None)
    for fn in TOOL_FUNCTIONS:
        registry.register(Tool.from_function(fn))
    if as_json:
        typer.echo(json.dumps(registry.openai_schemas(), indent=2))
        return
    table = Table(title="recagent tools")
    table.add_column("tool", style="bold")
    table.add_column("description")
    table.add_column("arguments")
    for tool in registry.tools.values():
        schema = tool.json_schema()
        required = set(schema.get("required", []))
        args = ", ".join(f"{n}{'' if n in required else '?'}" for n in schema.get("properties", {}))
        table.add_row(tool.name, tool.description, args)
    console.print(table)


@app.command()
def call(
    name: str = typer.Argument(..., help="tool name, e.g. retrieve_for_user"),
    args: str = typer.Argument("{}", help='arguments as a JSON object, e.g. \'{"user_id": 42, "k": 5}\''),
    dataset: str = typer.Option("ml-100k", help="dataset name or folder"),
    models: str = typer.Option("", help="comma-separated trained models to load (default: all four)"),
) -> None:
    """Call one tool with JSON arguments and print its JSON result (exit 1 on a tool error)."""
    # the registry turns every bad name or argument into an error outcome, so nothing here can raise a traceback
    outcome = _registry(dataset, [m.strip() for m in models.split(",") if m.strip()]).call(name, args)
    if outcome.ok:
        typer.echo(json.dumps(outcome.result, indent=2, ensure_ascii=False))
        return
    err = outcome.error
    typer.echo(json.dumps({"error": err.model_dump(exclude_none=True)}, indent=2, ensure_ascii=False))
    typer.echo(f"error: {err.error}: {err.message}", err=True)  # the one line a person reads; stdout stays JSON
    raise typer.Exit(1)
