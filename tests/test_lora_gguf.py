"""peft LoRA -> GGUF LoRA: llama.cpp with the converted adapter reproduces transformers with the merged adapter.

The base weights differ a little between the two engines (llama.cpp runs the Q4_1 GGUF, transformers
its bf16 dequantization), so the llama.cpp-base vs HF-base logit difference is measured as the noise
floor, and the adapted models must agree within a small factor of it while the adapter itself moves
the logits many times further. A control conversion without the q/k row permutation shows the
comparison is sharp enough to catch that classic mistake. The scaling variants (rsLoRA, per-module
rank and alpha, f16) are checked exactly, weight by weight, against peft's own delta weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from recagent.agents import lora_gguf
from recagent.agents.local_model import LocalModelError, find_default_gguf, load_causal_lm
from recagent.agents.lora_gguf import SUPPORTED_MODULES, convert_lora_to_gguf

PROMPT = (
    "<|im_start|>user\nRecommend a funny film about two old friends on a road trip.<|im_end|>\n<|im_start|>assistant\n"
)


def _mad(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.abs(x - y).mean())


def _agree(x: np.ndarray, y: np.ndarray) -> float:
    return float((x.argmax(-1) == y.argmax(-1)).mean())


def _hf_logits(model, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def _cpp_logits(ids: list[int], lora_path=None) -> np.ndarray:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(find_default_gguf()),
        lora_path=None if lora_path is None else str(lora_path),
        logits_all=True,
        n_ctx=256,
        n_threads=1,
        verbose=False,
    )
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()


def _random_peft(checkpoint, out_dir, seed: int, **config):
    """A seeded random LoRA (A and B nonzero) on the fp32 base, saved by peft to ``out_dir``; returns the peft model.

    It is large enough to change the outputs clearly (it flips the argmax on ~40% of the positions).
    """
    import torch
    from peft import LoraConfig, get_peft_model

    model, _ = load_causal_lm(checkpoint, dtype=torch.float32, device="cpu")
    peft_model = get_peft_model(model, LoraConfig(target_modules=list(SUPPORTED_MODULES), lora_dropout=0.0, **config))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_A" in name:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            elif "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    peft_model.save_pretrained(out_dir)
    return peft_model


@pytest.fixture(scope="module")
def base(local_checkpoint):
    """(token ids, HF-base logits, llama.cpp-base logits, noise floor)."""
    import torch

    model, tok = load_causal_lm(local_checkpoint, dtype=torch.float32, device="cpu")
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    assert 15 <= len(ids) <= 40
    hf, cpp = _hf_logits(model, ids), _cpp_logits(ids)
    return ids, hf, cpp, _mad(cpp, hf)


def _check(base, hf_lora: np.ndarray, gguf_path, label: str) -> dict:
    """Compare llama.cpp with the converted adapter against transformers with the merged one; assert closeness."""
    ids, hf_base, cpp_base, floor = base
    cpp_lora = _cpp_logits(ids, gguf_path)
    m = {
        "floor": floor,  # llama.cpp-base vs HF-base
        "effect": _mad(hf_lora, hf_base),  # how far the adapter moves HF
        "diff": _mad(cpp_lora, hf_lora),  # llama.cpp+LoRA vs HF+LoRA
        "to_base": _mad(cpp_lora, hf_base),
        "agree": _agree(cpp_lora, hf_lora),
        "agree_base": _agree(cpp_base, hf_base),
        "argmax_changed": 1 - _agree(hf_lora, hf_base),
        # correlation of what the adapter changes: llama.cpp's shift of the logits vs transformers' shift
        "delta_corr": float(np.corrcoef((cpp_lora - hf_base).ravel(), (hf_lora - hf_base).ravel())[0, 1]),
    }
    print(label, {k: round(v, 4) for k, v in m.items()})
    assert m["effect"] > 8 * floor, m  # the adapter changes the outputs clearly, far above the engine noise
    assert m["argmax_changed"] > 0.25, m
    assert m["diff"] < 2.5 * floor, m  # llama.cpp applies the same adapter as transformers, up to the noise
    assert m["diff"] < 0.2 * m["to_base"], m
    assert m["agree"] >= 0.8, m
    assert m["delta_corr"] > 0.98, m
    return m


def test_llamacpp_lora_matches_merged_peft(local_checkpoint, base, tmp_path, monkeypatch):
    adapter = tmp_path / "adapter"
    peft_model = _random_peft(local_checkpoint, adapter, seed=0, r=8, lora_alpha=16)
    hf_lora = _hf_logits(peft_model.merge_and_unload(), base[0])
    info = convert_lora_to_gguf(adapter, tmp_path / "lora.gguf")
    assert (info.arch, info.rank, info.alpha, info.n_pairs, info.dtype) == ("llama", 8, 16.0, 30 * 7, "f32")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    m = _check(base, hf_lora, info.path, "lora")

    # control: without llama.cpp's q/k row permutation the adapter is applied to the wrong rotary pairs
    monkeypatch.setattr(lora_gguf, "_permute_rows", lambda b, n_head: b)
    wrong = convert_lora_to_gguf(adapter, tmp_path / "unpermuted.gguf").path
    wrong_diff = _mad(_cpp_logits(base[0], wrong), hf_lora)
    print("unpermuted diff", round(wrong_diff, 4))
    assert wrong_diff > 3 * m["diff"], (wrong_diff, m)


def test_the_chat_model_applies_an_adapter_through_the_cache(local_checkpoint, base, tmp_path):
    """LocalChatModel(adapter_path=...) on llama.cpp converts the peft folder once and decodes with it."""
    from langchain_core.messages import HumanMessage

    from recagent.agents.lora_gguf import cached_adapter_gguf
    from recagent.agents.policies.local import LocalChatModel

    adapter = tmp_path / "adapter"
    _random_peft(local_checkpoint, adapter, seed=1, r=8, lora_alpha=16)
    path = cached_adapter_gguf(adapter)
    stamp = path.stat().st_mtime_ns
    assert cached_adapter_gguf(adapter) == path and path.stat().st_mtime_ns == stamp  # converted once
    msgs = [HumanMessage("Name a famous comedy film.")]
    plain = LocalChatModel(tokenizer_path=str(local_checkpoint), max_new_tokens=8, num_threads=1)
    tuned = plain.model_copy(update={"adapter_path": str(adapter)})
    assert tuned.resolved_engine() == "llama_cpp"
    first, second = plain.invoke(msgs), tuned.invoke(msgs)
    assert first.response_metadata["raw_output"] != second.response_metadata["raw_output"]  # the adapter acts
    with pytest.raises(LocalModelError, match="no peft adapter"):
        cached_adapter_gguf(tmp_path / "missing")


def test_rslora_rank_and_alpha_patterns_f16_exact(local_checkpoint, tmp_path):
    """rsLoRA (alpha/sqrt(r)), a per-module rank and a per-module alpha, written as f16.

    Checked at the weight level, where the comparison is exact: for every module, llama.cpp's delta
    (alpha/r) * B @ A read back from the GGUF, with the q/k rows put back into HF's order, equals
    peft's own delta weight. (Through llama.cpp this larger adapter amplifies the engine noise so much
    that two exact conversions, f32 and f16, differ from HF by 0.53 and 0.36 in mean |logit|.)
    """
    import gguf

    adapter = tmp_path / "adapter"
    peft_model = _random_peft(
        local_checkpoint,
        adapter,
        seed=1,
        r=8,
        lora_alpha=4,
        use_rslora=True,
        rank_pattern={"down_proj": 4},
        alpha_pattern={"o_proj": 8},
    )
    info = convert_lora_to_gguf(adapter, tmp_path / "lora-f16.gguf", dtype="f16")
    assert info.alpha == pytest.approx(4 * 8**0.5) and info.dtype == "f16"

    reader = gguf.GGUFReader(info.path)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    alpha = float(reader.fields["adapter.lora.alpha"].contents())
    tensors = {t.name: np.array(t.data, dtype=np.float64) for t in reader.tensors}
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F16}
    cfg = peft_model.config
    gguf_names = {
        "q_proj": "attn_q",
        "k_proj": "attn_k",
        "v_proj": "attn_v",
        "o_proj": "attn_output",
        "gate_proj": "ffn_gate",
        "up_proj": "ffn_up",
        "down_proj": "ffn_down",
    }
    heads = {"q_proj": cfg.num_attention_heads, "k_proj": cfg.num_key_value_heads}
    checked, ranks = 0, set()
    for name, module in peft_model.named_modules():
        if not hasattr(module, "get_delta_weight") or "default" not in getattr(module, "lora_A", {}):
            continue
        layer, proj = int(name.split(".layers.")[1].split(".")[0]), name.rsplit(".", 1)[1]
        a = tensors[f"blk.{layer}.{gguf_names[proj]}.weight.lora_a"]  # (r, in)
        b = tensors[f"blk.{layer}.{gguf_names[proj]}.weight.lora_b"]  # (out, r)
        if proj in heads:  # undo llama.cpp's rotary permutation: interleaved pairs -> HF's rotate-half halves
            n, (out, r) = heads[proj], b.shape
            b = b.reshape(n, out // n // 2, 2, r).swapaxes(1, 2).reshape(out, r)
        ours = alpha / a.shape[0] * (b @ a)  # what llama.cpp adds: scale = alpha / rank(b)
        ref = module.get_delta_weight("default").detach().double().numpy()
        assert np.abs(ours - ref).max() < 2e-3 * np.abs(ref).max(), name
        checked += 1
        ranks.add((proj, a.shape[0]))
    assert checked == 30 * 7 and ("down_proj", 4) in ranks and ("o_proj", 8) in ranks


def _write_adapter(folder, config: dict, tensors: dict | None = None) -> None:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4, **config}))
    if tensors is None:
        tensors = {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(2, 576),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(576, 2),
        }
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "adapter_model.safetensors")


@pytest.mark.parametrize(
    ("config", "tensors", "message"),
    [
        (None, None, "adapter_config.json missing"),
        ({"target_modules": ["q_proj", "embed_tokens"]}, None, "target module 'embed_tokens' is not supported"),
        ({"target_modules": ["q_proj"], "modules_to_save": ["lm_head"]}, None, "modules_to_save=['lm_head']"),
        ({"target_modules": ["q_proj"], "use_dora": True}, None, "DoRA"),
        ({"target_modules": ["q_proj"], "bias": "lora_only"}, None, "bias='lora_only'"),
        ({"peft_type": "IA3"}, None, "peft_type IA3"),
        (
            {"target_modules": ".*"},
            {"base_model.model.model.embed_tokens.lora_embedding_A": (2, 49152)},
            "module model.embed_tokens (token embeddings) is not supported",
        ),
        ({"target_modules": ".*"}, {"base_model.model.lm_head.lora_A.weight": (2, 576)}, "module lm_head"),
        (
            {"target_modules": ".*"},
            {"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector": (576,)},
            "DoRA magnitude vector on model.layers.0.self_attn.q_proj",
        ),
        (
            {"target_modules": ["q_proj"]},
            {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": (2, 576)},
            "has lora_A but no lora_B",
        ),
        (
            {"target_modules": ["q_proj"]},
            {
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": (2, 100),
                "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": (576, 2),
            },
            "wrong base model",
        ),
    ],
)
def test_bad_adapters_are_refused_in_one_line(tmp_path, config, tensors, message):
    import torch

    folder = tmp_path / "bad"
    if config is None:
        folder.mkdir()
    else:
        _write_adapter(folder, config, None if tensors is None else {k: torch.zeros(s) for k, s in tensors.items()})
    with pytest.raises(LocalModelError) as e:
        convert_lora_to_gguf(folder, tmp_path / "out.gguf")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out.gguf").exists()
