"""Supervised fine-tuning of the tool-calling policy on synthesized dialogs (``recagent train sft``).

What it does: :func:`train_sft` reads a synthesis run (``recagent synth --out DIR``: ``train.jsonl``,
and ``test.jsonl`` as the eval set when ``eval_strategy`` is not ``"no"``), refuses data whose train
and test dialogs share a dialog or a user (and, when the run's dataset can be loaded, anything else
:func:`recagent.agents.training_leaks.find_leaks` finds), fine-tunes a causal LM on the assistant turns (full
fine-tuning, or LoRA through peft), resumes from the latest complete ``checkpoint-*`` in
``output_dir`` when there is one, and writes ``output_dir/final/``: the model (LoRA merged by
default, so the local policy loads it like any checkpoint), the tokenizer carrying our chat template,
``sft_config.yaml`` and ``sft_run.json`` (rows used and dropped, resume point, steps, trainable
parameters, the log history). The config is also written to ``output_dir`` and into every checkpoint.

Why TRL: ``trl.SFTTrainer`` trains on OpenAI-format ``messages`` + ``tools`` rows as they are, masks the
loss to the assistant's tokens (``assistant_only_loss``, from the template's ``{% generation %}``
markers), and brings the Trainer's checkpointing, resuming, mixed precision and peft support; the
step-grained RL trainer of this package builds on the same stack.

The one-format rule: the policy is served with :mod:`recagent.agents.prompt_format`, and it is trained
with :data:`recagent.agents.chat_template.TOOL_CHAT_TEMPLATE`, which ``tests/test_chat_template.py``
keeps identical to that renderer. Any difference between the text a model is trained on and the text
it is prompted with (train/serve skew) is a bug, so no other template or formatting function is used
here, and the saved tokenizer carries the template for tools that render through it (vLLM, TRL).

Over-long dialogs are never cut: a row longer than ``max_length`` tokens would lose its last turns
(the answer), so such rows are dropped before training and their number is logged (a warning
naming the longest); if none is left the job fails. The default ``max_length`` (8192) is SmolLM2's
context window; synthesized dialogs measured 799-5920 tokens (median 2718, 90th percentile 3781) on
a 200-dialog ML-100K run, so by default nothing is dropped.

Devices: with a CUDA GPU, bf16 mixed precision (float32 weights; float32 on GPUs without bf16); without
one, float32 on the CPU (``use_cpu`` is set). The final model is saved in the base checkpoint's dtype.
With ``export_tokens`` the job stops after tokenizing and writes its training rows for
:mod:`recagent.rl.train_tokens`, which trains them where TRL is missing (a lent GPU machine).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers.trainer_utils import SchedulerType
from trl import SFTConfig

from recagent.errors import ConfigError, RecagentError
from recagent.paths import recagent_home
from recagent.rl.config_io import resolve_device, save_config

logger = logging.getLogger(__name__)

CONFIG_FILE = "sft_config.yaml"
RUN_FILE = "sft_run.json"
FINAL_DIR = "final"
DEFAULT_MAX_LENGTH = 8192  # SmolLM2's context; synthesized dialogs measured at most 5920 tokens
LORA_DEFAULT_TARGETS = "all-linear"  # peft: every linear layer but the output head


class SFTDataError(RecagentError):
    """The SFT data is missing, malformed or leaks test data into training."""


def default_output_dir() -> Path:
    """``$RECAGENT_HOME/runs/sft``."""
    return recagent_home() / "runs" / "sft"


@dataclass
class SFTJobConfig(SFTConfig):
    """TRL's ``SFTConfig`` with the data, base model and LoRA settings of a recagent SFT job.

    Every ``SFTConfig`` / ``TrainingArguments`` field is accepted as well (``learning_rate``,
    ``num_train_epochs``, ``save_steps``, ``eval_strategy``...); the defaults below suit the 135M default model.
    """

    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of a synthesis run (`recagent synth --out DIR`): trains on train.jsonl; test.jsonl "
            "is the eval set when eval_strategy is not 'no'."
        },
    )
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "Hugging Face causal LM folder to fine-tune; None = the offline SmolLM2-135M-Instruct "
            "(converted once from its GGUF)."
        },
    )
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (peft) instead of every weight."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (the update is scaled by alpha/r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] | str = field(
        default=LORA_DEFAULT_TARGETS,
        metadata={"help": "Modules that get adapters: 'all-linear' or a list of names, e.g. [q_proj, v_proj]."},
    )
    init_adapter: str | None = field(
        default=None,
        metadata={
            "help": "A LoRA adapter folder (peft) this run starts from instead of a fresh adapter: continue a "
            "policy on new or grown data in a new --out folder. Its own rank and targets apply, and its layers "
            "unless lora_layers_from reaches below them (then it is widened: the added layers start at zero)."
        },
    )
    lora_layers_from: int | None = field(
        default=None,
        metadata={
            "help": "Adapt only the decoder layers from this index up (None = all). The backward pass stops at "
            "the lowest adapted layer: with the top half, a CPU step takes about half the time."
        },
    )
    merge_lora: bool = field(
        default=True,
        metadata={
            "help": "Save the LoRA-merged model in final/ (loads like any checkpoint); false saves the adapter "
            "only (load it with the base model as an adapter)."
        },
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N training dialogs only; None = all."}
    )
    decision_samples: bool = field(
        default=False,
        metadata={
            "help": "Add, for every training dialog, a copy cut after its first assistant turn: a short sample "
            "whose only loss is the first decision (call which tool with what, or answer in words). "
            "With shared_prefix it costs ~1/10 of a whole dialog, so decisions get many more updates."
        },
    )
    whole_dialogs: float = field(
        default=1.0,
        metadata={
            "help": "With decision_samples: the seeded share of training dialogs also trained whole (1 = every "
            "one; 0 = first decisions only, the cheapest samples: ~60 tokens each after the tool block)."
        },
    )
    later_decisions: float = field(
        default=0.0,
        metadata={
            "help": "With decision_samples: the seeded share of dialogs with two or more assistant turns also "
            "added cut after a random later turn (>= 2): after a tool result the policy learns to answer, "
            "or to call again, and when to stop. First decisions alone taught a policy that kept calling "
            "to the step limit. Such a sample carries a tool result: ~5x a first decision's tokens."
        },
    )
    shared_tool_blocks_only: bool = field(
        default=False,
        metadata={
            "help": "With shared_prefix: drop the rows whose tool block fewer than per_device_train_batch_size "
            "rows share (e.g. tool-variant dialogs). Such a row runs its ~700-token tool block alone, "
            "~10x the cost of a decision sample in a shared batch; the drop is counted in the log."
        },
    )
    unshared_share: float = field(
        default=0.0,
        metadata={
            "help": "With shared_tool_blocks_only: keep this seeded share of the rows it would drop, batched "
            "among themselves. Those rows are the tool-variant dialogs; without any, the policy never reads "
            "an unfamiliar tool block in training. A batch of them costs ~7x a shared batch."
        },
    )
    export_tokens: str | None = field(
        default=None,
        metadata={
            "help": "Write the tokenized training rows (this job's row mix, template and assistant masks) to this "
            "file and stop, for `python rl/train_tokens.py` on a machine without TRL (a lent GPU)."
        },
    )
    loss_per: Literal["token", "turn"] = field(
        default="token",
        metadata={
            "help": "token: mean loss over assistant tokens; turn: mean over assistant turns of each turn's mean "
            "token loss, so a short tool call (whose name and arguments are the decision) weighs as much "
            "as a long answer that copies tool results. turn needs shared_prefix: true."
        },
    )
    length_sorted_batches: bool = field(
        default=True,
        metadata={
            "help": "With shared_prefix: batch rows of similar length (less padding). Short decision samples of "
            "one length are often one kind of turn (greetings, clarifications), so such batches pull the "
            "call-or-words decision one way at a time; false batches rows at random within their tool block."
        },
    )
    length_band: int = field(
        default=0,
        metadata={
            "help": "With length_sorted_batches=false: batch rows at random within bands of this many tokens "
            "(0: no bands). A batch pads every row to its longest, so one long row among short "
            "decisions costs a batch of long rows; 256 keeps decisions together and later turns apart."
        },
    )
    first_token_weight: float = field(
        default=0.0,
        metadata={
            "help": "With loss_per=turn: add this weight times the loss of each assistant turn's first token, "
            "which decides between a tool call and words. Within a turn's mean it is one token of ~30, and "
            "a fresh adapter learned the call tokens (mean loss 0.22) while still opening most turns in words."
        },
    )
    name_token_weight: float = field(
        default=0.0,
        metadata={
            "help": "With loss_per=turn: add this weight times the summed loss of each assistant turn's tool-name "
            "tokens, the ones that choose the tool. Within a turn's mean they are 2-3 tokens of ~30, and the "
            "wrong tool was the most common failure of call turns (76 of 162 for sft_chains at 120 updates)."
        },
    )
    shared_prefix: bool = field(
        default=False,
        metadata={
            "help": "Run the token prefix all dialogs of a batch share (the tool block) once per batch instead "
            "of once per dialog; same loss and gradients, ~2x less work on a CPU with batches of 8 "
            "(see recagent.rl.shared_prefix)."
        },
    )

    # SFTConfig / TrainingArguments fields whose defaults differ here
    output_dir: str | None = field(
        default=None, metadata={"help": "Checkpoints and final/ go here; None = $RECAGENT_HOME/runs/sft."}
    )
    assistant_only_loss: bool = field(
        default=True,
        metadata={"help": "Loss on the assistant's tokens only (system, user and tool turns are context)."},
    )
    max_length: int | None = field(
        default=DEFAULT_MAX_LENGTH,
        metadata={"help": "Longest dialog in tokens; longer dialogs are dropped (and counted), never truncated."},
    )
    learning_rate: float = field(
        default=5e-5, metadata={"help": "Peak AdamW learning rate (suits full fine-tuning; use ~2e-4 with LoRA)."}
    )
    lr_scheduler_type: SchedulerType | str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up steps; below 1, a share of all steps."})
    per_device_train_batch_size: int = field(
        default=1, metadata={"help": "Dialogs per device per step (1: no padding; dialogs are 1-6k tokens)."}
    )
    per_device_eval_batch_size: int = field(default=1, metadata={"help": "Dialogs per device per eval step."})
    gradient_accumulation_steps: int = field(
        default=8, metadata={"help": "Steps whose gradients add up to one update."}
    )
    activation_checkpointing: bool | None = field(
        default=True,
        metadata={"help": "Recompute activations in the backward pass (less memory, about a fifth slower)."},
    )
    save_steps: float = field(default=100, metadata={"help": "Save a checkpoint every N updates (resume point)."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep only the latest N checkpoints."})

    def __post_init__(self) -> None:
        if self.output_dir is None:
            self.output_dir = str(default_output_dir())
        if self.data_dir is None:
            raise ConfigError("data_dir is not set: pass --data DIR, a folder written by `recagent synth --out DIR`")
        if self.first_token_weight < 0:
            raise ConfigError(f"first_token_weight is a loss weight: 0 or more, got {self.first_token_weight}")
        if self.first_token_weight and self.loss_per != "turn":
            raise ConfigError("first_token_weight weighs each assistant turn's first token: set loss_per=turn")
        if self.name_token_weight < 0:
            raise ConfigError(f"name_token_weight is a loss weight: 0 or more, got {self.name_token_weight}")
        if self.name_token_weight and self.loss_per != "turn":
            raise ConfigError("name_token_weight weighs each assistant turn's tool-name tokens: set loss_per=turn")
        if self.loss_per == "turn" and not self.shared_prefix:
            raise ConfigError("loss_per=turn is computed by the shared-prefix loss: set shared_prefix=true as well")
        if not 0 <= self.whole_dialogs <= 1:
            raise ConfigError(f"whole_dialogs is a share of the dialogs: between 0 and 1, got {self.whole_dialogs}")
        if not 0 <= self.later_decisions <= 1:
            raise ConfigError(f"later_decisions is a share of the dialogs: between 0 and 1, got {self.later_decisions}")
        if self.later_decisions and not self.decision_samples:
            raise ConfigError("later_decisions adds decision samples: set decision_samples=true as well")
        if self.length_band < 0:
            raise ConfigError(f"length_band is a width in tokens: 0 (no bands) or more, got {self.length_band}")
        if self.whole_dialogs < 1 and not self.decision_samples:
            raise ConfigError(
                "whole_dialogs < 1 leaves dialogs out unless decision_samples=true adds their decisions: "
                "set decision_samples=true, or whole_dialogs=1"
            )
        if not 0 <= self.unshared_share <= 1:
            raise ConfigError(
                f"unshared_share is a share of the dropped rows: between 0 and 1, got {self.unshared_share}"
            )
        if self.unshared_share and not self.shared_tool_blocks_only:
            raise ConfigError(
                "unshared_share keeps part of what shared_tool_blocks_only drops: set shared_tool_blocks_only=true "
                "(without it every row is kept)"
            )
        if self.shared_tool_blocks_only and not self.shared_prefix:
            raise ConfigError(
                "shared_tool_blocks_only groups rows by the shared-prefix sampler: set shared_prefix=true"
            )
        data = Path(self.data_dir).expanduser().resolve()
        if not (data / "train.jsonl").is_file():
            raise ConfigError(
                f"data_dir {data} has no train.jsonl: create it with `recagent synth --n 1000 --out {data}`"
            )
        self.data_dir = str(data)
        if self.base_model is not None:
            base = Path(self.base_model).expanduser().resolve()
            if not (base / "config.json").is_file():
                raise ConfigError(
                    f"base_model {base} is not a Hugging Face checkpoint folder (no config.json); "
                    "leave it unset for the offline SmolLM2-135M-Instruct"
                )
            self.base_model = str(base)
        if self.init_adapter is not None:
            adapter = Path(self.init_adapter).expanduser().resolve()
            if not self.use_lora:
                raise ConfigError("init_adapter continues a LoRA adapter: set use_lora=true as well")
            if not (adapter / "adapter_config.json").is_file():
                raise ConfigError(f"init_adapter {adapter} is not a peft adapter folder (no adapter_config.json)")
            self.init_adapter = str(adapter)
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(f"max_samples must be >= 1 or null (all), got {self.max_samples}")
        if self.max_length is not None and self.max_length < 16:
            raise ConfigError(
                f"max_length {self.max_length} is too small for a dialog; the default is {DEFAULT_MAX_LENGTH}"
            )
        if self.use_lora and (self.lora_r < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1):
            raise ConfigError("LoRA needs lora_r >= 1, lora_alpha > 0 and 0 <= lora_dropout < 1")
        if self.packing:
            raise ConfigError(
                "packing=true is not supported: every dialog is trained whole, one per sequence "
                "(padding_free=true with a flash-attention model saves the padding instead)"
            )
        if self.eval_strategy not in ("no", None) and not (data / "test.jsonl").is_file():
            raise ConfigError(f"eval_strategy={self.eval_strategy} needs {data / 'test.jsonl'}; set eval_strategy=no")
        resolve_device(self)
        super().__post_init__()


# -- data -----------------------------------------------------------------------------------------------------------


def _read_rows(path: Path) -> list[dict[str, Any]]:
    from recagent.dialogs import read_rows

    rows = read_rows(path)
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
            raise SFTDataError(f"{path}, line {i}: expected a JSON object with a 'messages' list (OpenAI format)")
    return rows


def _dialog_id(row: dict[str, Any]) -> str:
    from recagent.dialogs import dedup_key

    return row.get("id") or dedup_key(row["messages"], row.get("tools") or [])


def check_no_leakage(
    data_dir: str | Path, train: list[dict[str, Any]], test: list[dict[str, Any]], split: Any = None
) -> None:
    """Refuse data whose train rows share a dialog or a user with the test rows (or ``validation.jsonl``'s), or
    leak what ``find_leaks`` finds, or whose user turns copy a held-out chat request
    (:func:`recagent.heldout_requests.find_request_leaks`).

    ``split`` is the leave-one-out split of the run's dataset; None loads it from the run's
    ``config.yaml`` when possible (else only the dialog/user check runs, with a warning).
    """
    data_dir = Path(data_dir)
    _check_heldout_requests(data_dir, train)
    problems = []

    def users(rows: list[dict[str, Any]]) -> set[str]:
        return {str(u) for r in rows if (u := (r.get("meta") or {}).get("user_id")) is not None}

    # validation dialogs (a synthesis run's validation_n) choose checkpoints: training must not see them either
    held_out = {"test": test, "validation": _read_rows(data_dir / "validation.jsonl")}
    for name, rows in held_out.items():
        shared_ids = sorted({_dialog_id(r) for r in train} & {_dialog_id(r) for r in rows})
        if shared_ids:
            problems.append(
                f"{len(shared_ids)} dialog(s) are in both train.jsonl and {name}.jsonl, e.g. {shared_ids[:3]}"
            )
        shared_users = sorted(users(train) & users(rows))
        if shared_users:
            problems.append(f"{len(shared_users)} user(s) have dialogs in train and {name}, e.g. {shared_users[:5]}")
    if not problems and test and all("meta" in r for r in train + test):
        split = split if split is not None else _load_split(data_dir)
        if split is not None:
            from recagent.agents.training_leaks import find_leaks
            from recagent.dialogs import Sample

            try:
                problems = find_leaks([Sample.from_row(r) for r in train], [Sample.from_row(r) for r in test], split)
            except (KeyError, TypeError, ValueError) as e:
                raise SFTDataError(f"{data_dir}: rows are not synthesized samples ({type(e).__name__}: {e})") from None
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise SFTDataError(
            f"{data_dir} leaks test data into training: "
            + "; ".join(problems[:3])
            + more
            + ". Regenerate it with `recagent synth --out NEW_DIR` instead of mixing runs"
        )


def _check_heldout_requests(data_dir: Path, train: list[dict[str, Any]]) -> None:
    """Refuse a training row whose user turn copies one of the evaluation's hand-written chat requests."""
    from recagent.heldout_requests import first_row_leak

    found = first_row_leak(train)
    if found is not None:
        line, leak = found
        raise SFTDataError(
            f"{data_dir / 'train.jsonl'}, line {line}: a user turn {leak.describe()}; held-out "
            "evaluation requests must not be trained on (drop that dialog or regenerate the data)"
        )


def _load_split(data_dir: Path) -> Any:
    cfg_path = data_dir / "config.yaml"
    try:
        import yaml

        name = ((yaml.safe_load(cfg_path.read_text()) or {}).get("tools") or {}).get("dataset")
        if not name:
            raise ValueError("no tools.dataset")
        from recagent.tools.data import leave_one_out, load_dataset

        dataset = load_dataset(name)
        made_from = data_dir / "dataset.json"
        if made_from.is_file() and json.loads(made_from.read_text()).get("name") != dataset.name:
            raise ValueError(
                f"the run was made from dataset {json.loads(made_from.read_text()).get('name')!r}, "
                f"config.yaml names {dataset.name!r}"
            )
        return leave_one_out(dataset)
    except Exception as e:  # the data folder may travel without its dataset (e.g. to a GPU box)
        logger.warning(
            "full leakage check skipped (%s: %s); checked only that train and test share no dialog or user",
            type(e).__name__,
            str(e).split("\n")[0],
        )
        return None


def _load_json_dataset(path: Path, limit: int | None) -> Any:
    import datasets

    ds = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(recagent_home() / "cache" / "datasets")
    )
    missing = {"messages", "tools"} - set(ds.column_names)
    if missing:
        raise SFTDataError(f"{path}: rows have no {sorted(missing)} (expected OpenAI-format messages and tools)")
    ds = ds.select_columns(["messages", "tools"])
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    return ds


