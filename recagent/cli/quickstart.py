"""``recagent quickstart``: the main job on offline defaults, from an empty cache to real recommendations."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def quickstart(
    dataset: str = typer.Option("ml-100k", help="dataset to fetch and train on"),
    user: str = typer.Option("42", help="user to recommend for"),
    retrain: bool = typer.Option(False, help="train again even if checkpoints exist"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Fetch the data, train the default recommenders, build the index, and call the tools."""
    from recagent.cli.prepare import prepare
    from recagent.tools.env import ToolEnv, ToolEnvConfig
    from recagent.tools.recommender_tools import build_registry
    from recagent.tools.recommenders import MODELS

    ready = prepare(
        dataset, MODELS, retrain=retrain, progress=progress, log=lambda m: console.print(m, highlight=False)
    )
    ds = ready.dataset
    console.rule(f"[bold]{ds.name}[/]: {ds.n_users} users, {ds.n_items} items, {len(ds.interactions)} interactions")
    table = Table(title="recommenders, test split, full ranking")
    for col in ("model", "HR@10", "NDCG@10", "MRR@10", "train s"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, metrics in ready.metrics.items():
        t = metrics["test"]
        table.add_row(
            name, f"{t['HR@10']:.4f}", f"{t['NDCG@10']:.4f}", f"{t['MRR@10']:.4f}", f"{metrics['train_seconds']:.1f}"
        )
    console.print(table)

    with console.status("loading tools and the text index (first run encodes the catalog)"):
        registry = build_registry(ToolEnv.load(ToolEnvConfig(dataset=dataset)))  # the name or folder given
        registry.call("search_items", {"query": "warm-up", "k": 1})
    for name, args in (
        ("get_user_history", {"user_id": user, "last_n": 5}),
        ("retrieve_for_user", {"user_id": user, "k": 5, "save_as": "for_you"}),
        ("rank_by_preference", {"user_id": user, "candidates": "for_you", "prefer_genres": ["Comedy"], "k": 5}),
        ("search_items", {"query": "animated film for children", "k": 5}),
    ):
        outcome = registry.call(name, args)
        console.rule(f"{name}({args})  [dim]{outcome.latency_ms:.1f} ms[/]")
        if not outcome.ok:
            console.print(f"[red]{outcome.error.message}[/]")
            continue
        for it in outcome.result["items"]:
            genres = ", ".join(it["genres"])
            console.print(
                f"  {it['item_id']:>5}  {it['title']} ({it.get('year') or '?'})  [dim]{genres}[/]", highlight=False
            )
    console.print(
        "\n[green]ready.[/] try: recagent tools list, recagent tools call similar_items '{\"item_ids\": [50]}'"
    )
