"""``recagent train``: fine-tune the tool-calling policy: ``sft`` (supervised), then step-grained ``rl``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from recagent.cli.options import config_epilog

app = typer.Typer(
    help="Fine-tune the tool-calling policy on synthesized dialogs: sft (supervised), then rl (step-grained GRPO/PPO).",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)  # paths stay on one line


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _show_logs() -> None:
    """recagent.rl's info lines (rows used and dropped, resume point) on stderr, once per process."""
    log = logging.getLogger("recagent.rl")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


@app.command(epilog=config_epilog("train sft"))
def sft(
    config: Path | None = typer.Option(
        None, "--config", help="YAML SFT config (any SFTConfig / TrainingArguments field)"
    ),
    data: Path | None = typer.Option(None, "--data", help="folder of a synthesis run (recagent synth --out DIR)"),
    out: Path | None = typer.Option(
        None, "--out", help="checkpoints and final/ (default $RECAGENT_HOME/runs/sft); rerun to resume"
    ),
    base_model: Path | None = typer.Option(
        None, "--base-model", help="causal LM folder (default: offline SmolLM2-135M-Instruct)"
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", help="stop after this many optimizer updates"),
    override: list[str] = typer.Option([], "--set", "-o", help="override, e.g. -o use_lora=true -o learning_rate=2e-4"),
    progress: bool = typer.Option(True, help="show the trainer's progress bar"),
) -> None:
    """Supervised fine-tuning on synthesized dialogs with TRL (assistant-only loss, resumes from checkpoints)."""
    from recagent.rl.sft import load_sft_config, train_sft

    values = {
        "data_dir": str(data) if data else None,
        "output_dir": str(out) if out else None,
        "base_model": str(base_model) if base_model else None,
        "max_steps": max_steps,
        "disable_tqdm": None if progress else True,
    }
    cfg = load_sft_config(config, list(override), **values)
    _show_logs()
    mode = f"LoRA r={cfg.lora_r}" if cfg.use_lora else "full fine-tuning"
    device = "cpu" if cfg.use_cpu else ("cuda, bf16" if cfg.bf16 else "cuda")
    console.print(f"sft: {mode} on {cfg.data_dir} ({device}) -> {cfg.output_dir}")
    final = train_sft(cfg)
    if cfg.export_tokens:
        console.print(
            f"[green]done[/]: token rows in {final}; train them with: python rl/train_tokens.py --tokens {final}"
        )
    elif cfg.use_lora and not cfg.merge_lora:
        from recagent.agents.local_model import default_model_dir

        base = cfg.base_model or default_model_dir()
        console.print(
            f"[green]done[/]: LoRA adapter in {final}; try it: recagent chat --model {base} --adapter {final}"
        )
    else:
        console.print(f"[green]done[/]: fine-tuned model in {final}; try it: recagent chat --model {final}")


@app.command("rl", epilog=config_epilog("train rl"))
def rl(
    config: Path | None = typer.Option(None, "--config", help="YAML RL config (any GRPOConfig field + ours)"),
    data: Path | None = typer.Option(
        None, "--data", help="folder of a synthesis run (its train.jsonl gives the tasks)"
    ),
    out: Path | None = typer.Option(None, "--out", help="checkpoints and final/ (default $RECAGENT_HOME/runs/rl)"),
    base_model: Path | None = typer.Option(
        None, "--base-model", help="policy to start from, e.g. an SFT final/ folder"
    ),
    algo: str | None = typer.Option(None, "--algo", help="grpo (default) | ppo"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="stop after this many updates"),
    override: list[str] = typer.Option([], "--set", "-o", help="override, e.g. -o num_generations=4 -o step_gamma=0.8"),
    progress: bool = typer.Option(True, help="show the trainer's progress bar"),
) -> None:
    """Step-grained RL (StepTool rewards; GRPO via TRL or PPO with a value head) on real tool episodes."""
    from recagent.rl.train_rl import load_rl_config, train_rl

    values = {
        "data_dir": str(data) if data else None,
        "output_dir": str(out) if out else None,
        "base_model": str(base_model) if base_model else None,
        "algo": algo,
        "max_steps": max_steps,
        "disable_tqdm": None if progress else True,
    }
    cfg = load_rl_config(config, list(override), **values)
    _show_logs()
    console.print(f"rl: step-grained {cfg.algo} on {cfg.data_dir} -> {cfg.output_dir}")
    final = train_rl(cfg)
    if (final / "adapter_config.json").is_file():
        console.print(f"[green]done[/]: LoRA adapter in {final}; try it: recagent chat --adapter {final}")
    else:
        console.print(f"[green]done[/]: policy in {final}; try it: recagent chat --model {final}")


@app.command("router", epilog=config_epilog("train router"))
def router(
    data: Path = typer.Option(..., "--data", help="folder of a synthesis run (its train.jsonl call turns)"),
    out: Path = typer.Option(..., "--out", help="folder for tool_router.npz (an adapter folder: it ships with it)"),
    config: Path | None = typer.Option(None, "--config", help="YAML router config"),
    override: list[str] = typer.Option([], "--set", "-o", help="override, e.g. -o C=4 -o min_df=3"),
) -> None:
    """Fit the tool router (words -> likeliest tools) that narrows the local policy's call grammar."""
    from recagent.config import read_yaml_mapping
    from recagent.rl.train_router import RouterJobConfig, train_router

    values = read_yaml_mapping(config) if config else {}
    cfg = RouterJobConfig.build(**{**values, "data_dir": str(data), "output_dir": str(out)}).with_overrides(override)
    path = train_router(cfg)
    console.print(f"[green]done[/]: tool router in {path}; scores in {path.parent / 'router_config.yaml'}")


@app.command("ship")
def ship(
    adapter: Path = typer.Argument(..., help="LoRA adapter folder to install (an SFT/RL final/ or checkpoint-N/)"),
    synth: Path | None = typer.Option(
        None, "--synth", help="the synthesis run it trained on (seed and size for the card)"
    ),
    report: Path | None = typer.Option(
        None, "--report", help="JSON with metrics_markdown / training / machine for the card"
    ),
    command: str = typer.Option("", "--command", help="the commands that reproduce it, for the card"),
    dest: Path | None = typer.Option(
        None, "--dest", help="where to install (default: the package's shipped policy folder)"
    ),
    router: Path | None = typer.Option(
        None, "--router", help="tool router to ship beside it (default: the adapter folder's tool_router.npz)"
    ),
) -> None:
    """Install a trained adapter as the default offline policy, with a model card from its run's files."""
    from recagent.agents.local_model import SHIPPED_ADAPTER, shipped_folder
    from recagent.rl.ship import ship_adapter

    target = dest or shipped_folder()
    shipped = ship_adapter(adapter, target, synth, report, command, router=router)
    console.print(
        f"[green]shipped[/] {SHIPPED_ADAPTER}: {shipped.adapter_mb} MB adapter and model card in {shipped.folder}"
    )


@app.command("ship-router")
def ship_router(
    router: Path = typer.Argument(..., help="tool_router.npz to install beside the shipped adapter"),
    report: Path | None = typer.Option(
        None, "--report", help="policy_card.py JSON: its metrics replace the card's (measured with the router)"
    ),
    command: str = typer.Option("", "--command", help="the command that fit the router, appended to the card"),
    dest: Path | None = typer.Option(None, "--dest", help="the shipped policy folder (default: the package's)"),
) -> None:
    """Install a tool router beside the shipped adapter (which stays as trained) and update the model card."""
    from recagent.agents.local_model import shipped_folder
    from recagent.rl.ship import add_router

    target = dest or shipped_folder()
    add_router(target, router, report, command)
    console.print(f"[green]shipped[/] tool router in {target}; model card updated")
