"""``recagent train sft``: TRL fine-tuning on synthesized dialogs, resuming, LoRA, configs and one-line errors.

The base model is a tiny random Llama (two layers, width 32) that carries SmolLM2's real tokenizer,
read from the packaged GGUF, so the dialogs, the chat template and the assistant-token mask are the
real ones while a training step stays cheap. The dialogs are synthesized over the synthetic tool
environment with few offered tools; the three shortest training dialogs keep every step short.
"""

from __future__ import annotations

import collections
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from recagent.cli import main
from recagent.errors import ConfigError
from recagent.rl.config_io import load_config, save_config
from recagent.rl.sft import (
    CONFIG_FILE,
    RUN_FILE,
    SFTDataError,
    SFTJobConfig,
    check_no_leakage,
    load_sft_config,
    train_sft,
    turn_decisions,
)

FAST = [  # a few cheap, fully effective steps: no warm-up, no accumulation, a checkpoint every step
    "learning_rate=1e-2",
    "warmup_steps=0",
    "gradient_accumulation_steps=1",
    "save_steps=1",
    "save_total_limit=null",
    "logging_steps=1",
    "disable_tqdm=true",
    "activation_checkpointing=false",
    "seed=0",
]
EVAL = ["eval_strategy=steps", "eval_steps=2"]  # test.jsonl as the eval set


@pytest.fixture(scope="module", autouse=True)
def _no_progress_bars():
    import datasets
    from transformers.utils import logging as hf_logging

    was_ds, was_hf = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    yield
    if was_ds:
        datasets.enable_progress_bars()
    if was_hf:
        hf_logging.enable_progress_bar()


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer):
    """SmolLM2's tokenizer (its own chat template), from conftest."""
    return smollm2_tokenizer


