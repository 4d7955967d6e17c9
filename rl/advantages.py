"""Step-grained credit assignment: step returns, group-normalised step advantages, per-token advantages, GAE.

StepTool assigns each step of a multi-step episode its own reward and optimises each step's
tokens with the return from that step on, instead of one outcome reward for the whole episode.
These functions are plain tensor/list arithmetic so they can be checked by hand on small
trajectories (tests/test_rl_advantages.py); the trainers only call them.

Conventions: a rollout is a token sequence of *action* tokens (written by the policy) and
*observation* tokens (tool results, template headers); ``spans[i]`` lists the (start, end) token
ranges of rollout ``i``'s steps, one per policy turn, in order. A step whose reward is 0 still
has a span and still gets an advantage (its return carries the later rewards).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def discounted_returns(step_rewards: Sequence[float], gamma: float) -> list[float]:
    """G_t = r_t + gamma * G_{t+1}: the reward from step t to the end of the episode."""
    out, g = [0.0] * len(step_rewards), 0.0
    for t in range(len(step_rewards) - 1, -1, -1):
        g = float(step_rewards[t]) + gamma * g
        out[t] = g
    return out


def group_normalised(returns: Sequence[Sequence[float]], eps: float = 1e-4, scale: bool = True) -> list[list[float]]:
    """(G - mean) / (std + eps) over every step of every rollout of one group (the rollouts of one task).

    Pooling all steps of the group (rather than steps with the same index) keeps rollouts of
    different lengths comparable; with ``scale=False`` only the mean is removed (Dr. GRPO style).
    """
    flat = torch.tensor([g for r in returns for g in r], dtype=torch.float64)
    if flat.numel() == 0:
        return [[] for _ in returns]
    mean = flat.mean()
    std = flat.std(unbiased=False) if flat.numel() > 1 else torch.tensor(0.0, dtype=torch.float64)
    denom = (std + eps) if scale else 1.0
    return [[float((g - mean) / denom) for g in r] for r in returns]


def token_advantages(
    step_advantages: Sequence[Sequence[float]], spans: Sequence[Sequence[tuple[int, int]]], length: int
) -> torch.Tensor:
    """A (rollouts, length) tensor: each step's advantage on its own tokens, 0 everywhere else."""
    out = torch.zeros(len(spans), length, dtype=torch.float32)
    for i, (advs, row) in enumerate(zip(step_advantages, spans, strict=True)):
        if len(advs) != len(row):
            raise ValueError(f"rollout {i}: {len(advs)} step advantages for {len(row)} step spans")
        for a, (s, e) in zip(advs, row):
            if not 0 <= s <= e <= length:
                raise ValueError(f"rollout {i}: span ({s}, {e}) outside 0..{length}")
            out[i, s:e] = a
    return out


def step_advantages_for_groups(
    step_rewards: Sequence[Sequence[float]], group_size: int, gamma: float, scale: bool = True
) -> list[list[float]]:
    """Returns per step, then group normalisation over consecutive blocks of ``group_size`` rollouts."""
    if len(step_rewards) % group_size:
        raise ValueError(f"{len(step_rewards)} rollouts do not split into groups of {group_size}")
    returns = [discounted_returns(r, gamma) for r in step_rewards]
    out: list[list[float]] = []
    for g in range(0, len(returns), group_size):
        out += group_normalised(returns[g : g + group_size], scale=scale)
    return out


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the *action* tokens of each row (observation tokens are skipped).

    ``rewards``, ``values`` and ``mask`` are (rows, tokens); rewards sit on action tokens (a step's
    reward on its last token). Observation tokens (mask 0) are neither states nor actions: the
    recursion jumps over them, so the value after a step's last token is the value at the next
    step's first token. The value after the last action token is 0 (the episode ends).
    Returns (advantages, returns) with zeros off the mask.
    """
    adv = torch.zeros_like(rewards, dtype=torch.float32)
    rows, length = rewards.shape
    for i in range(rows):
        next_value, next_adv = 0.0, 0.0
        for t in range(length - 1, -1, -1):
            if not mask[i, t]:
                continue
            delta = float(rewards[i, t]) + gamma * next_value - float(values[i, t])
            next_adv = delta + gamma * lam * next_adv
            adv[i, t] = next_adv
            next_value = float(values[i, t])
    returns = (adv + values.float()) * mask
    return adv * mask, returns
