"""The RL job: step-grained GRPO or PPO of the tool-calling policy on tasks from a synthesis run.

Tasks are the first assistant turn of each *training* dialog of a ``recagent synth`` run (its
prompt, offered tools, gold calls and held-out target); rollouts continue from there for real
on the tools of the run's dataset. The test dialogs are never read here, and the same leakage
check as SFT runs first. The job resumes from the latest checkpoint in ``output_dir`` and saves
the final policy with our chat template and the resolved config next to it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from recagent.errors import ConfigError, RecagentError
from recagent.paths import recagent_home
from recagent.rl.ppo import StepPPOConfig

logger = logging.getLogger("recagent.rl")


def default_rl_dir() -> Path:
    """``$RECAGENT_HOME/runs/rl``."""
    return recagent_home() / "runs" / "rl"


@dataclass
class RLJobConfig(StepPPOConfig):
    """What to train (base model, data, algorithm) on top of the step-grained GRPO/PPO settings."""

    output_dir: str | None = field(
        default=None, metadata={"help": "checkpoints and final/ (default $RECAGENT_HOME/runs/rl)"}
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "folder of a synthesis run (its train.jsonl gives the tasks)"}
    )
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "policy to start from: a model folder, or an SFT LoRA "
            "adapter folder (its adapter keeps training; None: offline SmolLM2)"
        },
    )
    algo: Literal["grpo", "ppo"] = field(
        default="grpo", metadata={"help": "step-grained GRPO (TRL) or PPO (value head)"}
    )
    task_kinds: list[str] = field(
        default_factory=lambda: ["single", "parallel", "chain", "clarify"],
        metadata={"help": "dialog kinds whose first turns become tasks"},
    )
    max_tasks: int | None = field(default=None, metadata={"help": "use at most this many tasks (None: all)"})
    max_samples: int | None = field(
        default=None,
        metadata={
            "help": "read only the first N rows of train.jsonl: the rows "
            "after them are validation dialogs (as SFT's max_samples), never trained on"
        },
    )
    served_grammar: bool = field(
        default=False,
        metadata={
            "help": "sample each turn under the grammar the served policy decodes under (base_model's tool router, "
            "grounded ids; rl/served_grammar.py) instead of freely; transformers generation only"
        },
    )

    def __post_init__(self) -> None:
        from recagent.rl.config_io import resolve_device

        if self.output_dir is None:
            self.output_dir = str(default_rl_dir())
        if self.data_dir is None or not (Path(self.data_dir) / "train.jsonl").is_file():
            raise ConfigError(
                f"data_dir {self.data_dir!r} has no train.jsonl: make one with `recagent synth --out DIR`"
            )
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(f"max_samples must be at least 1 or None (every row), got {self.max_samples}")
        if self.use_vllm and self.algo == "ppo":
            raise ConfigError(
                "use_vllm applies to algo=grpo (TRL's vLLM backend); PPO generates with transformers: "
                "drop use_vllm or use algo=grpo"
            )
        if self.algo == "ppo" and self.redraw_uniform_groups:
            raise ConfigError(
                "redraw_uniform_groups replaces GRPO groups of equal rewards; PPO has no groups: set it to 0 or "
                "use algo=grpo"
            )
        if self.use_vllm and self.served_grammar:
            raise ConfigError(
                "served_grammar samples with transformers under xgrammar, not vLLM: set use_vllm=false or "
                "served_grammar=false"
            )
        resolve_device(self)
        super().__post_init__()


def load_rl_config(path: str | Path | None = None, overrides: list[str] | None = None, **values) -> RLJobConfig:
    """YAML + CLI values + ``key=value`` overrides -> a checked :class:`RLJobConfig`."""
    from recagent.rl.config_io import load_config

    return load_config(RLJobConfig, path, overrides, {k: v for k, v in values.items() if v is not None})


def rl_tasks(cfg: RLJobConfig):
    """The job's tasks as a dataset of rows: first turns of train.jsonl's first max_samples rows, leakage-checked."""
    from datasets import Dataset

    from recagent.rl.grpo import task_row
    from recagent.rl.rollout import tasks_from_synth
    from recagent.rl.sft import check_no_leakage

    data = Path(cfg.data_dir)
    train = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines() if line.strip()]
    train = train[: cfg.max_samples]  # the rows after max_samples choose checkpoints: RL never sees them
    test_path = data / "test.jsonl"
    test = (
        [json.loads(line) for line in test_path.read_text().splitlines() if line.strip()] if test_path.is_file() else []
    )
    check_no_leakage(data, train, test)
    tasks = tasks_from_synth(train, cfg.task_kinds)[: cfg.max_tasks]
    if not tasks:
        raise RecagentError(f"{data}/train.jsonl has no dialogs of kinds {cfg.task_kinds} to learn from")
    return Dataset.from_list([task_row(t) for t in tasks])


def rl_tool_env(cfg: RLJobConfig):
    """The tool environment the synthesis run in data_dir was made with (its config.yaml's tools)."""
    import yaml

    from recagent.tools.env import ToolEnv, ToolEnvConfig

    saved = Path(cfg.data_dir) / "config.yaml"
    tools = (yaml.safe_load(saved.read_text()) or {}).get("tools", {}) if saved.is_file() else {}
    return ToolEnv.load(ToolEnvConfig(**tools))


def _adapter_base(adapter: Path) -> Path:
    """The base model a peft adapter folder was trained on: its recorded folder, else the offline default model."""
    from recagent.agents.local_model import ensure_default_model

    try:
        recorded = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError) as e:
        raise RecagentError(f"cannot read {adapter / 'adapter_config.json'}: {e}") from e
    if recorded and (Path(recorded) / "config.json").is_file():
        return Path(recorded)
    # a shipped or copied adapter records a folder of another machine (or the hub name): ours is the default model
    logger.info("adapter base %r is not here; using the offline default model", recorded)
    return ensure_default_model(progress=False)


