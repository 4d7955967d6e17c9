"""Step-grained PPO on the same rollouts: a value head, GAE over action tokens, the clipped objective.

Why a module of our own: TRL 1.16 has no PPO trainer any more (``trl.experimental.ppo`` and the
value-head model were removed), and its GRPOTrainer replaces the model's forward with a fused LM
head that returns no hidden states, so a value head cannot ride along inside it. PPO here is the
textbook algorithm, kept small: it reuses the episode runner, the step rewards and the masks of
:mod:`recagent.rl.rollout`, and shares the config fields of :class:`StepGRPOConfig` (rollouts per
task, episode budget, reward weights, discount), adding only PPO's own.

- **Value head**: ``Linear(hidden, 1)`` on the policy's last hidden state (a shared backbone).
- **Rewards**: each step's reward sits on the step's last action token.
- **GAE** (:func:`recagent.rl.advantages.gae`) over action tokens only: observation tokens are
  neither states nor actions, so the recursion jumps over them.
- **Loss**: clipped policy ratio on action tokens, clipped value loss (``vf_coef``), averaged over
  action tokens; observation and padding tokens are masked out of both.
- **One process**: no distributed update; under ``accelerate launch`` / ``torchrun`` with more than one
  process it refuses to start (GRPO is the multi-GPU path).
- **Checkpoints**: policy, value head, optimizer, step and RNG state in ``checkpoint-N``; a run with
  ``resume_from_checkpoint`` continues from the latest one.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recagent.errors import RecagentError
from recagent.rl.advantages import gae
from recagent.rl.grpo import RL_CONFIG_FILE, StepGRPOConfig, task_of
from recagent.rl.rollout import Episode, RolloutEnvironment, generate_turns, run_episodes


@dataclass
class StepPPOConfig(StepGRPOConfig):
    """StepGRPOConfig plus PPO's own knobs."""

    clip_range: float = field(default=0.2, metadata={"help": "PPO ratio clip"})
    vf_coef: float = field(default=0.5, metadata={"help": "weight of the value loss"})
    value_clip: float = field(default=0.2, metadata={"help": "clip of the value update around the old value"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda over action tokens"})
    token_gamma: float = field(default=1.0, metadata={"help": "per-action-token discount in GAE"})
    ppo_epochs: int = field(default=2, metadata={"help": "optimisation passes over each batch of rollouts"})


class ValueHead(nn.Module):
    """A scalar value per token from the policy's hidden states."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.v = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.v.weight)
        nn.init.zeros_(self.v.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.v(hidden.float()).squeeze(-1)


@dataclass
class Batch:
    """Padded rollouts: ids, which completion tokens are actions, rewards on step ends, old log-probs and values."""

    input_ids: torch.Tensor  # (B, P + T), prompts left-padded
    attention: torch.Tensor
    prompt_len: int
    action_mask: torch.Tensor  # (B, T)
    rewards: torch.Tensor  # (B, T)
    old_logps: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None


def collate(episodes: list[Episode], pad_id: int) -> Batch:
    """Left-pad prompts and right-pad completions so completion token t is column ``P + t`` for every row."""
    p = max(len(e.prompt_ids) for e in episodes)
    t = max(len(e.completion_ids) for e in episodes)
    ids = torch.full((len(episodes), p + t), pad_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    act = torch.zeros(len(episodes), t)
    rew = torch.zeros(len(episodes), t)
    for i, e in enumerate(episodes):
        ids[i, p - len(e.prompt_ids) : p] = torch.tensor(e.prompt_ids)
        ids[i, p : p + len(e.completion_ids)] = torch.tensor(e.completion_ids)
        att[i, p - len(e.prompt_ids) : p + len(e.completion_ids)] = 1
        act[i, : len(e.action_mask)] = torch.tensor(e.action_mask, dtype=torch.float32)
        for (s, end), r in zip(e.spans, e.rewards):
            if end > s:
                rew[i, end - 1] += r.total
    return Batch(ids, att, p, act, rew)


class StepPPOTrainer:
    """PPO with a value head over real multi-step tool episodes."""

    def __init__(self, model, args: StepPPOConfig, train_dataset, processing_class, tool_env, constrain=None):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # nothing here synchronises processes: refuse, do not diverge
            raise RecagentError(
                "PPO runs in one process (it has no distributed update); for several GPUs use "
                "`train rl --algo grpo` under accelerate launch, or launch PPO without it"
            )
        self.model, self.args, self.tok = model, args, processing_class
        self.rows = list(train_dataset)
        self.tool_env = tool_env
        self.constrain = constrain  # each turn's grammar (rl.served_grammar.ServedGrammar), or None: sample freely
        self.value_head = ValueHead(model.config.hidden_size)
        params = list(model.parameters()) + list(self.value_head.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
        self.step = 0
        self.log_history: list[dict[str, float]] = []
        self.rng = random.Random(args.seed)

    # -- rollouts ----------------------------------------------------------------------------------------------

    def generate_batch(self, inputs: list[list[int]], constraints=None) -> list[list[int]]:
        """One sampled policy turn per live episode, batched (each under its grammar where ``constraints`` says)."""
        a = self.args
        return generate_turns(
            self.model,
            self.tok,
            inputs,
            a.max_turn_tokens,
            temperature=a.temperature,
            top_p=a.top_p,
            batch_size=a.rollout_batch_size,
            constraints=constraints,
        )

    def collect(self) -> list[Episode]:
        """``per_device_train_batch_size`` rollouts: tasks drawn in groups of ``num_generations``."""
        n_tasks = max(1, self.args.per_device_train_batch_size // self.args.num_generations)
        tasks = [task_of(self.rows[self.rng.randrange(len(self.rows))]) for _ in range(n_tasks)]
        group = [t for t in tasks for _ in range(self.args.num_generations)]
        self.model.eval()
        try:
            return run_episodes(
                self.generate_batch,
                self.tok,
                [RolloutEnvironment(self.tool_env) for _ in group],
                group,
                self.args.max_episode_steps,
                self.args.reward_weights_(),
                constrain=self.constrain,
            )
        finally:
            self.model.train()

    # -- forward pieces -----------------------------------------------------------------------------------------

    def logps_and_values(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-prob of each completion token and the value at each completion token, both (B, T)."""
        out = self.model(input_ids=b.input_ids, attention_mask=b.attention, output_hidden_states=True)
        logits = out.logits[:, b.prompt_len - 1 : -1].float()
        targets = b.input_ids[:, b.prompt_len :]
        logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        values = self.value_head(out.hidden_states[-1][:, b.prompt_len - 1 : -1])
        return logps, values

    def loss(self, b: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Clipped policy loss + clipped value loss over action tokens."""
        a = self.args
        logps, values = self.logps_and_values(b)
        mask = b.action_mask
        n = mask.sum().clamp(min=1)
        ratio = torch.exp(logps - b.old_logps)
        pg = torch.max(-b.advantages * ratio, -b.advantages * ratio.clamp(1 - a.clip_range, 1 + a.clip_range))
        v_clip = b.old_values + (values - b.old_values).clamp(-a.value_clip, a.value_clip)
        vf = 0.5 * torch.max((values - b.returns) ** 2, (v_clip - b.returns) ** 2)
        policy_loss, value_loss = (pg * mask).sum() / n, (vf * mask).sum() / n
        stats = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item()}
        return policy_loss + a.vf_coef * value_loss, stats

    def prepare(self, episodes: list[Episode]) -> Batch:
        """Old log-probs and values, then GAE advantages (whitened over action tokens) and returns."""
        b = collate(episodes, self.tok.pad_token_id or self.tok.eos_token_id)
        with torch.no_grad():
            b.old_logps, b.old_values = self.logps_and_values(b)
        adv, ret = gae(b.rewards, b.old_values, b.action_mask, self.args.token_gamma, self.args.gae_lambda)
        on = b.action_mask.bool()
        if on.sum() > 1:
            adv[on] = (adv[on] - adv[on].mean()) / (adv[on].std() + 1e-8)
        b.advantages, b.returns = adv * b.action_mask, ret
        return b

    # -- training ----------------------------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: bool | str | None = None) -> None:
        """Run until ``max_steps`` PPO iterations, checkpointing every ``save_steps``."""
        if resume_from_checkpoint:
            self.load(self._latest() if resume_from_checkpoint is True else Path(resume_from_checkpoint))
        while self.step < self.args.max_steps:
            eps = self.collect()
            b = self.prepare(eps)
            stats: dict[str, float] = {}
            for _ in range(self.args.ppo_epochs):
                loss, stats = self.loss(b)
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    list(self.model.parameters()) + list(self.value_head.parameters()), self.args.max_grad_norm
                )
                self.optimizer.step()
            self.step += 1
            calls = [c for e in eps for s in e.steps for c in s.calls]
            entry = {
                "step": self.step,
                **stats,
                "episode/return": sum(e.total_reward for e in eps) / len(eps),
                "tools/call_validity": sum(c.valid for c in calls) / len(calls) if calls else 0.0,
            }
            self.log_history.append(entry)
            if self.args.save_strategy == "steps" and self.step % int(self.args.save_steps) == 0:
                self.save(Path(self.args.output_dir) / f"checkpoint-{self.step}")

    def save(self, folder: Path) -> None:
        """Policy (HF format), value head, optimizer, step, RNG state, log and the run's config."""
        from recagent.rl.config_io import save_config

        folder.mkdir(parents=True, exist_ok=True)
        save_config(self.args, folder / RL_CONFIG_FILE)
        self.model.save_pretrained(folder)
        torch.save(
            {
                "value_head": self.value_head.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "rng": self.rng.getstate(),
                "torch_rng": torch.get_rng_state(),
            },
            folder / "ppo_state.pt",
        )
        (folder / "log_history.json").write_text(json.dumps(self.log_history))

    def load(self, folder: Path) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        from safetensors.torch import load_file

        weights = folder / "model.safetensors"
        self.model.load_state_dict(load_file(str(weights)), strict=False)
        state = torch.load(folder / "ppo_state.pt", weights_only=False)  # our own file
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        self.log_history = json.loads((folder / "log_history.json").read_text())

    def _latest(self) -> Path:
        runs = sorted(Path(self.args.output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        if not runs:
            raise FileNotFoundError(f"no checkpoint-* in {self.args.output_dir} to resume from")
        return runs[-1]

    def metrics(self) -> dict[str, Any]:
        """The latest logged entry."""
        return self.log_history[-1] if self.log_history else {}
