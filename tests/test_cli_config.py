"""``recagent config show JOB`` lists every key with type, default and help; one override parser for both config kinds."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recagent.cli.app import _register, app
from recagent.cli.config import JOBS
from recagent.errors import ConfigError


def _invoke(*args: str):
    _register()
    return CliRunner().invoke(app, list(args))


def _key_block(out: str, key: str) -> list[str]:
    """The line of ``key`` and its help line."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
    return lines[at : at + 2]


def test_config_show_lists_a_pydantic_jobs_keys_with_type_default_and_help():
    result = _invoke("config", "show", "chat")
    assert result.exit_code == 0, result.output
    assert _key_block(result.stdout, "policy.temperature") == [
        "policy.temperature: float = 0.0",
        "    sampling temperature (0 = greedy)",
    ]
    assert _key_block(result.stdout, "max_steps")[0] == "max_steps: int = 6"


def test_config_show_lists_a_trl_jobs_own_keys_first():
    result = _invoke("config", "show", "train", "sft")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert _key_block(out, "lora_r") == ["lora_r: int = 16", "    LoRA rank."]
    assert _key_block(out, "use_lora") == [
        "use_lora: bool = false",
        "    Train LoRA adapters (peft) instead of every weight.",
    ]
    # recagent's keys, then the library config's (TrainingArguments' eval_strategy with its choices)
    assert out.index("\ndata_dir:") < out.index("# keys of SFTConfig") < out.index("\neval_strategy:")
    assert "eval_strategy: 'no' | 'steps' | 'epoch' = 'no'" in out


def test_config_show_of_an_unknown_job_is_one_line_naming_the_known_jobs():
    result = _invoke("config", "show", "nope")
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "unknown job 'nope'" in lines[0] and all(job in lines[0] for job in JOBS)


@pytest.mark.parametrize("job", list(JOBS))
def test_every_job_with_a_config_points_to_config_show_in_its_help(job):
    result = _invoke(*job.split(), "--help")
    assert result.exit_code == 0
    assert f"recagent config show {job}" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("noequals", "override 'noequals' must look like key=value"),
        ("=1", "override '=1' has no key"),
        ("a..b=1", "override 'a..b=1': the key 'a..b' has an empty part"),
    ],
)
def test_overrides_fail_alike_for_pydantic_and_trl_configs(item, message):
    from recagent.rl.config_io import load_config
    from recagent.rl.sft import SFTJobConfig
    from recagent.tools.recommenders.registry import TrainJobConfig

    with pytest.raises(ConfigError) as pydantic_err:
        TrainJobConfig.build(model="sasrec").with_overrides([item])
    with pytest.raises(ConfigError) as trl_err:
        load_config(SFTJobConfig, None, [item])
    assert str(pydantic_err.value) == str(trl_err.value) == message


def test_a_dotted_override_into_a_value_names_the_value():
    from recagent.tools.recommenders.registry import TrainJobConfig

    with pytest.raises(ConfigError, match=r"'params.max_len' is not a mapping field; use params.max_len=VALUE"):
        TrainJobConfig.build(model="sasrec", params={"max_len": 20}).with_overrides(["params.max_len.x=1"])