def cut_after_turn(row: dict[str, Any], turn: int) -> dict[str, Any]:
    """The dialog cut after its ``turn``-th assistant turn (1-based; the whole dialog if it has fewer)."""
    messages = row["messages"]
    ends = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    end = ends[min(turn, len(ends)) - 1] + 1 if ends else len(messages)
    return {"messages": messages[:end], "tools": row["tools"]}


def first_decision(row: dict[str, Any]) -> dict[str, Any]:
    """The dialog cut after its first assistant turn (the decision: which call, or a reply in words)."""
    return cut_after_turn(row, 1)


def _with_decision_samples(ds: Any, whole_share: float = 1.0, seed: int = 0, later_share: float = 0.0) -> Any:
    """Every dialog's first decision, a seeded ``whole_share`` of the dialogs whole, and a seeded ``later_share``
    of the dialogs with 2+ assistant turns cut after a random later turn."""
    import datasets

    rng = random.Random(seed)
    n_whole = round(whole_share * len(ds))
    parts = [ds.select(sorted(rng.sample(range(len(ds)), n_whole))), ds.map(first_decision)]
    if later_share:
        turns = [sum(m["role"] == "assistant" for m in messages) for messages in ds["messages"]]
        several = [i for i, n in enumerate(turns) if n >= 2]
        chosen = sorted(rng.sample(several, round(later_share * len(several))))
        cut = {i: rng.randint(2, turns[i]) for i in chosen}
        later = ds.select(chosen).map(lambda row, j: cut_after_turn(row, cut[chosen[j]]), with_indices=True)
        parts.append(later)
    return datasets.concatenate_datasets(parts)


