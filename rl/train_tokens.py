"""Train a LoRA adapter on exported token rows with transformers + peft alone (``python rl/train_tokens.py``).

Why a second trainer: a lent GPU machine here has torch, transformers and peft but neither TRL, datasets nor
recagent, and no network to install them. ``recagent train sft -o export_tokens=FILE`` tokenizes the rows
exactly as the TRL job would (the one chat template, its assistant masks, the job's row mix, over-long rows
dropped) and writes them with :func:`write_token_rows`; this module reads only that file and the base model,
so it runs as a plain script on such a machine. It trains with ``transformers.Trainer`` (checkpoints,
resume, bf16 autocast, the schedule) and its checkpoints are peft adapter folders, which ``recagent train
ship`` and ``benchmarks/policy_checkpoints.py`` read like the SFT job's.

Keep the imports to numpy, torch, transformers and peft: that is what makes it run there.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import lzma
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "recagent-token-rows-1"
SCHEDULER = "cosine_with_min_lr"  # the learning-rate schedule of every run (the model card names it)
CONFIG_FILE = "train_tokens_config.json"
RUN_FILE = "train_tokens_run.json"


def write_token_rows(rows: Any, path: str | Path, meta: dict[str, Any]) -> dict[str, int]:
    """Write rows of ``input_ids`` + ``labels`` (-100: no loss) or ``assistant_masks`` (a datasets.Dataset or
    dicts) as one xz-packed file of ids and loss masks."""
    ids, masks, offsets = [], [], [0]
    for row in rows:
        ids.append(np.asarray(row["input_ids"], dtype=np.int64))
        if "labels" in row:
            labels = np.asarray(row["labels"], dtype=np.int64)
            keep = labels != -100
            if labels.shape != ids[-1].shape or (labels[keep] != ids[-1][keep]).any():
                raise ValueError(f"row {len(offsets) - 1}: labels are not the row's own ids (shifted or other)")
            masks.append(keep.astype(np.uint8))
        else:
            masks.append(np.asarray(row["assistant_masks"], dtype=np.uint8))
        if len(ids[-1]) != len(masks[-1]):
            raise ValueError(f"row {len(offsets) - 1}: {len(ids[-1])} tokens but {len(masks[-1])} mask values")
        offsets.append(offsets[-1] + len(ids[-1]))
    flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    dtype = np.uint16 if flat.size == 0 or flat.max() < 2**16 else np.int32  # SmolLM2's 49,152 ids fit 16 bits
    buf = io.BytesIO()
    meta = {**meta, "format": FORMAT, "rows": len(ids), "tokens": int(offsets[-1])}
    np.savez(
        buf,
        input_ids=flat.astype(dtype),
        assistant_masks=np.concatenate(masks) if masks else np.zeros(0, np.uint8),
        offsets=np.asarray(offsets, np.int64),
        meta=np.asarray(json.dumps(meta)),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # xz with a large window: the rows repeat the same tool block, which deflate's 32 KB window misses
    tmp.write_bytes(lzma.compress(buf.getvalue(), preset=6))
    tmp.replace(path)
    return {"rows": meta["rows"], "tokens": meta["tokens"], "bytes": path.stat().st_size}


@dataclass
class TokenRows:
    """Token rows read back from :func:`write_token_rows`: row ``i`` is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray
    masks: np.ndarray
    offsets: np.ndarray
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The token ids and the assistant mask of row ``i``."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.masks[a:b]


def read_token_rows(path: str | Path) -> TokenRows:
    """Read a file of :func:`write_token_rows`; a file of another kind is a ValueError naming it."""
    try:
        data = np.load(io.BytesIO(lzma.decompress(Path(path).read_bytes())), allow_pickle=False)
        meta = json.loads(str(data["meta"]))
    except (OSError, lzma.LZMAError, ValueError, KeyError) as e:
        raise ValueError(f"{path} is not a token-rows file of `recagent train sft -o export_tokens=...`: {e}") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, this trainer reads {FORMAT!r}")
    return TokenRows(data["input_ids"], data["assistant_masks"], data["offsets"], meta)


