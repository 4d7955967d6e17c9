"""Step-grained PPO on CPU: value head, GAE over action tokens, masked observations, resume."""

from __future__ import annotations

import torch
import yaml
from datasets import Dataset

from recagent.rl.grpo import RL_CONFIG_FILE, task_row
from recagent.rl.ppo import StepPPOConfig, StepPPOTrainer, collate
from recagent.rl.rollout import Task
from recagent.tools.recommender_tools import build_registry
from tests.scripted_batch_policy import ScriptedBatchPolicy

CALL = '<tool_call>{"name": "popular_items", "arguments": {"genre": "Horror", "k": 2}}</tool_call>'
BAD = '<tool_call>{"name": "popular_items", "arguments": {"genre": "Polka"}}</tool_call>'


def tiny(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
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


def make(tok, env, out, **over):
    tools = [t for t in build_registry(env).openai_schemas() if t["function"]["name"] in ("popular_items", "get_item")]
    top = build_registry(env).call("popular_items", {"genre": "Horror", "k": 1}).result["items"][0]
    task = Task("t", [{"role": "user", "content": "The most popular horror film?"}], tools, {}, target=top["item_id"])
    args = StepPPOConfig(
        **{
            **dict(
                output_dir=str(out),
                per_device_train_batch_size=2,
                num_generations=2,
                max_steps=1,
                learning_rate=1e-2,
                use_cpu=True,
                bf16=False,
                report_to=[],
                save_strategy="no",
                max_episode_steps=3,
                max_turn_tokens=8,
                seed=0,
            ),
            **over,
        }
    )
    trainer = StepPPOTrainer(tiny(tok), args, Dataset.from_list([task_row(task)]), tok, env)
    # scripted policy: episodes alternate between calling well then answering, and failing
    trainer.generate_batch = ScriptedBatchPolicy(
        tok, [[CALL, f"Try {top['title']} ({top['year']}) [{top['item_id']}]."], [BAD, "Sorry."]]
    )
    return trainer


def test_ppo_step_updates_policy_and_value_head_on_action_tokens_only(smollm2_tokenizer, synthetic_env, tmp_path):
    trainer = make(smollm2_tokenizer, synthetic_env, tmp_path)
    eps = trainer.collect()
    b = collate(eps, smollm2_tokenizer.eos_token_id)
    # rewards sit on the last token of each step, nowhere else
    for i, e in enumerate(eps):
        ends = [end - 1 for _, end in e.spans]
        assert set(torch.nonzero(b.rewards[i]).flatten().tolist()) <= set(ends)
        assert b.rewards[i].sum().item() == torch.tensor(e.total_reward).item()
    b = trainer.prepare(eps)
    assert (b.advantages * (1 - b.action_mask)).abs().sum() == 0

    # masked positions do not reach the gradient
    def grads(batch):
        trainer.optimizer.zero_grad()
        trainer.loss(batch)[0].backward()
        return torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])

    base = grads(b)
    noisy = type(b)(
        **{
            **b.__dict__,
            "advantages": b.advantages + 50 * (1 - b.action_mask),
            "returns": b.returns + 50 * (1 - b.action_mask),
        }
    )
    assert torch.allclose(base, grads(noisy))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    v_before = trainer.value_head.v.weight.detach().clone()
    trainer.train()
    assert any(not torch.equal(before[n], p.detach()) for n, p in trainer.model.named_parameters())
    assert not torch.equal(v_before, trainer.value_head.v.weight.detach()), "the value head learned"
    assert trainer.metrics()["step"] == 1 and "value_loss" in trainer.metrics()


def test_ppo_resumes_from_its_checkpoint(smollm2_tokenizer, synthetic_env, tmp_path):
    first = make(smollm2_tokenizer, synthetic_env, tmp_path, max_steps=1, save_strategy="steps", save_steps=1)
    first.train()
    assert (tmp_path / "checkpoint-1" / "ppo_state.pt").is_file()
    second = make(smollm2_tokenizer, synthetic_env, tmp_path, max_steps=2, save_strategy="steps", save_steps=1)
    second.train(resume_from_checkpoint=True)
    assert [h["step"] for h in second.log_history] == [1, 2]
    w1 = first.value_head.v.weight.detach()
    assert not torch.equal(w1, second.value_head.v.weight.detach()), "step 2 trained on from step 1's state"
    saved = [yaml.safe_load((tmp_path / f"checkpoint-{n}" / RL_CONFIG_FILE).read_text()) for n in (1, 2)]
    assert [s["max_steps"] for s in saved] == [1, 2], "each checkpoint carries the config of the run that wrote it"
