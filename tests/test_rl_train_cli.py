"""``recagent train rl`` end to end on CPU: synthesized tasks, a tiny policy, GRPO and PPO, final model saved."""

from __future__ import annotations

import json

import pytest

from recagent.cli import main


@pytest.fixture()
def tiny_base(smollm2_tokenizer, tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = smollm2_tokenizer
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.eos_token_id))  # fmt: skip
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_train_rl_runs_from_a_synthesis_run(algo, dataset_dir, tiny_base, tmp_path, capsys):
    data = tmp_path / "synth"
    assert main(["synth", "--n", "8", "--out", str(data), "--dataset", dataset_dir, "--no-progress",
                 "-o", "kinds={single: 1}", "-o", "tools_per_dialog=[1, 2]", "-o", "max_distractors=0"]) == 0  # fmt: skip
    out = tmp_path / "rl"
    args = ["train", "rl", "--data", str(data), "--out", str(out), "--base-model", str(tiny_base), "--algo", algo,
            "--max-steps", "1", "--no-progress", "-o", "num_generations=2", "-o", "per_device_train_batch_size=2",
            "-o", "max_turn_tokens=6", "-o", "max_episode_steps=2", "-o", "max_tasks=2", "-o", "use_cpu=true",
            "-o", "bf16=false", "-o", "report_to=none", "-o", "activation_checkpointing=false", "-o", "save_strategy=no",
            "-o", "logging_steps=1"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    final = out / "final"
    run = json.loads((final / "rl_run.json").read_text())
    assert run["algo"] == algo and run["tasks"] == 2 and run["log_history"]
    assert (final / "model.safetensors").is_file() and (final / "rl_config.yaml").is_file()
    assert "done" in capsys.readouterr().out


def test_train_rl_without_data_is_one_line(capsys, tmp_path):
    assert main(["train", "rl", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "has no train.jsonl" in err and "recagent synth" in err and "Traceback" not in err


def test_vllm_settings_that_cannot_run_are_one_line(capsys, tmp_path):
    import importlib.util

    data = tmp_path / "synth"
    data.mkdir()
    (data / "train.jsonl").write_text("")
    assert main(["train", "rl", "--data", str(data), "--algo", "ppo", "-o", "use_vllm=true"]) == 2
    err = capsys.readouterr().err
    assert "use_vllm applies to algo=grpo" in err and "Traceback" not in err
    if importlib.util.find_spec("vllm") is None:  # the CPU machines this suite runs on
        assert main(["train", "rl", "--data", str(data), "-o", "use_vllm=true", "-o", "use_cpu=true",
                     "-o", "bf16=false"]) != 0  # fmt: skip
        err = capsys.readouterr().err
        assert "needs vLLM, which is not installed" in err and "recagent[vllm]" in err and "Traceback" not in err