@pytest.fixture(scope="module")
def base_model(tokenizer, tmp_path_factory) -> Path:
    """A tiny random LlamaForCausalLM with SmolLM2's tokenizer, saved as a checkpoint folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _token_lengths(tokenizer, rows):
    import copy

    from recagent.agents.chat_template import apply_tool_template

    tok = apply_tool_template(copy.deepcopy(tokenizer))
    return [
        len(tok.apply_chat_template(r["messages"], tools=r["tools"], tokenize=True, return_dict=True)["input_ids"])
        for r in rows
    ]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def _write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def data_dir(synthetic_env, tokenizer, tmp_path_factory) -> Path:
    """A synthesis run over the synthetic environment, cut to its three shortest training dialogs."""
    from recagent.synth.config import SynthConfig
    from recagent.synth.pipeline import synthesize

    full = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig.build(n=12, test_fraction=0.25, tools_per_dialog=(1, 2), max_distractors=1, exports=[])
    synthesize(cfg, full, env=synthetic_env, progress=False)
    train, test = _rows(full / "train.jsonl"), _rows(full / "test.jsonl")
    assert train and test
    lengths = _token_lengths(tokenizer, train)
    shortest = sorted(range(len(train)), key=lambda i: lengths[i])[:3]
    out = tmp_path_factory.mktemp("sft-data")
    _write_rows(out / "train.jsonl", [train[i] for i in shortest])
    _write_rows(out / "test.jsonl", test)
    return out  # no config.yaml: it would name ml-100k, not the synthetic data (tests pass the split instead)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _run(folder: Path) -> dict:
    return json.loads((folder / RUN_FILE).read_text())


def _losses(history: list[dict]) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in history if "loss" in h}


# -- full fine-tuning, the saved model, resuming -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(base_model, data_dir, synthetic_split, tmp_path_factory) -> Path:
    """Four full fine-tuning steps from scratch (a checkpoint after each); returns output_dir."""
    out = tmp_path_factory.mktemp("sft-full")
    cfg = load_sft_config(
        None, FAST + EVAL + ["max_steps=4"], data_dir=str(data_dir), output_dir=str(out), base_model=str(base_model)
    )
    assert train_sft(cfg, split=synthetic_split) == out / "final"
    return out


def test_full_fine_tuning_trains_every_weight_and_saves_a_loadable_model(full_run, base_model, tokenizer, data_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recagent.agents.chat_template import TOOL_CHAT_TEMPLATE
    from recagent.agents.prompt_format import format_prompt

    final = full_run / "final"
    run = _run(final)
    losses = _losses(run["log_history"])
    assert sorted(losses) == [1, 2, 3, 4] and all(math.isfinite(v) for v in losses.values())
    assert losses[4] < losses[1], "it learns"
    assert (run["train"]["rows"], run["train"]["dropped"]) == (3, 0)
    assert run["resumed_from"] is None and run["steps_this_run"] == 4 and run["trainable_params"] == run["total_params"]
    assert (run["eval"]["rows"], run["eval"]["dropped"]) == (len(_rows(data_dir / "test.jsonl")), 0)
    evals = [h for h in run["log_history"] if "eval_loss" in h]
    assert [h["step"] for h in evals] == [2, 4] and all(math.isfinite(h["eval_loss"]) for h in evals), (
        "test.jsonl evaluates"
    )

    before, after = _weights(base_model), _weights(final)
    assert set(after) == set(before)
    assert [k for k in before if torch.equal(before[k], after[k])] == [], "every weight moved"

    model = AutoModelForCausalLM.from_pretrained(final, local_files_only=True)
    assert model.config.num_hidden_layers == 2
    tok = AutoTokenizer.from_pretrained(final, local_files_only=True)
    assert tok.chat_template == TOOL_CHAT_TEMPLATE, "the saved tokenizer renders our format"
    # the local policy prompts the fine-tuned model exactly as it prompts the base model (no train/serve skew)
    from langchain_core.messages import convert_to_messages

    row = _rows(data_dir / "train.jsonl")[0]
    prefix = row["messages"][: max(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")]
    msgs = convert_to_messages([dict(m) for m in prefix])
    assert format_prompt(tok, msgs, row["tools"]) == format_prompt(tokenizer, msgs, row["tools"])

    # the resolved config sits next to the run, in every checkpoint and in final/, and loads back
    for folder in (full_run, full_run / "checkpoint-2", final):
        cfg = load_config(SFTJobConfig, folder / CONFIG_FILE)
        assert cfg.max_steps == 4 and cfg.data_dir == str(data_dir) and cfg.base_model == str(base_model)


def test_resume_continues_exactly_and_extends_the_schedule(full_run, base_model, data_dir, synthetic_split, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(full_run, out)
    for name in ("checkpoint-3", "checkpoint-4", "final"):  # as if killed after the second step
        shutil.rmtree(out / name)
    args = {"data_dir": str(data_dir), "output_dir": str(out), "base_model": str(base_model)}
    train_sft(load_sft_config(None, FAST + EVAL + ["max_steps=4"], **args), split=synthetic_split)
    run = _run(out / "final")
    assert (run["resumed_from"], run["steps_this_run"], run["global_step"]) == ("checkpoint-2", 2, 4)
    uninterrupted, resumed = _weights(full_run / "final"), _weights(out / "final")
    for k in uninterrupted:
        torch.testing.assert_close(resumed[k], uninterrupted[k], msg=k)

    # more steps on the same folder: continues from checkpoint-4 with the new schedule's learning rate
    train_sft(load_sft_config(None, FAST + EVAL + ["max_steps=6"], **args), split=synthetic_split)
    run = _run(out / "final")
    assert (run["resumed_from"], run["steps_this_run"], run["global_step"]) == ("checkpoint-4", 2, 6)
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert sorted(_losses(state["log_history"])) == [1, 2, 3, 4, 5, 6]
    rates = {h["step"]: h["learning_rate"] for h in state["log_history"] if "learning_rate" in h}
    assert rates[5] > 0, "the first resumed step does not keep the old schedule's final rate (0 after a cosine decay)"
    assert (out / "checkpoint-6" / CONFIG_FILE).is_file() and (out / CONFIG_FILE).is_file()

    # a job on other data or another model does not pick up these checkpoints
    with pytest.raises(ConfigError, match=r"holds a run with other max_samples \(checkpoint-6: max_samples=None\)"):
        train_sft(load_sft_config(None, FAST + ["max_steps=8", "max_samples=1"], **args))


def test_turn_decisions_name_each_assistant_turn_and_what_it_follows():
    call = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}
    result = {"role": "tool", "content": "items: [1] A (1990)"}
    chain = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, call, result, call, result]
    chain += [{"role": "assistant", "content": "[1] A"}, {"role": "user", "content": "thanks"}]
    chain += [{"role": "assistant", "content": "you are welcome"}]
    assert turn_decisions(chain) == ["call after user", "call after tool", "words after tool", "words after user"]


# -- LoRA through the command line ------------------------------------------------------------------------------------


def test_lora_via_the_cli_trains_only_adapters_merges_and_drops_over_long_dialogs(
    base_model, data_dir, tokenizer, tmp_path, capsys
):
    from torch import nn
    from transformers import AutoModelForCausalLM

    rows = _rows(data_dir / "train.jsonl")
    by_length = sorted(zip(_token_lengths(tokenizer, rows), range(len(rows))))
    lengths = [n for n, _ in by_length]
    assert lengths[1] < lengths[2]
    out = tmp_path / "lora"
    argv = [
        "train",
        "sft",
        "--data",
        str(data_dir),
        "--out",
        str(out),
        "--base-model",
        str(base_model),
        "--max-steps",
        "2",
        "--no-progress",
        "-o",
        "use_lora=true",
        "-o",
        "lora_r=4",
        "-o",
        "lora_alpha=8",
        "-o",
        f"max_length={lengths[1]}",
    ]
    for item in FAST:
        argv += ["-o", item]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert (
        f"dropped 1 of 3 training dialogs longer than max_length={lengths[1]} tokens (longest: {lengths[2]})"
        in captured.err
    )
    run = _run(out / "final")
    # what the dropped dialog held, turn by turn, against all three dialogs' turns
    lost = collections.Counter(turn_decisions(rows[by_length[2][1]]["messages"]))
    every = collections.Counter(d for r in rows for d in turn_decisions(r["messages"]))
    assert lost and set(lost) <= set(every)
    assert run["train"] == {
        "rows": 2,
        "longest_tokens": lengths[2],
        "dropped": 1,
        "dropped_turns": {d: [lost[d], every[d]] for d in sorted(lost)},
    }
    assert "the dropped training dialogs held these assistant turns" in captured.err
    assert run["lora"] == {"merged": True} and run["global_step"] == 2

    base = AutoModelForCausalLM.from_pretrained(base_model, local_files_only=True)
    linear = {n: m for n, m in base.named_modules() if isinstance(m, nn.Linear) and not n.endswith("lm_head")}
    assert run["trainable_params"] == sum(4 * (m.in_features + m.out_features) for m in linear.values())
    assert run["total_params"] == sum(p.numel() for p in base.parameters())

    before, after = _weights(base_model), _weights(out / "final")
    assert set(after) == set(before), "merged: a plain checkpoint, no adapter keys"
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"{n}.weight" for n in linear}, "exactly the adapted layers moved"


def test_init_adapter_starts_a_new_run_from_an_adapters_weights(base_model, data_dir, synthetic_split, tmp_path):
    """A second run on the same adapter: at learning rate 0 it saves the adapter it started from, else it moves it;
    asked for layers below the adapter's, it widens it (its own weights kept, the added layers' B at zero)."""
    from transformers import AutoModelForCausalLM

    lora = ["use_lora=true", "lora_r=4", "lora_alpha=8", "merge_lora=false", "max_steps=1", "lora_dropout=0"]
    first = load_sft_config(
        None,
        FAST + lora + ["lora_layers_from=1"],
        data_dir=str(data_dir),
        output_dir=str(tmp_path / "a"),
        base_model=str(base_model),
    )
    start = train_sft(first, split=synthetic_split)
    weights = load_file(start / "adapter_model.safetensors")
    assert weights and all(".layers.1." in k for k in weights)
    for lr, layers_from, same in (("0", 1, True), ("1e-2", 1, False), ("0", 0, True)):
        cfg = load_sft_config(
            None,
            FAST + lora + [f"learning_rate={lr}", f"init_adapter={start}", f"lora_layers_from={layers_from}"],
            data_dir=str(data_dir),
            output_dir=str(tmp_path / f"b{lr}-{layers_from}"),
            base_model=str(base_model),
        )
        final = train_sft(cfg, split=synthetic_split)
        after = load_file(final / "adapter_model.safetensors")
        assert _run(final)["total_params"] == sum(
            p.numel() for p in AutoModelForCausalLM.from_pretrained(base_model).parameters()
        )
        added = set(after) - set(weights)
        assert set(weights) <= set(after) and bool(added) is (layers_from == 0)
        assert all(torch.equal(weights[k], after[k]) for k in weights) is same, lr
        assert all(after[k].abs().sum() == 0 for k in added if "lora_B" in k)


# -- data checks ------------------------------------------------------------------------------------------------------


def test_data_whose_train_and_test_overlap_is_refused(data_dir, synthetic_split, tmp_path):
    train, test = _rows(data_dir / "train.jsonl"), _rows(data_dir / "test.jsonl")
    check_no_leakage(data_dir, train, test, synthetic_split)  # the real run is clean, find_leaks included
    leaky = tmp_path / "leaky"
    shutil.copytree(data_dir, leaky)
    _write_rows(leaky / "test.jsonl", test + train[:1])
    cfg = load_sft_config(None, FAST, data_dir=str(leaky), output_dir=str(tmp_path / "out"))
    with pytest.raises(SFTDataError, match=r"leaks test data into training: 1 dialog\(s\) are in both"):
        train_sft(cfg)
    assert not (tmp_path / "out").exists(), "refused before anything is written"
    moved = {**train[0], "id": "other", "meta": {**train[0]["meta"], "user_id": test[0]["meta"]["user_id"]}}
    with pytest.raises(SFTDataError, match=r"1 user\(s\) have dialogs in train and test"):
        check_no_leakage(leaky, [moved], test)
    # a validation.jsonl (checkpoint choice) is held out like test.jsonl
    _write_rows(leaky / "test.jsonl", test)
    _write_rows(leaky / "validation.jsonl", [{**test[0], "id": "v"}])
    with pytest.raises(SFTDataError, match=r"1 user\(s\) have dialogs in train and validation"):
        check_no_leakage(leaky, [moved], [])
    with pytest.raises(SFTDataError, match=r"1 dialog\(s\) are in both train.jsonl and validation.jsonl"):
        check_no_leakage(leaky, [{**test[0], "id": "v"}], [])


# -- configs and the command line -------------------------------------------------------------------------------------


def test_config_from_yaml_with_overrides_round_trips(data_dir, tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(data_dir),
                "learning_rate": "1e-4",
                "use_lora": True,
                "lora_target_modules": ["q_proj", "v_proj"],
                "num_train_epochs": 2,
            }
        )
    )
    cfg = load_sft_config(
        path, ["lora_r=4", "lr_scheduler_kwargs.num_cycles=2", "run_name=2024", "max_samples=null"], max_steps=7
    )
    assert (cfg.learning_rate, cfg.use_lora, cfg.lora_r, cfg.lora_target_modules) == (
        1e-4,
        True,
        4,
        ["q_proj", "v_proj"],
    )
    assert cfg.lr_scheduler_kwargs == {"num_cycles": 2} and cfg.run_name == "2024" and cfg.max_steps == 7
    # defaults: assistant-only loss, no truncation of synthesized dialogs, runs under $RECAGENT_HOME
    assert cfg.assistant_only_loss and cfg.max_length == 8192 and cfg.max_samples is None
    from recagent.paths import recagent_home

    assert Path(cfg.output_dir) == recagent_home() / "runs" / "sft"
    if not torch.cuda.is_available():  # bf16 autocast only on a CPU that computes bf16 natively (machines vary)
        from recagent.agents.local_model import cpu_has_bf16

        assert cfg.use_cpu and cfg.bf16 == cpu_has_bf16()
    saved = save_config(cfg, tmp_path / "saved.yaml")
    again = load_config(SFTJobConfig, saved)
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["learnin_rate=1e-4"], "unknown key 'learnin_rate'; did you mean 'learning_rate'?"),
        (["learning_rate=fast"], "learning_rate: Input should be a valid number"),
        (["eval_strategy=sometimes"], "eval_strategy: 'sometimes' is not one of ['no', 'steps', 'epoch']"),
        (["max_steps=2.5"], "max_steps: Input should be a valid integer"),
        (["lora_r.x=1"], "'lora_r' is not a mapping field"),
        (["max_samples=0"], "max_samples must be >= 1"),
        (["use_lora"], "must look like key=value"),
        (["first_token_weight=1"], "set loss_per=turn"),
        (["first_token_weight=-1"], "first_token_weight is a loss weight"),
        (["name_token_weight=2"], "set loss_per=turn"),
        (["name_token_weight=-1"], "name_token_weight is a loss weight"),
    ],
)
def test_bad_overrides_are_one_line_config_errors(data_dir, overrides, message):
    with pytest.raises(ConfigError) as e:
        load_sft_config(None, overrides, data_dir=str(data_dir))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_config_files_and_devices_are_one_line_config_errors(data_dir, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data_dir: x\nlerning_rate: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml\): unknown key 'lerning_rate'; did you mean 'learning_rate'"):
        load_sft_config(path)
    with pytest.raises(ConfigError, match=r"has no train.jsonl: create it with `recagent synth --n 1000 --out"):
        load_sft_config(None, [], data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="data_dir is not set"):
        load_sft_config(None, [])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="bf16=true needs a CUDA GPU.*use_cpu=true"):
            load_sft_config(None, ["bf16=true"], data_dir=str(data_dir))


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["train", "sft", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "recagent synth" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "train.jsonl").write_text("")
    assert main(["train", "sft", "--data", str(tmp_path), "-o", "learnin_rate=1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'learning_rate'" in err and len(err.strip().splitlines()) == 1


def test_full_leakage_check_is_skipped_loudly_when_the_run_names_another_dataset(real_ml100k_dir, tmp_path, caplog):
    from recagent.rl.sft import check_no_leakage

    (tmp_path / "config.yaml").write_text(f"tools:\n  dataset: {real_ml100k_dir}\n")
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "synthetic"}))
    row = {"id": "a", "messages": [], "tools": [], "meta": {"user_id": "1"}}
    with caplog.at_level("WARNING", logger="recagent.rl"):
        check_no_leakage(tmp_path, [row], [{**row, "id": "b", "meta": {"user_id": "2"}}])
    assert "full leakage check skipped" in caplog.text and "made from dataset 'synthetic'" in caplog.text


def test_shared_prefix_trains_the_same_first_step_as_the_plain_trainer(base_model, data_dir, synthetic_split, tmp_path):
    """One batch of all three dialogs: the shared-prefix loss is TRL's loss, and the (top-layer) adapters move."""
    losses = {}
    for shared in (False, True):
        out = tmp_path / f"shared-{shared}"
        cfg = load_sft_config(
            None,
            FAST
            + [
                "max_steps=2",
                "use_lora=true",
                "lora_r=4",
                "lora_alpha=8",
                "per_device_train_batch_size=3",
                f"shared_prefix={str(shared).lower()}",
                "bf16=false",
                "merge_lora=false",
                "lora_layers_from=1",
            ],
            data_dir=str(data_dir),
            output_dir=str(out),
            base_model=str(base_model),
        )
        final = train_sft(cfg, split=synthetic_split)
        losses[shared] = _losses(_run(final)["log_history"])
        adapter = load_file(final / "adapter_model.safetensors")
        assert any(float(t.abs().sum()) > 0 for k, t in adapter.items() if "lora_B" in k), "the adapters were trained"
        assert adapter and all(".layers.1." in k for k in adapter), "lora_layers_from=1: the top layer only"
    assert losses[True][1] == pytest.approx(losses[False][1], rel=1e-4)


