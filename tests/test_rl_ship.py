"""``recagent train ship``: a trained LoRA adapter installed as the default policy, with a card from its run's files."""

from __future__ import annotations

import json

import pytest
import yaml

from recagent.cli import main
from recagent.errors import RecagentError
from recagent.rl.ship import PORTABLE_BASE, ship_adapter


@pytest.fixture()
def adapter(tmp_path):
    """A LoRA adapter folder of a tiny Llama as an SFT checkpoint leaves it: adapter, job config, trainer state."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    folder = tmp_path / "checkpoint-40"
    get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).save_pretrained(folder)
    (folder / "sft_config.yaml").write_text(
        yaml.safe_dump(
            {
                "lora_r": 4,
                "lora_alpha": 8,
                "max_samples": 3200,
                "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 2,
                "learning_rate": 5e-4,
            }
        )
    )
    (folder / "trainer_state.json").write_text(
        json.dumps({"global_step": 40, "log_history": [{"loss": 0.81, "step": 1}, {"loss": 0.25, "step": 40}]})
    )
    return folder


def test_ship_installs_the_adapter_with_a_card_from_its_run(adapter, tmp_path):
    synth = tmp_path / "synth"
    synth.mkdir()
    (synth / "config.yaml").write_text(yaml.safe_dump({"seed": 7, "n": 4000}))
    report = tmp_path / "report.json"
    report.write_text(
        json.dumps(
            {
                "metrics_markdown": "| metric | value |\n|---|---|\n| first call | 0.42 [0.3, 0.5] |",
                "training": {"summary": "150 updates in 88 min on AMD EPYC, 2 cores"},
            }
        )
    )
    dest = tmp_path / "weights" / "recagent-smollm2-135m"
    shipped = ship_adapter(
        adapter, dest, synth, report, command="recagent train sft --config examples/policy_cpu/sft.yaml"
    )
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert json.loads((dest / "adapter_config.json").read_text())["base_model_name_or_path"] == PORTABLE_BASE
    assert (dest / "adapter_model.safetensors").read_bytes() == (adapter / "adapter_model.safetensors").read_bytes()
    card = (dest / "README.md").read_text()
    for fact in (
        "seed 7, 4000 dialogs",
        "40 updates of 8 dialogs",
        "mean loss of the first / last 1 updates 0.81 -> 0.25",
        "first call | 0.42 [0.3, 0.5]",
        "150 updates in 88 min",
        "recagent train sft --config examples/policy_cpu/sft.yaml",
    ):
        assert fact in card, fact
    assert shipped.card == card, (shipped.card, card)
    assert 0 < shipped.adapter_mb < 1, shipped.adapter_mb


def test_ship_refuses_what_cannot_ship_in_one_line(adapter, tmp_path, capsys):
    dest = tmp_path / "dest"
    with pytest.raises(RecagentError, match="over the 0 MB the package may carry: lower lora_r"):
        ship_adapter(adapter, dest, max_mb=0.0001)
    assert not dest.exists()  # nothing half-installed
    assert main(["train", "ship", str(tmp_path / "nowhere"), "--dest", str(dest)]) != 0
    err = capsys.readouterr().err
    assert "is not a LoRA adapter folder: adapter_model.safetensors, adapter_config.json missing" in err
    assert "Traceback" not in err


def test_a_tool_router_in_the_adapter_folder_ships_beside_it(adapter, tmp_path):
    import numpy as np

    from recagent.agents.tool_router import ROUTER_FILE, FeatureBlock, ToolRouter

    block = FeatureBlock("word", (1, 1), {"comedy": 0}, np.ones(1))
    router = ToolRouter([block], np.array([[1.0], [-1.0]]), np.zeros(2), ["filter_items", "popular_items"])
    router.save(adapter / ROUTER_FILE)
    dest = tmp_path / "dest"
    ship_adapter(adapter, dest)
    assert ToolRouter.load(dest / ROUTER_FILE).rank("comedy") == ["filter_items", "popular_items"]
    assert "**Tool router**" in (dest / "README.md").read_text()
    (adapter / ROUTER_FILE).write_bytes(b"not a router")
    with pytest.raises(RecagentError, match="is not a tool router"):
        ship_adapter(adapter, tmp_path / "dest2")
    assert not (tmp_path / "dest2").exists()


def test_a_router_added_to_a_shipped_adapter_updates_its_card_and_keeps_the_adapter(adapter, tmp_path, capsys):
    import numpy as np

    from recagent.agents.tool_router import ROUTER_FILE, FeatureBlock, ToolRouter
    from recagent.rl.ship import ROUTER_BULLET, add_router, router_line

    dest = tmp_path / "dest"
    report = tmp_path / "report.json"
    report.write_text(
        json.dumps({"metrics_markdown": "| metric | value |\n|---|---|\n| first call | 0.42 [0.3, 0.5] |"})
    )
    ship_adapter(adapter, dest, report=report, command="recagent train sft --config a.yaml")
    weights = (dest / "adapter_model.safetensors").read_bytes()
    block = FeatureBlock("word", (1, 1), {"comedy": 0}, np.ones(1))
    router = ToolRouter([block], np.array([[1.0], [-1.0]]), np.zeros(2), ["filter_items", "popular_items"])
    path = router.save(tmp_path / "r.npz")
    machine = {"cpu": "AMD EPYC", "cpu_count": 2, "cpu_flags": ["avx512f"], "torch": "2.13.0+cpu"}
    metrics = "| metric | value |\n|---|---|\n| first call | 0.61 [0.5, 0.7] |"
    report.write_text(json.dumps({"metrics_markdown": metrics, "machine": machine}))
    assert (
        main(
            [
                "train",
                "ship-router",
                str(path),
                "--dest",
                str(dest),
                "--report",
                str(report),
                "--command",
                "recagent train router --data D --out R",
            ]
        )
        == 0
    )
    card = (dest / "README.md").read_text()
    assert ToolRouter.load(dest / ROUTER_FILE).rank("comedy")[0] == "filter_items"
    assert (dest / "adapter_model.safetensors").read_bytes() == weights
    line = router_line(slots=False)
    assert card.count(ROUTER_BULLET) == 1 and card.index(line) < card.index("## Metrics")
    assert "0.61 [0.5, 0.7]" in card and "0.42" not in card and "40 updates of 8 dialogs" in card
    assert "- **Evaluated on**: AMD EPYC, 2 cores" in card
    assert "recagent train sft --config a.yaml\nrecagent train router --data D --out R\n```" in card
    assert add_router(dest, path) == card  # again, with nothing new: the same card
    router.slots = True  # a router that reads the request's slots replaces the line
    card = add_router(dest, router.save(tmp_path / "s.npz"))
    assert card.count(ROUTER_BULLET) == 1 and router_line(slots=True) in card and "request's slots" in card
    router.reply_coef, router.reply_intercept, router.reply_classes = np.zeros((2, 1)), np.zeros(2), ["(answer)", "x"]
    card = add_router(dest, router.save(tmp_path / "r.npz"))  # one with a reply head: the line says what it decides
    assert card.count(ROUTER_BULLET) == 1 and router_line(True, replies=True) in card and "reply head" in card
    router.save_coef, router.save_tool_coef = np.zeros(1), {"x": 0.0}
    card = add_router(dest, router.save(tmp_path / "v.npz"))  # and a save head
    assert card.count(ROUTER_BULLET) == 1 and router_line(True, True, saves=True) in card and "save head" in card
    assert main(["train", "ship-router", str(tmp_path / "report.json"), "--dest", str(dest)]) != 0
    assert "is not a tool router" in capsys.readouterr().err
    assert main(["train", "ship-router", str(path), "--dest", str(tmp_path / "empty")]) != 0
    assert "holds no shipped adapter and card" in capsys.readouterr().err
