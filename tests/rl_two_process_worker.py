"""One process of a 2-process StepGRPO run on CPU (torch.distributed, gloo), started by test_rl_grpo_multiprocess.py.

Each process plays one rollout of the same task (rank 0 a good episode, rank 1 a bad one), so the task's
group of two is split across the processes. It trains one step and writes what it saw to OUT/rank<r>.json.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from recagent.agents.local_model import find_default_gguf
from recagent.rl.grpo import StepGRPOConfig, StepGRPOTrainer, task_row
from recagent.rl.rollout import Task
from recagent.tools.data import leave_one_out
from recagent.tools.data.synthetic import make_synthetic
from recagent.tools.env import ToolEnv, ToolEnvConfig
from recagent.tools.recommender_tools import build_registry
from recagent.tools.recommenders import MODELS
from tests.scripted_batch_policy import ScriptedBatchPolicy

CALL = '<tool_call>{"name": "popular_items", "arguments": {"genre": "Horror", "k": 2}}</tool_call>'
BAD = '<tool_call>{"name": "popular_items", "arguments": {"genre": "Polka"}}</tool_call>'


def main(out: Path) -> None:
    data = make_synthetic(n_users=120, n_items=60, seed=0)
    split = leave_one_out(data)
    models = {}
    for name, cls in MODELS.items():
        m = cls(cls.config_cls(**({"max_epochs": 1} if name in ("bpr", "sasrec") else {})))
        m.fit(split, show_progress=False)
        models[name] = m
    env = ToolEnv(data, split, models, ToolEnvConfig(dataset="synthetic"))
    gguf = find_default_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    torch.manual_seed(0)  # the same initial weights on both processes
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=8192,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
    )
    top = build_registry(env).call("popular_items", {"genre": "Horror", "k": 1}).result["items"][0]
    answer = f"Try {top['title']} ({top['year']}) [{top['item_id']}]."
    tools = [t for t in build_registry(env).openai_schemas() if t["function"]["name"] in ("popular_items", "get_item")]
    task = Task(
        "t1",
        [
            {"role": "system", "content": "You recommend movies."},
            {"role": "user", "content": "The most popular horror film?"},
        ],
        tools,
        {},
        target=top["item_id"],
    )
    args = StepGRPOConfig(
        output_dir=str(out / "run"),
        per_device_train_batch_size=1,
        num_generations=2,
        gradient_accumulation_steps=1,
        max_steps=1,
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
    trainer = StepGRPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([task_row(task)] * 4),
        processing_class=tok,
        tool_env=env,
    )
    rank = trainer.accelerator.process_index
    policy = ScriptedBatchPolicy(tok, [[CALL, answer] if rank == 0 else [BAD, "Sorry."]])
    trainer.turn_generator = lambda: nullcontext(policy)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    trainer.train()
    after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    batch, eps = trainer.last_batch, trainer.episodes
    (out / f"rank{rank}.json").write_text(
        json.dumps(
            {
                "world": trainer.accelerator.num_processes,
                "step_rewards": [[r.total for r in ep.rewards] for ep in eps],
                "spans": [[list(s) for s in ep.spans] for ep in eps],
                "advantages": batch["advantages"].tolist(),
                "moved": float((after - before).abs().sum()),
                "checksum": float(after.double().sum()),
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