def test_decision_samples_add_each_dialog_cut_after_its_first_turn(tmp_path):
    """decision_samples: every dialog once whole and once up to its first assistant turn (calls or words)."""
    import datasets

    from recagent.rl.sft import _with_decision_samples, first_decision

    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": "top_movies", "arguments": "{}"}}],
    }
    rows = [
        {
            "messages": [
                {"role": "user", "content": "popular films?"},
                call,
                {"role": "tool", "content": "x"},
                {"role": "assistant", "content": "[1] A (1995)"},
            ],
            "tools": [],
        },
        {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi!"}], "tools": []},
    ]
    assert first_decision(rows[0])["messages"] == rows[0]["messages"][:2]
    assert first_decision(rows[1])["messages"] == rows[1]["messages"]
    ds = _with_decision_samples(datasets.Dataset.from_list(rows))
    assert [len(r["messages"]) for r in ds] == [4, 2, 2, 2]
    assert ds[2]["messages"][-1]["tool_calls"][0]["function"]["name"] == "top_movies"


def test_whole_dialogs_keeps_a_seeded_share_whole_and_every_decision():
    """whole_dialogs=0.5: every first decision, and half the dialogs whole, the same half for the same seed."""
    import datasets

    from recagent.rl.sft import _with_decision_samples

    reply = {"role": "assistant", "content": "Hi!"}
    rows = [
        {
            "messages": [{"role": "user", "content": f"hi {i}"}, reply, {"role": "user", "content": "more"}, reply],
            "tools": [],
        }
        for i in range(10)
    ]
    ds = _with_decision_samples(datasets.Dataset.from_list(rows), 0.5, seed=3)
    lengths = [len(r["messages"]) for r in ds]
    assert lengths.count(4) == 5 and lengths.count(2) == 10
    whole = [r["messages"][0]["content"] for r in ds if len(r["messages"]) == 4]
    again = _with_decision_samples(datasets.Dataset.from_list(rows), 0.5, seed=3)
    assert whole == [r["messages"][0]["content"] for r in again if len(r["messages"]) == 4]
    assert [len(r["messages"]) for r in _with_decision_samples(datasets.Dataset.from_list(rows), 0.0)] == [2] * 10


def test_later_decisions_cut_a_seeded_share_after_a_later_turn():
    """later_decisions=0.5: half the dialogs with 2+ assistant turns, cut after a turn >= 2, the same for the seed."""
    import datasets

    from recagent.rl.sft import _with_decision_samples, cut_after_turn

    call = {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}
    result, answer = {"role": "tool", "content": "items"}, {"role": "assistant", "content": "[1] A"}

    def dialog(i: int, calls: int) -> dict:
        return {"messages": [{"role": "user", "content": f"q{i}"}] + [call, result] * calls + [answer], "tools": []}

    rows = [dialog(i, 1 + i % 3) for i in range(10)] + [dialog(10, 0)]  # 2-4 assistant turns; one of 1
    assert cut_after_turn(rows[2], 2)["messages"] == rows[2]["messages"][:4]
    assert cut_after_turn(rows[2], 9)["messages"] == rows[2]["messages"]
    ds = _with_decision_samples(datasets.Dataset.from_list(rows), 0.0, seed=1, later_share=0.5)
    later = [[(m["role"], m["content"]) for m in r["messages"]] for r in ds][len(rows) :]  # arrow adds None keys
    assert len(later) == 5 and all(m[0][1] != "q10" for m in later), "only dialogs of 2+ assistant turns"
    for m in later:
        whole = [(x["role"], x["content"]) for x in rows[int(m[0][1][1:])]["messages"]]
        assert m == whole[: len(m)] and m[-1][0] == "assistant" and len(m) >= 4, "a prefix ending in turn 2+"
    again = _with_decision_samples(datasets.Dataset.from_list(rows), 0.0, seed=1, later_share=0.5)
    assert [r["messages"] for r in again] == [r["messages"] for r in ds]


def test_unshared_tool_blocks_are_dropped_and_counted():
    import datasets

    from recagent.rl.sft import _drop_unshared_blocks
    from recagent.rl.shared_prefix import KEY_TOKENS

    block = list(range(KEY_TOKENS))
    rows = [{"input_ids": block + [i]} for i in range(3)] + [{"input_ids": [7] + block + [1]}, {"input_ids": [8] * 600}]
    kept, dropped = _drop_unshared_blocks(datasets.Dataset.from_list(rows), batch_size=2)
    assert dropped == 2 and [r["input_ids"][-1] for r in kept] == [0, 1, 2]
    rows += [{"input_ids": [9 + i] + block} for i in range(8)]  # ten unshared rows in all
    kept, dropped = _drop_unshared_blocks(datasets.Dataset.from_list(rows), batch_size=2, keep_share=0.3, seed=4)
    firsts = [r["input_ids"][0] for r in kept]
    assert dropped == 7 and len(kept) == 6 and firsts[:3] == [0, 0, 0] and all(f != 0 for f in firsts[3:])
    again, _ = _drop_unshared_blocks(datasets.Dataset.from_list(rows), batch_size=2, keep_share=0.3, seed=4)
    assert [r["input_ids"] for r in again] == [r["input_ids"] for r in kept]  # seeded: a resumed run sees the same rows


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["whole_dialogs=0.5"], "unless decision_samples=true"),
        (["decision_samples=true", "whole_dialogs=1.5"], "between 0 and 1"),
        (["shared_tool_blocks_only=true"], "set shared_prefix=true"),
        (["unshared_share=0.1"], "set shared_tool_blocks_only=true"),
        (["later_decisions=0.2"], "set decision_samples=true"),
        (["decision_samples=true", "later_decisions=-1"], "between 0 and 1"),
        (["length_band=-5"], "0 .no bands. or more"),
        (["shared_prefix=true", "shared_tool_blocks_only=true", "unshared_share=2"], "between 0 and 1"),
        (["init_adapter=."], "set use_lora=true"),
        (["use_lora=true", "init_adapter=."], "not a peft adapter folder"),
    ],
)
def test_decision_mix_settings_are_checked(tmp_path, overrides, message):
    from recagent.errors import ConfigError
    from recagent.rl.sft import load_sft_config

    data = tmp_path / "synth"
    data.mkdir()
    (data / "train.jsonl").write_text('{"messages": [], "tools": []}\n')
    with pytest.raises(ConfigError, match=message):
        load_sft_config(None, overrides, data_dir=str(data))