def _drop_unshared_blocks(ds: Any, batch_size: int, keep_share: float = 0.0, seed: int = 0) -> tuple[Any, int]:
    """Rows whose tool block (their first tokens) at least ``batch_size`` rows share, plus a seeded
    ``keep_share`` of the others; and how many were dropped."""
    from recagent.rl.shared_prefix import block_keys

    keys = block_keys(ds["input_ids"])
    counts = collections.Counter(keys)
    keep = [i for i, k in enumerate(keys) if counts[k] >= batch_size]
    unshared = [i for i, k in enumerate(keys) if counts[k] < batch_size]
    kept_unshared = sorted(random.Random(seed).sample(unshared, round(keep_share * len(unshared))))
    dropped = len(unshared) - len(kept_unshared)
    if unshared:
        logger.info(
            "dropped %d of %d rows whose tool block fewer than %d rows share (shared_tool_blocks_only); kept %d "
            "of them (unshared_share)",
            dropped,
            len(keys),
            batch_size,
            len(kept_unshared),
        )
    return (ds.select(sorted(keep + kept_unshared)) if dropped else ds), dropped


def turn_decisions(messages: list[dict[str, Any]]) -> list[str]:
    """What each assistant turn of a dialog decides, and after what (``call after tool``, ``words after user``, ...)."""
    out = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and i:
            after = "tool" if messages[i - 1]["role"] == "tool" else "user"
            out.append(f"{'call' if m.get('tool_calls') else 'words'} after {after}")
    return out