def load_policy(cfg: RLJobConfig):
    """(model, tokenizer): a full model folder as is, or an adapter folder on its base with the adapter trainable."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recagent.agents.local_model import ensure_default_model

    start = Path(cfg.base_model) if cfg.base_model else ensure_default_model(progress=not cfg.disable_tqdm)
    # bf16 weights on a GPU (as before); a CPU keeps float32 master weights and runs bf16 as autocast
    dtype = torch.bfloat16 if cfg.bf16 and not cfg.use_cpu and torch.cuda.is_available() else torch.float32
    if not (start / "adapter_config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(start, dtype=dtype), AutoTokenizer.from_pretrained(start)
    from peft import PeftModel

    base_dir = _adapter_base(start)
    # a trainer's final/ saves its tokenizer beside the adapter; the shipped adapter folder holds the adapter only
    tok = AutoTokenizer.from_pretrained(start if (start / "tokenizer_config.json").is_file() else base_dir)
    # RL keeps training the SFT adapter (LoRA on CPU): what ships stays a small adapter on the same base
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    return PeftModel.from_pretrained(base, start, is_trainable=True), tok


def train_rl(cfg: RLJobConfig, tool_env=None) -> Path:
    """Train the policy with step-grained RL; returns the folder of the final model."""
    from recagent.agents.chat_template import apply_tool_template
    from recagent.rl.config_io import save_config
    from recagent.rl.grpo import RL_CONFIG_FILE
    from recagent.rl.sft import latest_checkpoint

    if cfg.use_vllm and importlib.util.find_spec("vllm") is None:
        raise RecagentError(
            "use_vllm=true needs vLLM, which is not installed: on a CUDA machine run "
            "`pip install 'recagent[vllm]'`, or set use_vllm=false"
        )
    dataset = rl_tasks(cfg)
    env = tool_env or rl_tool_env(cfg)
    model, tok = load_policy(cfg)
    constrain = None
    if cfg.served_grammar:
        from recagent.rl.served_grammar import ServedGrammar

        constrain = ServedGrammar.for_policy(cfg.base_model, model, tok, env)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / RL_CONFIG_FILE)
    if cfg.algo == "ppo":
        from recagent.rl.ppo import StepPPOTrainer

        trainer = StepPPOTrainer(model, cfg, dataset, tok, env, constrain)
        has_ckpt = any(out.glob("checkpoint-*/ppo_state.pt"))
        trainer.train(resume_from_checkpoint=True if has_ckpt else None)
        history = trainer.log_history
    else:
        from recagent.rl.grpo import StepGRPOTrainer

        trainer = StepGRPOTrainer(
            model=model, args=cfg, train_dataset=dataset, processing_class=tok, tool_env=env, constrain=constrain
        )
        ckpt = latest_checkpoint(out)
        if ckpt is not None:
            logger.info("resuming from %s", ckpt)
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
        history = trainer.state.log_history
    final = out / "final"
    model.save_pretrained(final)
    apply_tool_template(tok).save_pretrained(final)
    save_config(cfg, final / RL_CONFIG_FILE)
    (final / "rl_run.json").write_text(
        json.dumps({"algo": cfg.algo, "tasks": len(dataset), "log_history": history}, default=str)
    )
    return final
