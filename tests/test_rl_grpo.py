"""Step-grained GRPO on CPU: a tiny random model, real tools, per-token advantages checked against the formulas."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, fields, replace

import pytest
import torch
import yaml
from datasets import Dataset

from recagent.rl.advantages import step_advantages_for_groups
from recagent.rl.grpo import RL_CONFIG_FILE, StepGRPOConfig, StepGRPOTrainer, task_row
from recagent.rl.rewards import RewardWeights
from recagent.rl.rollout import Task
from recagent.tools.recommender_tools import build_registry
from tests.scripted_batch_policy import ScriptedBatchPolicy

CALL = '<tool_call>{"name": "popular_items", "arguments": {"genre": "Horror", "k": 2}}</tool_call>'
BAD = '<tool_call>{"name": "popular_items", "arguments": {"genre": "Polka"}}</tool_call>'


def top_horror(env):
    """The most popular horror item: the target, and the answer that cites it."""
    it = build_registry(env).call("popular_items", {"genre": "Horror", "k": 1}).result["items"][0]
    return it["item_id"], f"Try {it['title']} ({it['year']}) [{it['item_id']}]."


@pytest.fixture()
def tiny_model(smollm2_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(smollm2_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=8192,
        eos_token_id=smollm2_tokenizer.eos_token_id,
        pad_token_id=smollm2_tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(cfg)


def make_trainer(model, tok, env, out_dir, other_ids=(), **overrides):
    tools = [t for t in build_registry(env).openai_schemas() if t["function"]["name"] in ("popular_items", "get_item")]
    task = Task(
        "t1",
        [
            {"role": "system", "content": "You recommend movies."},
            {"role": "user", "content": "The most popular horror film?"},
        ],
        tools,
        {},
        target=top_horror(env)[0],
    )
    # other_ids: the same task under other ids, so that the dataset holds several tasks
    data = Dataset.from_list([task_row(replace(task, task_id=t)) for t in ("t1", *other_ids) for _ in range(4)])
    settings = dict(
        output_dir=str(out_dir),
        per_device_train_batch_size=2,
        num_generations=2,
        gradient_accumulation_steps=1,
        max_steps=2,
        learning_rate=5e-2,
        max_completion_length=2048,
        max_episode_steps=3,
        max_turn_tokens=8,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        activation_checkpointing=False,
        disable_tqdm=True,
        seed=0,
        step_gamma=0.5,
    )
    args = StepGRPOConfig(**{**settings, **overrides})
    trainer = StepGRPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok, tool_env=env)
    # a scripted policy plays the episodes (a random model would only babble): the two rollouts of the group differ
    trainer.policy = ScriptedBatchPolicy(tok, [[CALL, top_horror(env)[1]], [BAD, "Sorry."]])
    trainer.turn_generator = lambda: nullcontext(trainer.policy)
    return trainer


def test_reward_weight_fields_are_the_reward_weights_defaults(tmp_path):
    # one config field per component, default and help taken from RewardWeights (stated there only)
    config = {f.name: f for f in fields(StepGRPOConfig)}
    weights = {f.name: f for f in fields(RewardWeights)}
    for name, w in weights.items():
        assert (
            config[f"reward_{name}"].default == w.default
            and config[f"reward_{name}"].metadata["help"] == w.metadata["help"]
        )
    assert StepGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[]).reward_weights_() == RewardWeights()
    args = StepGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], reward_task=3.0, reward_format=0.0)
    assert asdict(args.reward_weights_()) == {**asdict(RewardWeights()), "task": 3.0, "format": 0.0}


def test_step_grpo_trains_with_per_token_step_advantages(tiny_model, smollm2_tokenizer, synthetic_env, tmp_path):
    tok = smollm2_tokenizer
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    trainer = make_trainer(tiny_model, tok, synthetic_env, tmp_path)
    trainer.train()
    after = dict(tiny_model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before), "the policy's weights moved"

    batch, eps = trainer.last_batch, trainer.episodes
    assert len(eps) == 2 and [r.kind for r in eps[0].records] == ["tool_call", "answer"]
    assert [r.kind for r in eps[1].records] == ["invalid_call", "answer"]
    # by hand: good = [success .5 + contribution 1, task 2]; bad = [0, 0]; gamma .5 -> returns [2.5, 2] and [0, 0]
    totals = [[r.total for r in ep.rewards] for ep in eps]
    assert totals == [[1.5, 2.0], [0.0, 0.0]]
    expected = step_advantages_for_groups(totals, 2, gamma=0.5)
    mean, std = (2.5 + 2 + 0 + 0) / 4, torch.tensor([2.5, 2.0, 0.0, 0.0]).std(unbiased=False).item()
    assert expected[0] == pytest.approx([(2.5 - mean) / (std + 1e-4), (2.0 - mean) / (std + 1e-4)])
    adv = batch["advantages"]
    assert adv.dim() == 2
    for i, ep in enumerate(eps):
        for (s, e), a in zip(ep.spans, expected[i]):
            assert torch.allclose(adv[i, s:e], torch.tensor(a))
        obs = [t for t, m in enumerate(ep.action_mask) if not m]
        assert obs and adv[i, obs].abs().sum() == 0, "observation tokens get no advantage"
        assert adv[i, len(ep.completion_ids) :].abs().sum() == 0, "padding gets no advantage"
        assert batch["tool_mask"][i, obs].sum() == 0
    logged = {k for h in trainer.state.log_history for k in h}
    assert {"rewards/step/success/mean", "rewards/step/task/mean", "tools/call_validity/mean"} & logged or {
        "rewards/step/success",
        "rewards/step/task",
        "tools/call_validity",
    } <= logged


def test_masked_tokens_get_no_gradient(tiny_model, smollm2_tokenizer, synthetic_env, tmp_path):
    trainer = make_trainer(tiny_model, smollm2_tokenizer, synthetic_env, tmp_path, max_steps=1)
    trainer.train()
    batch = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in trainer.last_batch.items()}
    mask = batch["completion_mask"] * batch["tool_mask"]

    def grads(advantages):
        tiny_model.zero_grad()
        b = dict(batch, advantages=advantages)
        trainer.compute_loss(tiny_model, b).backward()
        return torch.cat([p.grad.flatten() for p in tiny_model.parameters() if p.grad is not None])

    base = grads(batch["advantages"])
    noisy = batch["advantages"] + 100.0 * (1 - mask)  # change only masked (observation / padding) positions
    assert torch.allclose(base, grads(noisy)), "masked tokens do not reach the gradient"
    assert not torch.allclose(base, grads(batch["advantages"] * 3)), "action tokens do"


def test_a_resumed_run_continues_from_its_checkpoint(smollm2_tokenizer, synthetic_env, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    def model():
        torch.manual_seed(0)
        tok = smollm2_tokenizer
        return LlamaForCausalLM(
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

    first = make_trainer(
        model(), smollm2_tokenizer, synthetic_env, tmp_path, max_steps=1, save_strategy="steps", save_steps=1
    )
    first.train()
    assert (tmp_path / "checkpoint-1").is_dir()
    second = make_trainer(
        model(), smollm2_tokenizer, synthetic_env, tmp_path, max_steps=2, save_strategy="steps", save_steps=1
    )
    second.train(resume_from_checkpoint=True)
    assert second.state.global_step == 2
    steps = [h["step"] for h in second.state.log_history if "loss" in h]
    assert steps == [1, 2] and (tmp_path / "checkpoint-2").is_dir(), "step 1 came from the checkpoint, step 2 is new"
    # every checkpoint carries the config of the run that wrote it
    saved = [yaml.safe_load((tmp_path / f"checkpoint-{n}" / RL_CONFIG_FILE).read_text()) for n in (1, 2)]
    assert [s["max_steps"] for s in saved] == [1, 2] and saved[1]["reward_task"] == first.args.reward_task


BAD2 = '<tool_call>{"name": "popular_items", "arguments": {"genre": "Opera"}}</tool_call>'


@pytest.mark.parametrize("redraws", [0, 1, 2])
def test_a_group_of_equal_returns_is_redrawn_from_other_training_tasks(
    redraws, tiny_model, smollm2_tokenizer, synthetic_env, tmp_path, monkeypatch
):
    tok, env = smollm2_tokenizer, synthetic_env
    trainer = make_trainer(
        tiny_model, tok, env, tmp_path, other_ids=("t2", "t3"), max_steps=1, redraw_uniform_groups=redraws
    )
    # two different invalid calls, both rewarded 0 at every step (zero advantage), twice; then a good and a bad call
    uniform = [[BAD, "Sorry."], [BAD2, "No."]]
    trainer.policy = ScriptedBatchPolicy(tok, [*uniform, *uniform, [CALL, top_horror(env)[1]], [BAD, "No."]])
    drawn = []
    rollout = trainer.rollout

    def spy(prompts, t):
        drawn.append([r["task_id"] for r in trainer._rows])
        return rollout(prompts, t)

    monkeypatch.setattr(trainer, "rollout_func", spy)
    trainer.train()
    totals = [[r.total for r in ep.rewards] for ep in trainer.episodes]
    logged = {k: v for h in trainer.state.log_history for k, v in h.items() if k.startswith("groups/")}
    played = {ep.task.task_id for ep in trainer.episodes}
    assert drawn and len(set(drawn[0])) == 1
    if redraws == 2:  # redrawn once (still uniform), then again: its returns differ, so it is kept
        assert trainer.policy.started == 6 and totals == [[1.5, 2.0], [0.0, 0.0]]
        assert trainer.last_batch["advantages"].abs().sum() > 0
        assert logged == {"groups/uniform_drawn": 1.0, "groups/uniform_kept": 0.0}
    else:  # no redraw, or one that is uniform too: the group teaches nothing
        assert trainer.policy.started == 2 + 2 * redraws and totals == [[0.0, 0.0], [0.0, 0.0]]
        assert trainer.last_batch["advantages"].abs().sum() == 0
        assert logged == {"groups/uniform_drawn": 1.0, "groups/uniform_kept": 1.0}
    # a replacement is another training task (never one playing or tried), in the rows TRL scores too
    assert len(played) == 1 and (played != set(drawn[0]) if redraws else played == set(drawn[0]))
    assert {r["task_id"] for r in trainer._rows} == played
    assert len(trainer.rollout_environments) == len(trainer.episodes) == 2


def test_uniform_means_equal_returns_over_every_step_of_the_group():
    from recagent.rl.grpo import _uniform
    from recagent.rl.rewards import StepReward
    from recagent.rl.rollout import Episode

    def ep(*rewards):
        return Episode(Task("t", [], [], {}), [], rewards=[StepReward(r, {}) for r in rewards])

    assert _uniform([ep(0.0, 0.0), ep(0.0, 0.0)], gamma=0.5)
    assert _uniform([ep(1.0), ep(1.0)], gamma=0.5)
    # equal rewards per step, yet the first step's return (0.25) beats the second's (0): advantages are not zero
    assert not _uniform([ep(0.25, 0.0), ep(0.25, 0.0)], gamma=0.5)
    assert not _uniform([ep(1.0), ep(0.0)], gamma=0.5)


def test_redraws_need_grpo_and_a_count(tmp_path):
    with pytest.raises(ValueError, match="redraw_uniform_groups must be 0 or more"):
        StepGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], redraw_uniform_groups=-1)
