"""``recagent data``: fetch datasets into the cache and describe them."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Fetch and inspect datasets.", no_args_is_help=True)
console = Console()


@app.command()
def fetch(
    name: str = typer.Argument("ml-100k", help="dataset to fetch"),
    force: bool = typer.Option(False, help="fetch again even if a verified copy is cached"),
) -> None:
    """Download a known dataset into $RECAGENT_HOME, verify checksums (idempotent)."""
    from recagent.tools.data import fetch as do_fetch

    with console.status(f"fetching {name}"):
        path = do_fetch(name, force=force, log=lambda m: console.print(m, highlight=False))
    console.print(f"[green]ok[/] {name}: {path}")


@app.command()
def info(
    name: str = typer.Argument("ml-100k", help="dataset name or folder"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Show counts, genres, years and the leave-one-out split of a dataset."""
    from recagent.tools.data import leave_one_out, load_dataset

    ds = load_dataset(name)
    summary = ds.summary()
    summary["split"] = leave_one_out(ds).summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"dataset {ds.name}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    console.print(table)