def test_per_turn_loss_needs_the_shared_prefix_loss(tmp_path):
    from recagent.errors import ConfigError
    from recagent.rl.sft import load_sft_config

    data = tmp_path / "synth"
    data.mkdir()
    (data / "train.jsonl").write_text('{"messages": [], "tools": []}\n')
    with pytest.raises(ConfigError, match="loss_per=turn is computed by the shared-prefix loss"):
        load_sft_config(None, ["loss_per=turn"], data_dir=str(data))


# -- token export + rl/train_tokens.py (the trainer for a machine without TRL) -----------------------------------------


@pytest.fixture(scope="module")
def token_rows(base_model, data_dir, synthetic_split, tmp_path_factory) -> Path:
    """The GPU recipe's rows (every dialog whole + its first decision) of the three dialogs, exported."""
    out = tmp_path_factory.mktemp("tokens")
    cfg = load_sft_config(
        "examples/policy_gpu/sft_export.yaml",
        ["max_samples=null", "max_length=8192", f"export_tokens={out / 'rows.npz.xz'}"],
        data_dir=str(data_dir),
        output_dir=str(out / "unused"),
        base_model=str(base_model),
    )
    assert train_sft(cfg, split=synthetic_split) == out / "rows.npz.xz"
    assert not list((out / "unused").glob("checkpoint-*")), "exporting trains nothing"
    return out / "rows.npz.xz"