def _drop_too_long(
    ds: Any, max_length: int | None, name: str, decisions: Callable[[], list[list[str]]] | None = None
) -> tuple[Any, dict[str, Any]]:
    """``ds`` without its rows over ``max_length`` tokens, and what was dropped; with ``decisions`` (each row's
    :func:`turn_decisions`, asked for only when rows are dropped), also the dropped share of each kind of turn."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(ds.with_format("arrow")["input_ids"]).to_pylist()  # no Python copy of the tokens
    info: dict[str, Any] = {"rows": len(lengths), "longest_tokens": max(lengths, default=0), "dropped": 0}
    if max_length is None:
        return ds, info
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    info["dropped"] = len(lengths) - len(keep)
    if info["dropped"]:
        logger.warning(
            "dropped %d of %d %s dialogs longer than max_length=%d tokens (longest: %d); they are never truncated, "
            "raise max_length to keep them",
            info["dropped"],
            len(lengths),
            name,
            max_length,
            info["longest_tokens"],
        )
        turns = decisions() if decisions is not None else None
        if turns is not None and len(turns) == len(lengths):
            # long rows are not a random sample: a chain's next call comes after a long tool result, and a
            # max_length of 1280 dropped three in four of them (the policy then answered where it had to call)
            kept = set(keep)
            every = collections.Counter(d for row in turns for d in row)
            lost = collections.Counter(d for i, row in enumerate(turns) if i not in kept for d in row)
            info["dropped_turns"] = {d: [lost[d], every[d]] for d in sorted(every) if lost[d]}
            logger.warning(
                "the dropped %s dialogs held these assistant turns (dropped of all): %s",
                name,
                ", ".join(f"{d} {a} of {b} ({a / b:.0%})" for d, (a, b) in info["dropped_turns"].items()),
            )
        ds = ds.select(keep)
    info["rows"] = len(keep)
    return ds, info


# -- training -------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_progress(quiet: bool) -> Iterator[None]:
    import datasets
    from transformers.utils import logging as hf_logging

    was_ds, was_hf = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    if quiet:
        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was_ds else datasets.disable_progress_bars)()
        (hf_logging.enable_progress_bar if was_hf else hf_logging.disable_progress_bar)()


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest-numbered complete ``checkpoint-N`` folder (it holds ``trainer_state.json``), if any."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    found = []
    for p in folder.glob("checkpoint-*"):
        step = p.name.removeprefix("checkpoint-")
        if p.is_dir() and step.isdigit():
            if (p / "trainer_state.json").is_file():
                found.append((int(step), p))
            else:
                logger.warning("ignoring incomplete checkpoint %s (no trainer_state.json)", p)
    return max(found)[1] if found else None


def _continue_schedule(state: Any, optimizer: Any, scheduler: Any) -> None:
    """On resume, take the learning rate of the first step from this run's schedule.

    The optimizer state restored from a checkpoint holds the rate its own schedule set last; when
    ``max_steps`` (or the epochs) changed since, that is the wrong rate, e.g. 0 at the end of a cosine
    decay, and the first resumed update would be lost. With an unchanged schedule this is a no-op.
    """
    import torch

    scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps it
    if state.global_step == 0 or optimizer is None or not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        return
    rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = rates


RESUME_FIELDS = (
    "data_dir",
    "base_model",
    "max_samples",
    "use_lora",
    "lora_r",
    "lora_alpha",
    "lora_target_modules",
    "lora_layers_from",
    "init_adapter",
)


def _check_resume(cfg: SFTJobConfig, checkpoint: Path) -> None:
    """A checkpoint is resumed only by a job on the same data and model (the schedule and step budget may change)."""
    import yaml

    saved_path = checkpoint / CONFIG_FILE
    if not saved_path.is_file():
        return
    try:
        saved = yaml.safe_load(saved_path.read_text()) or {}
    except yaml.YAMLError:
        return
    from recagent.rl.config_io import config_to_dict

    now = config_to_dict(cfg)
    diff = [k for k in RESUME_FIELDS if k in saved and saved[k] != now.get(k)]
    if diff:
        raise ConfigError(
            f"{cfg.output_dir} holds a run with other {', '.join(diff)} ({checkpoint.name}: "
            + ", ".join(f"{k}={saved[k]!r}" for k in diff)
            + "); resume with the same settings or choose a new --out folder"
        )


def _callbacks(cfg: SFTJobConfig) -> tuple[list[Any], dict[str, int]]:
    from transformers import TrainerCallback

    counts = {"steps": 0}

    class _Record(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            _continue_schedule(state, optimizer, lr_scheduler)

        def on_step_end(self, args, state, control, **kwargs):
            counts["steps"] += 1

        def on_save(self, args, state, control, **kwargs):  # every checkpoint carries the config that made it
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir() and state.is_world_process_zero:
                save_config(cfg, ckpt / CONFIG_FILE)

    return [_Record()], counts


def _load_model(cfg: SFTJobConfig, base: Path) -> tuple[Any, Any, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from recagent.agents.chat_template import apply_tool_template
    from recagent.agents.local_model import LocalModelError, _offline

    with _offline():
        try:
            tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
            saved_dtype = getattr(AutoConfig.from_pretrained(base, local_files_only=True), "dtype", None)
            # float32 master weights on every device; bf16 on CUDA is autocast (mixed precision)
            model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, local_files_only=True)
        except (OSError, ValueError) as e:
            raise LocalModelError(f"cannot load the base model at {base}: {str(e).splitlines()[0]}") from e
    apply_tool_template(tokenizer)
    if isinstance(saved_dtype, str):
        saved_dtype = getattr(torch, saved_dtype, None)
    return model, tokenizer, saved_dtype if isinstance(saved_dtype, torch.dtype) else torch.float32


def _peft_config(cfg: SFTJobConfig, model: Any = None) -> Any:
    if not cfg.use_lora:
        return None
    try:
        from peft import LoraConfig
    except ImportError as e:
        raise ConfigError("use_lora=true needs peft: run `pip install peft`") from e
    targets = cfg.lora_target_modules
    layers = None
    if cfg.lora_layers_from is not None and model is not None:
        n_layers = int(model.config.num_hidden_layers)
        if not 0 <= cfg.lora_layers_from < n_layers:
            raise ConfigError(
                f"lora_layers_from={cfg.lora_layers_from} is not a layer of this model (0..{n_layers - 1})"
            )
        layers = list(range(cfg.lora_layers_from, n_layers))
        if isinstance(targets, str):  # peft takes a layer range only with named modules: name every linear one
            from recagent.rl.train_tokens import linear_module_names

            targets = linear_module_names(model)
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        task_type="CAUSAL_LM",
        target_modules=targets if isinstance(targets, str) else list(targets),
        layers_to_transform=layers,
    )


def train_sft(cfg: SFTJobConfig, split: Any = None) -> Path:
    """Fine-tune on ``cfg.data_dir`` (resuming from the latest checkpoint) and return ``output_dir/final``.

    ``split``: the leave-one-out split of the synthesis run's dataset for the leakage check (None: loaded
    from the run's config.yaml when available).
    """
    from trl import SFTTrainer

    from recagent.agents.local_model import ensure_default_model

    t0 = time.perf_counter()
    data = Path(cfg.data_dir)
    out = Path(cfg.output_dir)
    train_rows = _read_rows(data / "train.jsonl")
    test_rows = _read_rows(data / "test.jsonl") if (data / "test.jsonl").is_file() else []
    if not train_rows:
        raise SFTDataError(f"{data / 'train.jsonl'} holds no dialogs: run `recagent synth --out {data}` to make some")
    check_no_leakage(data, train_rows, test_rows, split)
    del train_rows, test_rows
    resume = latest_checkpoint(out)
    if resume is not None:
        _check_resume(cfg, resume)

    with _quiet_progress(bool(cfg.disable_tqdm)):
        base = Path(cfg.base_model) if cfg.base_model else ensure_default_model(progress=not cfg.disable_tqdm)
        model, tokenizer, save_dtype = _load_model(cfg, base)
        peft_config = _peft_config(cfg, model)
        if cfg.init_adapter:  # the trainer takes a peft model as is (a resumed checkpoint then loads over it)
            from recagent.rl.train_tokens import continue_adapter

            model, peft_config = continue_adapter(model, cfg.init_adapter, cfg.lora_layers_from), None
        context = getattr(model.config, "max_position_embeddings", None)
        if cfg.max_length and context and cfg.max_length > context:
            logger.warning("max_length=%d exceeds the model's context (%d positions)", cfg.max_length, context)
        train_ds = _load_json_dataset(data / "train.jsonl", cfg.max_samples)
        if cfg.decision_samples:
            train_ds = _with_decision_samples(train_ds, cfg.whole_dialogs, cfg.seed, cfg.later_decisions)
        eval_ds = _load_json_dataset(data / "test.jsonl", None) if cfg.eval_strategy != "no" else None
        total = sum(
            p.numel() for n, p in model.named_parameters() if "lora_" not in n
        )  # the base model (init_adapter: wrapped)

        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / CONFIG_FILE)
        callbacks, counts = _callbacks(cfg)
        # TRL would truncate rows longer than max_length; tokenize without a limit and drop those rows instead
        max_length, cfg.max_length = cfg.max_length, None
        try:
            trainer_class = SFTTrainer
            if cfg.shared_prefix:
                from recagent.rl.shared_prefix import SharedPrefixSFTTrainer as trainer_class
            trainer = trainer_class(
                model=model,
                args=cfg,
                train_dataset=train_ds,
                eval_dataset=eval_ds,
                processing_class=tokenizer,
                peft_config=peft_config,
                callbacks=callbacks,
            )
        finally:
            cfg.max_length = max_length
        trainer.train_dataset, train_info = _drop_too_long(
            trainer.train_dataset, max_length, "training", lambda: [turn_decisions(m) for m in train_ds["messages"]]
        )
        if train_info["rows"] == 0:
            raise SFTDataError(f"every training dialog is longer than max_length={max_length} tokens; raise max_length")
        if cfg.shared_tool_blocks_only:
            trainer.train_dataset, train_info["unshared_dropped"] = _drop_unshared_blocks(
                trainer.train_dataset, cfg.per_device_train_batch_size, cfg.unshared_share, cfg.seed
            )
            train_info["rows"] = len(trainer.train_dataset)
            if train_info["rows"] == 0:
                raise SFTDataError(
                    "no tool block is shared by per_device_train_batch_size rows: set "
                    "shared_tool_blocks_only=false or a smaller batch"
                )
        eval_info = None
        if trainer.eval_dataset is not None:
            trainer.eval_dataset, eval_info = _drop_too_long(trainer.eval_dataset, max_length, "eval")
            if eval_info["rows"] == 0:
                raise SFTDataError(
                    f"every eval dialog is longer than max_length={max_length} tokens; raise max_length "
                    "or set eval_strategy=no"
                )
        if cfg.export_tokens:
            return _export_tokens(cfg, trainer, tokenizer, base, train_info)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        logger.info(
            "training on %d dialogs (longest %d tokens) from %s; %s of %s parameters trainable; %s",
            train_info["rows"],
            train_info["longest_tokens"],
            data,
            f"{trainable:,}",
            f"{total:,}",
            f"resuming from {resume.name}" if resume else "starting fresh",
        )
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)

        final_model = trainer.model
        if cfg.use_lora and cfg.merge_lora:
            final_model = final_model.merge_and_unload()
        if not cfg.use_lora or cfg.merge_lora:
            final_model = final_model.to(save_dtype)
        final = out / FINAL_DIR
        tmp = out / f".{FINAL_DIR}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        final_model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        save_config(cfg, tmp / CONFIG_FILE)
        run = {
            "base_model": str(base),
            "data_dir": str(data),
            "train": train_info,
            "eval": eval_info,
            "resumed_from": resume.name if resume else None,
            "global_step": trainer.state.global_step,
            "steps_this_run": counts["steps"],
            "trainable_params": trainable,
            "total_params": total,
            "lora": {"merged": cfg.merge_lora} if cfg.use_lora else None,
            "saved_dtype": str(save_dtype),
            "seconds": round(time.perf_counter() - t0, 1),
            "log_history": trainer.state.log_history,
        }
        (tmp / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    logger.info("saved the fine-tuned %s to %s", "adapter" if cfg.use_lora and not cfg.merge_lora else "model", final)
    return final


def _export_tokens(cfg: SFTJobConfig, trainer: Any, tokenizer: Any, base: Path, train_info: dict[str, Any]) -> Path:
    """Write the trainer's tokenized training rows for :mod:`recagent.rl.train_tokens` and return the file."""
    from recagent.rl.config_io import config_to_dict
    from recagent.rl.train_tokens import write_token_rows

    meta = {
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        "base_model": str(base),
        "train": train_info,
        "sft_config": config_to_dict(cfg),
    }
    written = write_token_rows(trainer.train_dataset, cfg.export_tokens, meta)
    logger.info(
        "wrote %d rows (%d tokens, %d bytes) to %s",
        written["rows"],
        written["tokens"],
        written["bytes"],
        cfg.export_tokens,
    )
    return Path(cfg.export_tokens)


def load_sft_config(path: str | Path | None = None, overrides: list[str] | None = None, **values: Any) -> SFTJobConfig:
    """An :class:`SFTJobConfig` from YAML, keyword values and ``key=value`` overrides (one-line errors)."""
    from recagent.rl.config_io import load_config

    return load_config(SFTJobConfig, path, overrides or (), {k: v for k, v in values.items() if v is not None})


__all__ = [
    "SFTDataError",
    "SFTJobConfig",
    "check_no_leakage",
    "default_output_dir",
    "latest_checkpoint",
    "load_sft_config",
    "train_sft",
]
