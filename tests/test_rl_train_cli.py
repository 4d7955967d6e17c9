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
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
    )
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_train_rl_runs_from_a_synthesis_run(algo, dataset_dir, tiny_base, tmp_path, capsys):
    data = tmp_path / "synth"
    assert (
        main(
            [
                "synth",
                "--n",
                "8",
                "--out",
                str(data),
                "--dataset",
                dataset_dir,
                "--no-progress",
                "-o",
                "kinds={single: 1}",
                "-o",
                "tools_per_dialog=[1, 2]",
                "-o",
                "max_distractors=0",
            ]
        )
        == 0
    )
    out = tmp_path / "rl"
    args = [
        "train",
        "rl",
        "--data",
        str(data),
        "--out",
        str(out),
        "--base-model",
        str(tiny_base),
        "--algo",
        algo,
        "--max-steps",
        "1",
        "--no-progress",
        "-o",
        "num_generations=2",
        "-o",
        "per_device_train_batch_size=2",
        "-o",
        "max_turn_tokens=6",
        "-o",
        "max_episode_steps=2",
        "-o",
        "max_tasks=2",
        "-o",
        "use_cpu=true",
        "-o",
        "bf16=false",
        "-o",
        "report_to=none",
        "-o",
        "activation_checkpointing=false",
        "-o",
        "save_strategy=no",
        "-o",
        "logging_steps=1",
    ]
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
        assert (
            main(["train", "rl", "--data", str(data), "-o", "use_vllm=true", "-o", "use_cpu=true", "-o", "bf16=false"])
            != 0
        )
        err = capsys.readouterr().err
        assert "needs vLLM, which is not installed" in err and "recagent[vllm]" in err and "Traceback" not in err
    assert main(["train", "rl", "--data", str(data), "-o", "use_vllm=true", "-o", "served_grammar=true"]) == 2
    err = capsys.readouterr().err
    assert "served_grammar samples with transformers" in err and "Traceback" not in err
    assert main(["train", "rl", "--data", str(data), "--algo", "ppo", "-o", "redraw_uniform_groups=2"]) == 2
    err = capsys.readouterr().err
    assert "PPO has no groups" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("with_tokenizer", "served_grammar"),
    [(True, False), (False, False), (False, True)],
    ids=["sft-final", "shipped-adapter-only", "served-grammar"],
)
def test_train_rl_keeps_training_an_sft_adapter(
    with_tokenizer, served_grammar, dataset_dir, tiny_base, tmp_path, capsys, monkeypatch
):
    """base_model = a peft adapter folder (with its tokenizer, or the adapter alone as shipped): GRPO trains it,
    sampling freely or under the grammar the adapter is served with."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sft = tmp_path / "sft_adapter"
    torch.manual_seed(1)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
    )
    peft_model.save_pretrained(sft)
    if with_tokenizer:  # a trainer's final/; the shipped adapter folder has no tokenizer: its base's is used
        AutoTokenizer.from_pretrained(tiny_base).save_pretrained(sft)
    data = tmp_path / "synth"
    assert (
        main(
            [
                "synth",
                "--n",
                "8",
                "--out",
                str(data),
                "--dataset",
                dataset_dir,
                "--no-progress",
                "-o",
                "kinds={single: 1}",
                "-o",
                "tools_per_dialog=[1, 2]",
                "-o",
                "max_distractors=0",
            ]
        )
        == 0
    )
    out = tmp_path / "rl"
    args = [
        "train",
        "rl",
        "--data",
        str(data),
        "--out",
        str(out),
        "--base-model",
        str(sft),
        "--max-steps",
        "1",
        "--no-progress",
        "-o",
        "num_generations=2",
        "-o",
        "per_device_train_batch_size=2",
        "-o",
        "max_turn_tokens=6",
        "-o",
        "max_episode_steps=2",
        "-o",
        "max_tasks=2",
        "-o",
        "use_cpu=true",
        "-o",
        "bf16=false",
        "-o",
        "report_to=none",
        "-o",
        "activation_checkpointing=false",
        "-o",
        "save_strategy=no",
        "-o",
        f"served_grammar={str(served_grammar).lower()}",
    ]
    from recagent.rl.served_grammar import ServedGrammar

    grammars = []  # the constraints the rollouts asked for
    ask = ServedGrammar.__call__
    monkeypatch.setattr(ServedGrammar, "__call__", lambda self, *a: grammars.append(ask(self, *a)) or grammars[-1])
    assert main(args) == 0, capsys.readouterr().err
    final = out / "final"
    assert ("served_grammar: true" in (final / "rl_config.yaml").read_text()) == served_grammar  # default omitted
    # 2 rollouts x their turns: each first turn decoded under a compiled grammar; sampling freely asks for none
    assert (len(grammars) >= 2 and all(g is not None for g in grammars[:2])) if served_grammar else not grammars
    assert not (final / "model.safetensors").exists()  # the adapter, not a merged full model
    before, after = load_file(sft / "adapter_model.safetensors"), load_file(final / "adapter_model.safetensors")
    assert sorted(before) == sorted(after) and len(after) == 4  # the same LoRA pairs (q, v of one layer)
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), final)
    assert reloaded.active_adapter == "default" and (final / "rl_config.yaml").is_file()


def test_rl_tasks_never_come_from_rows_after_max_samples(dataset_dir, tmp_path, capsys):
    """The rows after max_samples are SFT's validation dialogs: RL reads only the rows before them."""
    from recagent.rl.train_rl import load_rl_config, rl_tasks

    data = tmp_path / "synth"
    assert (
        main(
            [
                "synth",
                "--n",
                "8",
                "--out",
                str(data),
                "--dataset",
                dataset_dir,
                "--no-progress",
                "-o",
                "kinds={single: 1}",
                "-o",
                "max_distractors=0",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    assert len(rows) >= 5
    every = rl_tasks(load_rl_config(None, ["use_cpu=true"], data_dir=str(data)))
    some = rl_tasks(load_rl_config(None, ["use_cpu=true", "max_samples=3"], data_dir=str(data)))
    assert len(every) == len(rows) and some["task_id"] == [r["id"] for r in rows[:3]]
    assert main(["train", "rl", "--data", str(data), "-o", "max_samples=0"]) == 2
    assert "max_samples must be at least 1" in capsys.readouterr().err