@dataclass
class TokenTrainConfig:
    """One LoRA run on exported token rows (every field is also a --flag)."""

    tokens: str = field(metadata={"help": "the file written by `recagent train sft -o export_tokens=FILE`"})
    base: str = field(metadata={"help": "base model: a Hugging Face folder or a .gguf file (dequantized)"})
    out: str = field(metadata={"help": "run folder: checkpoint-N/ adapters, the config and the run log"})
    init_adapter: str = field(
        default="",
        metadata={
            "help": "continue this LoRA adapter folder (its rank, alpha and modules apply) instead of a fresh one; "
            "an adapter of fewer layers is widened to lora_layers_from and up (so, by default, to all)"
        },
    )
    cpu_bf16: int = field(
        default=0,
        metadata={"help": "1: bf16 autocast on a CPU with native bf16 (AMX/AVX512-BF16; about 2x faster there)"},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator"})
    lora_layers_from: int = field(default=0, metadata={"help": "adapt decoder layers from this index up"})
    learning_rate: float = field(default=5e-4, metadata={"help": "peak learning rate"})
    min_lr_rate: float = field(default=0.1, metadata={"help": "cosine floor as a share of the peak"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up updates"})
    epochs: float = field(
        default=3.0, metadata={"help": "passes over the rows: the data order, and the schedule unless max_steps"}
    )
    max_steps: int = field(
        default=0, metadata={"help": "updates (the schedule's length); 0 = epochs x rows / batch_size"}
    )
    batch_size: int = field(default=16, metadata={"help": "rows per update"})
    micro_batch: int = field(
        default=0,
        metadata={"help": "rows per forward pass (gradients accumulate to batch_size; less memory); 0 = batch_size"},
    )
    saves: int = field(default=4, metadata={"help": "checkpoints, evenly spaced over the schedule"})
    time_budget_s: float = field(
        default=0.0,
        metadata={
            "help": "seconds this run may take, loading included: the schedule is shortened to the updates that "
            "fit (timed on a few batches first) and training stops there regardless; 0 = no limit"
        },
    )
    seed: int = field(default=0, metadata={"help": "data order and LoRA init"})

    def __post_init__(self) -> None:
        if self.lora_r < 1 or self.lora_alpha <= 0:
            raise ValueError("lora_r must be >= 1 and lora_alpha > 0")
        if self.epochs <= 0 or self.batch_size < 1 or self.saves < 1 or self.max_steps < 0:
            raise ValueError("epochs > 0, batch_size >= 1, saves >= 1 and max_steps >= 0 are needed")
        if self.micro_batch < 0 or (self.micro_batch and self.batch_size % self.micro_batch):
            raise ValueError(f"micro_batch={self.micro_batch} must divide batch_size={self.batch_size}")
        if not 0 <= self.min_lr_rate <= 1:
            raise ValueError(f"min_lr_rate is a share of the peak learning rate (0..1), got {self.min_lr_rate}")


def length_grouped_order(lengths: np.ndarray, batch_size: int, epochs: int, seed: int) -> np.ndarray:
    """Row indices for ``epochs`` passes, each a seeded shuffle cut into batches of like length (the rows of
    every 64 batches sorted by length), the batches in a seeded random order: little padding, no length bias."""
    rng = np.random.default_rng(seed)
    batches: list[np.ndarray] = []
    for _ in range(epochs):
        perm = rng.permutation(len(lengths))
        span = batch_size * 64
        for start in range(0, len(perm), span):
            chunk = perm[start : start + span]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            epoch_batches = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            batches.extend(epoch_batches[j] for j in rng.permutation(len(epoch_batches)))
    return np.concatenate(batches) if batches else np.zeros(0, np.int64)


class _Rows:
    """The torch-style dataset that ``Trainer`` reads in order: row ``order[i]`` at position ``i``."""

    def __init__(self, rows: TokenRows, order: np.ndarray):
        self.rows, self.order = rows, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        ids, mask = self.rows.row(int(self.order[i]))
        return {"input_ids": ids, "assistant_masks": mask}


def _collate(pad_id: int):
    import torch

    def collate(batch: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        attention = torch.zeros((len(batch), n), dtype=torch.long)
        for j, b in enumerate(batch):
            row = torch.from_numpy(b["input_ids"].astype(np.int64))
            mask = torch.from_numpy(b["assistant_masks"].astype(bool))
            ids[j, : len(row)] = row
            attention[j, : len(row)] = 1
            labels[j, : len(row)] = torch.where(mask, row, torch.full_like(row, -100))  # loss on the assistant only
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}

    return collate


def padded_tokens_per_batch(lengths: np.ndarray, order: np.ndarray, batch_size: int) -> float:
    """Mean tokens a batch of ``order`` computes, padding included (every row padded to its batch's longest)."""
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return float(np.mean([lengths[b].max() * len(b) for b in batches])) if batches else 0.0


def seconds_per_token(model: Any, dataset: Any, collate: Any, batch_size: int, bf16: bool, batches: int = 6) -> float:
    """Seconds per padded token of a forward + backward pass, timed on the first batches (after two warm-ups)."""
    import torch

    device = next(model.parameters()).device
    timed = tokens = 0.0
    available = math.ceil(len(dataset) / batch_size)
    warm = 2 if available > 2 else 0  # too few rows to spare warm-ups: time them all
    for k in range(min(batches + warm, available)):
        batch = collate([dataset[i] for i in range(k * batch_size, min((k + 1) * batch_size, len(dataset)))])
        batch = {n: t.to(device) for n, t in batch.items()}
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(**batch).loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k >= warm:
            timed += time.perf_counter() - start
            tokens += batch["input_ids"].numel()
    model.zero_grad(set_to_none=True)
    return timed / max(tokens, 1.0)


def load_base(base: str | Path) -> Any:
    """The base causal LM in float32 (master weights); a .gguf file is dequantized as the SFT job's base is."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    base = Path(base)
    if base.suffix == ".gguf":
        kwargs: dict[str, Any] = {"gguf_file": base.name}
        if hasattr(transformers, "GgufConfig"):  # transformers >= 5: dequantizing is an explicit option
            kwargs["quantization_config"] = transformers.GgufConfig(dequantize=True)
        # the SFT job's base is this GGUF converted to bfloat16 once; go through the same dtype
        model = AutoModelForCausalLM.from_pretrained(base.parent, dtype=torch.bfloat16, local_files_only=True, **kwargs)
        return model.float()
    return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, local_files_only=True)


def linear_module_names(model: Any) -> list[str]:
    """The short names of the decoder's linear layers (what peft's 'all-linear' adapts: not the output head)."""
    import torch

    head = model.get_output_embeddings()
    return sorted(
        {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}
    )


def _adapted(model: Any, cfg: TokenTrainConfig) -> Any:
    """The base with ``cfg.init_adapter`` continued (see :func:`continue_adapter`) or a fresh LoRA adapter."""
    from peft import LoraConfig, get_peft_model

    if cfg.init_adapter:
        return continue_adapter(model, cfg.init_adapter, cfg.lora_layers_from)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
        target_modules=linear_module_names(model),
        layers_to_transform=list(range(cfg.lora_layers_from, int(model.config.num_hidden_layers))),
    )
    return get_peft_model(model, lora)


def continue_adapter(model: Any, adapter: str | Path, layers_from: int | None = None) -> Any:
    """``model`` with the LoRA adapter folder ``adapter``, trainable; widened to the decoder layers from
    ``layers_from`` up when those reach below its own (its rank, alpha and modules; the added layers start at
    zero, so the outputs equal the adapter's at step 0)."""
    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = Path(adapter)
    try:
        saved = json.loads((adapter / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"init_adapter {adapter} is not a LoRA adapter folder (adapter_config.json): {e}") from e
    own = saved.get("layers_to_transform")
    own = [own] if isinstance(own, int) else own
    wanted = set(range(layers_from or 0, int(model.config.num_hidden_layers)))
    if layers_from is None or not own or set(own) >= wanted:  # it covers every layer asked for: as it is
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    lora = LoraConfig(
        r=saved["r"],
        lora_alpha=saved["lora_alpha"],
        lora_dropout=saved.get("lora_dropout", 0.0),
        task_type="CAUSAL_LM",
        target_modules=saved["target_modules"],
        layers_to_transform=sorted(wanted | set(own)),
    )
    model = get_peft_model(model, lora)
    # peft starts every LoRA B at zero, so the layers the adapter lacked change nothing yet
    loaded = set_peft_model_state_dict(model, load_file(adapter / "adapter_model.safetensors"))
    if loaded.unexpected_keys:
        raise ValueError(f"init_adapter {adapter} has weights this model lacks: {loaded.unexpected_keys[:3]}")
    return model


def train_tokens(cfg: TokenTrainConfig) -> Path:
    """Train, checkpointing ``cfg.saves`` times (resuming from the latest checkpoint), and return ``cfg.out``."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    t0 = time.perf_counter()
    rows = read_token_rows(cfg.tokens)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # the run's settings and the SFT job config that made its rows, beside the run and in every checkpoint
    config_text = json.dumps({**dataclasses.asdict(cfg), "rows_from": rows.meta.get("sft_config", {})}, indent=2)
    (out / CONFIG_FILE).write_text(config_text + "\n")
    torch.manual_seed(cfg.seed)
    model = load_base(cfg.base)
    n_layers = int(model.config.num_hidden_layers)
    if not 0 <= cfg.lora_layers_from < n_layers:
        raise ValueError(f"lora_layers_from={cfg.lora_layers_from} is not a layer of this model (0..{n_layers - 1})")
    model = _adapted(model, cfg)
    steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(rows) / cfg.batch_size))
    cuda = torch.cuda.is_available()
    bf16 = torch.cuda.is_bf16_supported() if cuda else bool(cfg.cpu_bf16)
    order = length_grouped_order(np.diff(rows.offsets), cfg.batch_size, math.ceil(cfg.epochs), cfg.seed)
    dataset, collate = _Rows(rows, order), _collate(int(rows.meta.get("pad_token_id", 0)))
    timing: dict[str, float] = {}
    if cfg.time_budget_s:
        model.to("cuda" if cuda else "cpu")
        per_token = seconds_per_token(model, dataset, collate, cfg.micro_batch or cfg.batch_size, bf16)
        per_step = per_token * padded_tokens_per_batch(np.diff(rows.offsets), order, cfg.batch_size)
        left = cfg.time_budget_s - (time.perf_counter() - t0)
        fit = int(0.85 * left / per_step)  # 15% for the optimizer, data loading and checkpoints
        timing = {"seconds_per_step_estimate": round(per_step, 4), "updates_that_fit": fit, "planned": steps}
        print(json.dumps(timing), flush=True)
        if fit < 1:
            raise ValueError(f"time_budget_s={cfg.time_budget_s} leaves no time for an update ({per_step:.2f} s each)")
        steps = min(steps, fit)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=cfg.micro_batch or cfg.batch_size,
        # consecutive micro-batches of the length-grouped order: the same rows per update as one batch
        gradient_accumulation_steps=cfg.batch_size // (cfg.micro_batch or cfg.batch_size),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=SCHEDULER,
        lr_scheduler_kwargs={"min_lr_rate": cfg.min_lr_rate},
        warmup_steps=cfg.warmup_steps,
        max_steps=steps,
        save_steps=math.ceil(steps / cfg.saves),  # the last save is the final update (the Trainer saves at the end)
        save_strategy="steps",
        logging_steps=5,
        bf16=bf16,
        use_cpu=not cuda,
        remove_unused_columns=False,
        dataloader_num_workers=2 if cuda else 0,
        report_to=[],
        seed=cfg.seed,
        disable_tqdm=True,
    )
    started = time.perf_counter()

    class _Deadline(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if cfg.time_budget_s and time.perf_counter() - t0 > cfg.time_budget_s:
                control.should_save = control.should_training_stop = True

        def on_save(self, args, state, control, **kwargs):
            ckpt = out / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                (ckpt / CONFIG_FILE).write_text(config_text + "\n")

        def on_log(self, args, state, control, logs=None, **kwargs):
            elapsed = time.perf_counter() - started
            print(json.dumps({"step": state.global_step, "s": round(elapsed, 1), **(logs or {})}), flush=True)

    class _InOrder(Trainer):  # the order is length_grouped_order's (transformers 5 dropped group_by_length)
        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    trainer = _InOrder(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collate,
        callbacks=[_Deadline()],
    )
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    run = {
        "rows": len(rows),
        "tokens": int(rows.meta["tokens"]),
        "steps": trainer.state.global_step,
        "scheduled_steps": steps,
        "timing": timing,
        "seconds": round(time.perf_counter() - t0, 1),
        "train_seconds": round(time.perf_counter() - started, 1),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "export": {k: v for k, v in rows.meta.items() if k not in ("rows", "tokens")},
        "log_history": trainer.state.log_history,
    }
    (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    """``python rl/train_tokens.py --tokens F --base B --out D [--learning_rate ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(TokenTrainConfig):
        required = f.default is dataclasses.MISSING
        kind = {"int": int, "float": float, "str": str}[str(f.type).split(" ")[0]]
        parser.add_argument(f"--{f.name}", type=kind, required=required, default=None, help=f.metadata["help"])
    values = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    try:
        cfg = TokenTrainConfig(**values)
        print(train_tokens(cfg))
    except ValueError as e:  # bad settings or a wrong file: one line, no traceback
        parser.exit(2, f"train_tokens: error: {e}\n")


if __name__ == "__main__":
    main()
