"""``recagent synth``: generate verified tool-learning dialogs for the recommender tools."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def synth(
    out: Path = typer.Option(..., "--out", help="output folder (rerun the same command to resume)"),
    n: int | None = typer.Option(None, "--n", help="verified dialogs to produce (default 1000, or the config's)"),
    seed: int | None = typer.Option(None, help="random seed (default 0, or the config's)"),
    dataset: str | None = typer.Option(None, help="dataset name or folder (default ml-100k)"),
    generator: str | None = typer.Option(None, help="programmatic (offline) | llm (needs an llm section)"),
    config: Path | None = typer.Option(None, help="YAML synthesis config"),
    override: list[str] = typer.Option([], "--set", "-o", help="override, e.g. -o mix.hard=0.5 -o test_fraction=0.2"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    report_only: bool = typer.Option(False, help="only rebuild the report and exports of an existing run"),
) -> None:
    """Generate verified function-calling dialogs (train/test JSONL, rejected samples, exports, report)."""
    from recagent.synth.config import SynthConfig

    cfg = SynthConfig.from_yaml(config) if config else SynthConfig.build()
    direct = [
        f"{k}={v}"
        for k, v in (("n", n), ("seed", seed), ("tools.dataset", dataset), ("generator", generator))
        if v is not None
    ]
    cfg = cfg.with_overrides(direct + list(override))
    if report_only:
        _rebuild(cfg, out)
        return
    from recagent.synth.pipeline import synthesize

    console.print(f"synthesizing {cfg.n} verified dialogs into {out} ({cfg.generator} generator, seed {cfg.seed})")
    r = synthesize(cfg, out, progress=progress)
    console.print(
        f"[green]done[/]: {r.accepted['train']} train + {r.accepted['test']} test"
        + (f" + {r.accepted['validation']} validation" if r.accepted["validation"] else "")
        + f" dialogs, {r.rejected} rejected, "
        f"skipped {r.skipped or 'none'}; {r.verified_per_minute:.0f} verified/min. Report: {out / 'report.md'}"
    )


def _rebuild(cfg, out: Path) -> None:
    from recagent.errors import RecagentError
    from recagent.synth.export import write_exports
    from recagent.synth.pipeline import read_rows
    from recagent.synth.report import write_report
    from recagent.synth.sample import Sample

    if not (out / "config.yaml").is_file():
        raise RecagentError(f"{out} holds no synthesis run (no config.yaml)")
    train = [Sample.from_row(r) for r in read_rows(out / "train.jsonl")]
    test = [Sample.from_row(r) for r in read_rows(out / "test.jsonl")]
    write_exports(out, train, test, cfg.exports)
    write_report(out, cfg)
    console.print(f"report rebuilt: {out / 'report.md'}")