def test_exported_rows_are_the_template_tokens_with_loss_on_the_assistant_only(token_rows, data_dir, tokenizer):
    import copy

    from recagent.agents.chat_template import apply_tool_template
    from recagent.rl.sft import first_decision
    from recagent.rl.train_tokens import read_token_rows

    rows = read_token_rows(token_rows)
    dialogs = _rows(data_dir / "train.jsonl")
    assert len(rows) == 2 * len(dialogs) and rows.meta["train"]["dropped"] == 0
    assert rows.meta["pad_token_id"] == tokenizer.pad_token_id
    tok = apply_tool_template(copy.deepcopy(tokenizer))
    expected: dict[tuple, list[dict]] = {}  # a one-turn dialog is its own first decision: listed twice
    for d in dialogs + [first_decision(d) for d in dialogs]:
        ids = tok.apply_chat_template(d["messages"], tools=d["tools"], tokenize=True, return_dict=True)["input_ids"]
        expected.setdefault(tuple(ids), []).append(d)
    for i in range(len(rows)):
        ids, mask = rows.row(i)
        key = tuple(int(t) for t in ids)
        dialog = expected[key].pop()  # every row is one dialog or decision, each once
        if not expected[key]:
            del expected[key]
        trained = tokenizer.decode(ids[mask.astype(bool)])
        for m in dialog["messages"]:
            text = m.get("content") or ""
            if m["role"] == "assistant":
                for call in m.get("tool_calls") or []:
                    assert call["function"]["name"] in trained
                assert text.strip() in trained
            elif m["role"] == "user" and len(text) > 12:
                assert text not in trained, "no loss on the user's words"
    assert not expected


