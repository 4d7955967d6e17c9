"""``recagent recs``: train and evaluate the conventional recommenders."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from recagent.cli.options import config_epilog

app = typer.Typer(help="Train and evaluate conventional recommenders.", no_args_is_help=True)
console = Console()
ALL = "all"


def _models(model: str) -> list[str]:
    from recagent.tools.recommenders import MODELS, get_model_class

    return list(MODELS) if model == ALL else [get_model_class(model).name]


@app.command(epilog=config_epilog("recs train"))
def train(
    model: str = typer.Option("sasrec", help="pop | itemknn | bpr | sasrec | all"),
    dataset: str = typer.Option("ml-100k", help="dataset name or folder"),
    config: Path | None = typer.Option(None, help="YAML job config (dataset, model, params)"),
    override: list[str] = typer.Option([], "--set", "-o", help="override, e.g. -o params.dropout=0.2"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Train recommenders on the leave-one-out split and save checkpoints (resumes if interrupted)."""
    from recagent.paths import model_dir
    from recagent.tools.data import leave_one_out, load_dataset
    from recagent.tools.recommenders.registry import TrainJobConfig
    from recagent.tools.recommenders.registry import train as do_train

    names = _models(model)
    jobs = [
        (
            TrainJobConfig.from_yaml(config) if config else TrainJobConfig.build(dataset=dataset, model=name)
        ).with_overrides(override)
        for name in ([None] if config else names)
    ]
    split = leave_one_out(load_dataset(jobs[0].dataset))
    ds = split.dataset
    for job in jobs:
        name = job.model
        console.print(f"training [bold]{name}[/] on {ds.name} ({split.summary()['train']} training interactions)")
        out = Path(job.out_dir) if job.out_dir else model_dir(ds.name, name)
        _, metrics = do_train(split, name, job.params, out_dir=out, show_progress=progress)
        job.to_yaml(out / "job.yaml")  # the resolved job config lives next to its checkpoint
        t = metrics["test"]
        console.print(
            f"  [green]done[/] in {metrics['train_seconds']:.1f}s, {metrics['epochs']} epochs; "
            f"test HR@10 {t['HR@10']:.4f}  NDCG@10 {t['NDCG@10']:.4f}  MRR@10 {t['MRR@10']:.4f}"
        )


@app.command("eval")
def evaluate_cmd(
    model: str = typer.Option(ALL, help="pop | itemknn | bpr | sasrec | all"),
    dataset: str = typer.Option("ml-100k", help="dataset name or folder"),
    part: str = typer.Option("test", help="valid | test"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Evaluate trained recommenders by full ranking: HR@10, NDCG@10, MRR@10."""
    from recagent.tools.data import leave_one_out, load_dataset
    from recagent.tools.recommenders import load_trained
    from recagent.tools.recommenders.evaluate import evaluate

    if part not in ("valid", "test"):
        raise typer.BadParameter("part must be valid or test")
    ds = load_dataset(dataset)
    split = leave_one_out(ds)
    results = {name: evaluate(load_trained(ds.name, name), split, part) for name in _models(model)}
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    table = Table(title=f"{ds.name}, {part} split, full ranking ({len(split.cases(part))} users)")
    table.add_column("model")
    for metric in ("HR@10", "NDCG@10", "MRR@10"):
        table.add_column(metric, justify="right")
    for name, m in results.items():
        table.add_row(name, *(f"{m[k]:.4f}" for k in ("HR@10", "NDCG@10", "MRR@10")))
    console.print(table)
