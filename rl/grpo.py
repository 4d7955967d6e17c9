"""Step-grained GRPO (StepTool on TRL): the parent generates and scores, this class only replaces the advantages.

:class:`StepGRPOTrainer` is TRL's ``GRPOTrainer`` with two additions and nothing rebuilt:

- a ``rollout_func`` (:meth:`StepGRPOTrainer.rollout`) that plays real episodes in the recommender
  environment with the serving prompt format (:mod:`recagent.rl.rollout`) and hands TRL the token
  ids, the ``env_mask`` (TRL's ``tool_mask``: observation tokens get no loss), and, as extra
  fields, each episode's step rewards and step token spans;
- an override of ``_generate_and_score_completions`` that calls the parent (generation, reference
  and old log-probs, the scalar episode reward through :func:`episode_reward`, logging) and then
  replaces the (B,) advantages by (B, T) per-token ones: each step's discounted return,
  normalised over every step of the G rollouts of the same task, on that step's tokens only.
  TRL's loss takes (B, T) advantages as they are (``advantages.dim() == 1`` is the only
  broadcast), and multiplies by ``completion_mask * tool_mask``.

Reward components are logged separately (``rewards/step/<component>``), with the call-validity
rate and episode length.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

from accelerate.utils import gather_object
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.models.utils import unwrap_model_for_generation

from recagent.errors import RecagentError
from recagent.rl.advantages import discounted_returns, step_advantages_for_groups, token_advantages
from recagent.rl.rewards import RewardWeights
from recagent.rl.rollout import (
    Constrain,
    Episode,
    GenerateBatch,
    RolloutEnvironment,
    Task,
    generate_turns,
    run_episodes,
)
from recagent.rl.vllm_turns import VLLMTurns

_REWARD_WEIGHTS = {f.name: f for f in fields(RewardWeights)}


def reward_weight_field(component: str) -> Any:
    """The config field ``reward_<component>``: default and help of that component in :class:`RewardWeights`."""
    w = _REWARD_WEIGHTS[component]
    return field(default=w.default, metadata=dict(w.metadata))


@dataclass
class StepGRPOConfig(GRPOConfig):
    """GRPOConfig plus the step-grained parts: discount, reward weights, episode budget."""

    step_gamma: float = field(default=0.9, metadata={"help": "discount of later step rewards in a step's return"})
    scale_step_advantages: bool = field(
        default=True, metadata={"help": "divide step returns by the group's std (False: only remove the mean)"}
    )
    max_episode_steps: int = field(default=4, metadata={"help": "policy turns per episode (tool calls + answer)"})
    max_turn_tokens: int = field(
        default=160,
        metadata={
            "help": "new tokens per policy turn (a cut turn earns no call reward: synthesized parallel-call turns "
            "reach ~100 SmolLM2 tokens)"
        },
    )
    rollout_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "episodes per batched generate call in a rollout round (None: all live ones; 1 is faster on "
            "CPU, where prefilling the tool prompt dominates; see benchmarks/rollout_throughput.py)"
        },
    )
    redraw_uniform_groups: int = field(
        default=0,
        metadata={
            "help": "times a group whose step returns are all equal (zero advantage on every token: it teaches "
            "nothing, yet costs a backward pass) is replaced by the rollouts of another training task drawn at "
            "random (DAPO's dynamic sampling); 0: keep every group as drawn"
        },
    )
    # one field per RewardWeights component (so `-o reward_task=3` works); defaults and help come from there
    reward_success: float = reward_weight_field("success")
    reward_contribution: float = reward_weight_field("contribution")
    reward_task: float = reward_weight_field("task")
    reward_format: float = reward_weight_field("format")
    reward_name: float = reward_weight_field("name")
    reward_param_name: float = reward_weight_field("param_name")
    reward_param_value: float = reward_weight_field("param_value")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.step_gamma <= 1.0:
            raise ValueError(f"step_gamma must be in [0, 1], got {self.step_gamma}")
        if self.max_episode_steps < 1:
            raise ValueError("max_episode_steps must be at least 1 (one turn: answer directly)")
        if self.redraw_uniform_groups < 0:
            raise ValueError(f"redraw_uniform_groups must be 0 or more, got {self.redraw_uniform_groups}")
        if self.rollout_batch_size is not None and self.rollout_batch_size < 1:
            raise ValueError(
                f"rollout_batch_size must be at least 1 or None (all live episodes), got {self.rollout_batch_size}"
            )

    def reward_weights_(self) -> RewardWeights:
        """The reward weights as the reward module takes them."""
        return RewardWeights(**{name: getattr(self, f"reward_{name}") for name in _REWARD_WEIGHTS})


def episode_reward(completions, episode_total=None, **_: Any) -> list[float]:
    """The scalar reward TRL logs and normalises (its advantages are replaced by the step-grained ones)."""
    return [float(x) for x in episode_total]


def _uniform(group: list[Episode], gamma: float) -> bool:
    """Whether every step return of every rollout in a group is equal, so that every step advantage is zero."""
    # advantages normalise the returns of all steps of the group together (rl.advantages.group_normalised), so
    # rollouts with equal rewards per step still teach something when their steps' returns differ
    return len({round(g, 9) for ep in group for g in discounted_returns([r.total for r in ep.rewards], gamma)}) <= 1


def task_row(task: Task) -> dict[str, Any]:
    """A dataset row for a task: ``prompt`` plus JSON columns the rollout reads back."""
    return {
        "prompt": task.messages,
        "task_id": task.task_id,
        "task_tools": json.dumps(task.tools),
        "task_variants": json.dumps(task.tool_variants),
        "task_target": task.target or "",
        "task_gold": json.dumps(task.gold_calls) if task.gold_calls is not None else "",
        "task_user": task.user_id or "",
    }


def task_of(row: dict[str, Any]) -> Task:
    """The task a dataset row describes."""
    return Task(
        task_id=row["task_id"],
        messages=row["prompt"],
        tools=json.loads(row["task_tools"]),
        tool_variants=json.loads(row["task_variants"]),
        target=row.get("task_target") or None,
        gold_calls=json.loads(row["task_gold"]) if row.get("task_gold") else None,
        user_id=row.get("task_user") or None,
    )


RL_CONFIG_FILE = "rl_config.yaml"  # the config beside every RL checkpoint and final model (SFT: sft_config.yaml)


class SaveConfigWithCheckpoints(TrainerCallback):
    """Writes the run's config into every checkpoint, so that a checkpoint says what made it (as SFT's do)."""

    def on_save(self, args, state, control, **kwargs):
        from recagent.rl.config_io import save_config

        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and state.is_world_process_zero:
            save_config(args, ckpt / RL_CONFIG_FILE)


class StepGRPOTrainer(GRPOTrainer):
    """GRPO with StepTool's step-grained advantages over real tool episodes."""

    def __init__(
        self,
        model,
        args: StepGRPOConfig,
        train_dataset,
        processing_class,
        tool_env,
        constrain: Constrain | None = None,
        **kwargs: Any,
    ):
        self.tool_env = tool_env
        self.constrain = constrain  # each turn's grammar (rl.served_grammar.ServedGrammar), or None: sample freely
        if constrain is not None and args.use_vllm:
            raise RecagentError("served-grammar rollouts decode with transformers: set use_vllm=false")
        self.rollout_environments: list[RolloutEnvironment] = []  # one per episode of the latest batch
        self._uniform_groups: tuple[int, int] = (0, 0)  # (uniform as first drawn, uniform after redraws) of the batch
        self._rows: list[dict[str, Any]] = []
        self.episodes: list[Episode] = []  # the latest batch, for inspection and tests
        with warnings.catch_warnings():  # rollout_func is "experimental" in TRL 1.16; we depend on it knowingly
            warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
            super().__init__(
                model=model,
                reward_funcs=[episode_reward],
                args=args,
                train_dataset=train_dataset,
                processing_class=processing_class,
                rollout_func=self.rollout,
                callbacks=[*(kwargs.pop("callbacks", None) or []), SaveConfigWithCheckpoints()],
                **kwargs,
            )
        if args.redraw_uniform_groups and self.accelerator.num_processes > 1:
            # a task's G rollouts may sit on several processes, which would each redraw on their own
            raise RecagentError("redraw_uniform_groups needs one process: set it to 0 for a multi-process run")

    # -- generation ----------------------------------------------------------------------------------------------

    @contextmanager
    def turn_generator(self) -> Iterator[GenerateBatch]:
        """The policy as a batch generator for one rollout: TRL's vLLM backend with ``use_vllm``, else ``generate``."""
        a = self.args
        if self.use_vllm:  # TRL synced the vLLM weights before calling the rollout function
            yield VLLMTurns(
                self.vllm_generation,
                a.max_turn_tokens,
                width=len(self._rows),
                placeholder=self.processing_class.eos_token_id,
                pad=self._vllm_lockstep(),
            )
            return
        # TRL's own unwrapping: ZeRO-3 parameters are gathered once for the whole rollout, not per forward
        with unwrap_model_for_generation(
            self.model_wrapped,
            self.accelerator,
            gather_deepspeed3_params=a.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=a.gradient_checkpointing_kwargs,
        ) as model:
            yield partial(
                generate_turns,
                model,
                self.processing_class,
                max_new_tokens=a.max_turn_tokens,
                temperature=a.temperature,
                top_p=a.top_p,
                batch_size=a.rollout_batch_size,
            )

    def _vllm_lockstep(self) -> bool:
        """Whether each vLLM call gathers prompts across processes (server mode, tensor parallelism), so all call alike."""
        a = self.args
        return (
            self.use_vllm
            and self.accelerator.num_processes > 1
            and (a.vllm_mode == "server" or a.vllm_tensor_parallel_size > 1)
        )

    def rollout(self, prompts: list, trainer: GRPOTrainer) -> dict[str, Any]:
        """TRL's rollout_func: one real episode per row (rows come in groups of G), played in lock-step; ids and masks out."""
        rows = self._rows
        if len(rows) != len(prompts):
            raise RuntimeError("rollout called without its dataset rows")
        self.rollout_environments = [RolloutEnvironment(self.tool_env) for _ in rows]
        was_training = self.model.training
        self.model.eval()
        try:
            with self.turn_generator() as generate:
                eps = run_episodes(
                    generate,
                    self.processing_class,
                    self.rollout_environments,
                    [task_of(r) for r in rows],
                    self.args.max_episode_steps,
                    self.args.reward_weights_(),
                    fixed_rounds=self._vllm_lockstep(),
                    constrain=self.constrain,
                )
                eps = self._redraw_uniform(generate, rows, eps, training=was_training)
        finally:
            self.model.train(was_training)
        self.episodes = eps
        limit = self.args.max_completion_length
        totals = []
        for ep in eps:
            steps = [r.total for r in ep.rewards]
            if len(ep.completion_ids) > limit:  # keep the loss inside the completion budget...
                ep.completion_ids, ep.action_mask = ep.completion_ids[:limit], ep.action_mask[:limit]
                ep.sampling_logprobs = ep.sampling_logprobs[:limit] if ep.sampling_logprobs is not None else None
                ep.spans = [(s, min(e, limit)) for s, e in ep.spans if s < limit]
                # ...but not by dropping rewards: later steps' rewards go to the last step that is kept
                steps = steps[: len(ep.spans) - 1] + [sum(steps[len(ep.spans) - 1 :])]
            totals.append(steps)
        return {
            "prompt_ids": [ep.prompt_ids for ep in eps],
            "completion_ids": [ep.completion_ids for ep in eps],
            # vLLM's sampling log-probs feed TRL's importance-sampling correction; transformers generation needs none
            "logprobs": [ep.sampling_logprobs for ep in eps]
            if all(ep.sampling_logprobs is not None for ep in eps)
            else None,
            "env_mask": [ep.action_mask for ep in eps],
            "episode_total": [ep.total_reward for ep in eps],
            "step_rewards": totals,
            "step_spans": [[list(s) for s in ep.spans] for ep in eps],
        }

    def _redraw_uniform(
        self, generate: GenerateBatch, rows: list[dict[str, Any]], eps: list[Episode], training: bool
    ) -> list[Episode]:
        """Replace each group whose step returns are all equal by another training task's rollouts, up to N times.

        The replacement is one of the trainer's own (leakage-checked) training rows not in the batch nor tried, and
        takes the group's rows in place (``rows`` is TRL's ``inputs``), so the rewards and advantages are those of
        the task played; TRL's completion log keeps the prompt it drew (it reads prompts before the rollout).
        Uniformity is judged before the rollout cuts episodes to ``max_completion_length``. Evaluation batches
        are only counted, never redrawn.
        """
        group = self.num_generations if training else self.num_generations_eval
        tries = self.args.redraw_uniform_groups if training else 0
        gamma = self.args.step_gamma
        # seeded by the update and the generation within it: a resumed run draws the same tasks
        rng = random.Random(f"{self.args.seed}/{self.state.global_step}/{self._step}")
        task_ids = self.train_dataset["task_id"] if tries else []
        before = after = 0
        for g in range(0, len(eps), group):
            uniform = _uniform(eps[g : g + group], gamma)
            before += uniform
            tried = {r["task_id"] for r in rows[g : g + group]}
            for _ in range(tries if uniform else 0):
                playing = tried | {r["task_id"] for r in rows}
                choices = [i for i, t in enumerate(task_ids) if t not in playing]
                if not choices:  # every training task is in this batch or was tried for this group
                    break
                row = dict(self.train_dataset[rng.choice(choices)])
                tried.add(row["task_id"])
                envs = [RolloutEnvironment(self.tool_env) for _ in range(group)]
                eps[g : g + group] = run_episodes(
                    generate,
                    self.processing_class,
                    envs,
                    [task_of(row)] * group,
                    self.args.max_episode_steps,
                    self.args.reward_weights_(),
                    constrain=self.constrain,
                )
                self.rollout_environments[g : g + group] = envs
                for r in rows[g : g + group]:
                    r.clear()
                    r.update(row)
                uniform = _uniform(eps[g : g + group], gamma)
                if not uniform:
                    break
            after += uniform
        self._uniform_groups = (before, after)
        return eps

    # -- step-grained advantages ---------------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._rows = inputs
        out = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        rewards = [inp["step_rewards"] for inp in inputs]
        spans = [[tuple(s) for s in inp["step_spans"]] for inp in inputs]
        # a task's G rollouts may sit on several processes: normalise over the whole group, as TRL does with its
        # scalar rewards (gather in process order, compute, keep this process's slice)
        everyone = gather_object(rewards) if self.accelerator.num_processes > 1 else rewards
        start = self.accelerator.process_index * len(rewards)
        step_adv = step_advantages_for_groups(everyone, group, self.args.step_gamma, self.args.scale_step_advantages)
        step_adv = step_adv[start : start + len(rewards)]
        length = out["completion_ids"].shape[1]
        adv = token_advantages(step_adv, spans, length).to(out["completion_ids"].device)
        mask = out["completion_mask"] * out["tool_mask"] if out.get("tool_mask") is not None else out["completion_mask"]
        out["advantages"] = adv * mask
        self.last_batch = out  # for inspection and tests
        self._log_steps(mode)
        return out

    def _log_steps(self, mode: str) -> None:
        eps = self.episodes
        if not eps:
            return
        metrics = self._metrics[mode]
        comps: dict[str, list[float]] = {}
        for ep in eps:
            for r in ep.rewards:
                for k, v in r.components.items():
                    comps.setdefault(k, []).append(v)
        for k, vs in comps.items():
            metrics[f"rewards/step/{k}"].append(sum(vs) / len(eps))  # per episode
        calls = [c for ep in eps for s in ep.steps for c in s.calls]
        if calls:
            metrics["tools/call_validity"].append(sum(c.valid for c in calls) / len(calls))
        if self.accelerator.num_processes == 1:  # with several, a process's slice need not hold whole groups
            groups = max(1, len(eps) // (self.num_generations if mode == "train" else self.num_generations_eval))
            first, last = self._uniform_groups
            metrics["groups/uniform_drawn"].append(first / groups)  # before any redraw
            metrics["groups/uniform_kept"].append(last / groups)
        metrics["episode/steps"].append(sum(len(ep.steps) for ep in eps) / len(eps))
        metrics["episode/return"].append(sum(ep.total_reward for ep in eps) / len(eps))