def test_train_tokens_trains_the_adapter_and_resumes_to_the_same_weights(token_rows, base_model, tmp_path):
    from recagent.rl.train_tokens import RUN_FILE as TOKENS_RUN
    from recagent.rl.train_tokens import TokenTrainConfig, train_tokens

    settings = dict(tokens=str(token_rows), base=str(base_model), lora_r=4, lora_alpha=8, learning_rate=1e-2)
    cfg = TokenTrainConfig(out=str(tmp_path / "run"), epochs=4, batch_size=2, saves=2, warmup_steps=0, **settings)
    run = train_tokens(cfg)
    info = json.loads((run / TOKENS_RUN).read_text())
    assert info["steps"] == info["scheduled_steps"] == 12 and info["rows"] == 6  # 4 passes over 6 rows, 2 a batch
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-6"]
    weights = load_file(run / "checkpoint-12" / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    assert all(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k), "every B moved off its zero init"
    losses = [h["loss"] for h in info["log_history"] if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)
    saved = json.loads((run / "checkpoint-12" / "train_tokens_config.json").read_text())
    assert saved["learning_rate"] == 1e-2 and saved["rows_from"]["decision_samples"] is True

    from recagent.rl.ship import ship_adapter

    card = ship_adapter(run / "checkpoint-12", tmp_path / "shipped").card  # the card reads the GPU run's files
    assert "LoRA r=4, alpha=8" in card and "12 updates of 2 dialogs, learning rate 0.01" in card

    shutil.rmtree(run / "checkpoint-12")
    train_tokens(cfg)  # resumes from checkpoint-6: same order, same schedule
    again = load_file(run / "checkpoint-12" / "adapter_model.safetensors")
    assert all(torch.allclose(again[k], weights[k], atol=1e-6) for k in weights)

    # a new run continuing that adapter (bf16 autocast on the CPU): at learning rate 0 it keeps it, else moves it
    for lr, same in ((0.0, True), (1e-2, False)):
        cont = TokenTrainConfig(
            **{**settings, "learning_rate": lr},
            out=str(tmp_path / f"continued-{lr}"),
            init_adapter=str(run / "checkpoint-12"),
            cpu_bf16=1,
            max_steps=1,
            saves=1,
            warmup_steps=0,
        )
        moved = load_file(train_tokens(cont) / "checkpoint-1" / "adapter_model.safetensors")
        assert moved.keys() == weights.keys()
        assert all(torch.equal(moved[k], weights[k]) for k in weights) is same


def test_micro_batches_train_the_same_update_and_a_widened_adapter_starts_where_it_was(
    token_rows, base_model, tmp_path
):
    from recagent.rl.train_tokens import TokenTrainConfig, train_tokens

    settings = dict(tokens=str(token_rows), base=str(base_model), lora_r=4, lora_alpha=8, learning_rate=1e-2)
    one = dict(max_steps=1, saves=1, warmup_steps=0, batch_size=2)
    # one update of 2 rows, as one batch or as 2 accumulated micro-batches: the same gradient, the same weights
    whole = train_tokens(TokenTrainConfig(**settings, **one, out=str(tmp_path / "whole")))
    micro = train_tokens(TokenTrainConfig(**settings, **one, micro_batch=1, out=str(tmp_path / "micro")))
    a = load_file(whole / "checkpoint-1" / "adapter_model.safetensors")
    b = load_file(micro / "checkpoint-1" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    with pytest.raises(ValueError, match="must divide batch_size"):
        TokenTrainConfig(**settings, **{**one, "micro_batch": 3}, out=str(tmp_path / "bad"))

    # an adapter of layer 1 only, widened to layers 0-1: its own weights come through, layer 0's B starts at zero
    top = train_tokens(TokenTrainConfig(**settings, **one, lora_layers_from=1, out=str(tmp_path / "top")))
    top_w = load_file(top / "checkpoint-1" / "adapter_model.safetensors")
    assert top_w and all(".layers.1." in k for k in top_w)
    wide = TokenTrainConfig(
        **{**settings, "learning_rate": 0.0}, **one, init_adapter=str(top / "checkpoint-1"), out=str(tmp_path / "w")
    )
    wide_w = load_file(train_tokens(wide) / "checkpoint-1" / "adapter_model.safetensors")
    assert set(top_w) < set(wide_w) and all(torch.equal(wide_w[k], top_w[k]) for k in top_w)
    new = [k for k in wide_w if ".layers.0." in k]
    assert new and all(wide_w[k].abs().sum() == 0 for k in new if "lora_B" in k)
    assert any(wide_w[k].abs().sum() > 0 for k in new if "lora_A" in k)


def test_length_grouped_order_passes_every_row_once_per_epoch_in_batches_of_like_length():
    import numpy as np

    from recagent.rl.train_tokens import length_grouped_order, padded_tokens_per_batch

    lengths = np.random.default_rng(0).integers(50, 3000, size=1000)
    order = length_grouped_order(lengths, batch_size=16, epochs=2, seed=1)
    assert sorted(order[:1000]) == sorted(order[1000:]) == list(range(1000))
    assert (order == length_grouped_order(lengths, batch_size=16, epochs=2, seed=1)).all(), "seeded"
    assert not (order[:1000] == order[1000:]).all(), "each pass its own shuffle"
    shuffled = np.random.default_rng(2).permutation(np.concatenate([np.arange(1000)] * 2))
    grouped, plain = padded_tokens_per_batch(lengths, order, 16), padded_tokens_per_batch(lengths, shuffled, 16)
    assert grouped < 0.7 * plain, f"little padding: {grouped:.0f} vs {plain:.0f} tokens a batch"


def test_train_tokens_errors_are_one_line(token_rows, base_model, tmp_path, capsys):
    from recagent.rl.train_tokens import main as train_tokens_main

    (tmp_path / "rows.txt").write_text("not a token file")
    cases = [
        ([f"--tokens={tmp_path / 'rows.txt'}"], "is not a token-rows file"),
        ([f"--tokens={token_rows}", "--lora_r=0"], "lora_r must be >= 1"),
        ([f"--tokens={token_rows}", "--time_budget_s=0.000001"], "leaves no time for an update"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as e:
            train_tokens_main([f"--base={base_model}", f"--out={tmp_path / 'run'}", *extra])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1, err


def test_a_gguf_base_loads_as_the_sft_jobs_converted_checkpoint(local_checkpoint):
    from transformers import AutoModelForCausalLM

    from recagent.agents.local_model import find_default_gguf
    from recagent.rl.train_tokens import load_base

    from_gguf = load_base(find_default_gguf()).state_dict()
    converted = AutoModelForCausalLM.from_pretrained(local_checkpoint, dtype=torch.float32).state_dict()
    assert from_gguf.keys() == converted.keys()
    assert all(torch.equal(from_gguf[k], converted[k]) for k in converted)
