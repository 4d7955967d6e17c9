"""Every CPU-recipe config under examples/policy_cpu/ loads with its job's loader: the README's commands use them."""

from __future__ import annotations

from pathlib import Path

import pytest

from recagent.rl.sft import load_sft_config
from recagent.rl.train_rl import load_rl_config
from recagent.synth.config import SynthConfig

RECIPE = Path(__file__).resolve().parents[1] / "examples" / "policy_cpu"


@pytest.fixture
def data_dir(tmp_path):
    (tmp_path / "train.jsonl").write_text("")  # the loaders check that --data is a synthesis folder
    return tmp_path


@pytest.mark.parametrize(
    "name", ["sft.yaml", "sft_decisions.yaml", "sft_turns.yaml", "sft_chains.yaml", "sft_names.yaml"]
)
def test_sft_recipe_configs_load(name, data_dir):
    cfg = load_sft_config(RECIPE / name, [f"data_dir={data_dir}"])
    assert cfg.use_lora and cfg.shared_prefix and cfg.loss_per == "turn"


def test_decision_stage_weighs_the_first_token(data_dir):
    cfg = load_sft_config(RECIPE / "sft_decisions.yaml", [f"data_dir={data_dir}"])
    assert cfg.first_token_weight > 0 and not cfg.length_sorted_batches and cfg.whole_dialogs == 0


def test_turns_stage_adds_later_turns_and_variant_rows(data_dir):
    cfg = load_sft_config(RECIPE / "sft_turns.yaml", [f"data_dir={data_dir}"])
    assert cfg.later_decisions > 0 and cfg.unshared_share > 0 and cfg.length_band > 0 and not cfg.length_sorted_batches


def test_chains_stage_keeps_the_long_later_turns(data_dir):
    # a chain's next call follows a tool result ~1,400 tokens in: sft_turns.yaml's 1280 dropped 75% of them
    turns = load_sft_config(RECIPE / "sft_turns.yaml", [f"data_dir={data_dir}"])
    cfg = load_sft_config(RECIPE / "sft_chains.yaml", [f"data_dir={data_dir}"])
    assert cfg.max_length > turns.max_length and cfg.later_decisions == 1
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps == 16, "16 rows an update, as before"


def test_names_stage_is_the_chains_stage_with_the_tool_names_weighed(data_dir):
    chains = load_sft_config(RECIPE / "sft_chains.yaml", [f"data_dir={data_dir}"])
    cfg = load_sft_config(RECIPE / "sft_names.yaml", [f"data_dir={data_dir}"])
    assert cfg.name_token_weight > 0 and chains.name_token_weight == 0
    assert (cfg.max_length, cfg.later_decisions, cfg.lora_layers_from) == (
        chains.max_length,
        chains.later_decisions,
        chains.lora_layers_from,
    )


def test_rl_and_synth_recipe_configs_load(data_dir):
    assert load_rl_config(RECIPE / "grpo.yaml", [f"data_dir={data_dir}"]).algo == "grpo"
    assert SynthConfig.from_yaml(RECIPE / "synth.yaml").n > 0
