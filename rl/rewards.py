"""Step rewards (StepTool) and tool-call reward components (ToolRL), each returned separately for logging.

A rollout is a list of :class:`Step` (one per policy turn). Each step earns

- **success** (StepTool's SuccessCalling): the share of its calls that parsed, named an offered
  tool, passed the schema and executed; divided by the number of calling steps, so an episode's
  success terms sum to at most ``weights.success`` however many calls it makes;
- **contribution**: how much the step moved the task forward; for recommendation tasks the gain in
  ``1/log2(rank+2)`` (:func:`recagent.ranking.ndcg`, 0-based rank) of the held-out target's best rank
  among all items tools returned so far, so the contributions telescope to the final progress and
  repeating a call earns nothing;
- **task** (IsSolved), on the last step only: NDCG@10 of the final answer list against the target,
  or, for a synthesized call task, the ToolRL match of the calls with the ground truth
  (format, tool name, parameter names, parameter values, each weighted).

The task term is added, not multiplied away (StepTool's released code scales it by zero).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from recagent.ranking import ndcg


@dataclass
class Call:
    """One tool call a policy made: name, parsed arguments (None if unparsable), validity and result ids."""

    name: str | None
    arguments: dict[str, Any] | None
    valid: bool
    result_ids: list[str] = field(default_factory=list)


@dataclass
class Step:
    """One policy turn: its calls (none for an answer), and the answer's item ids when it answers."""

    calls: list[Call] = field(default_factory=list)
    answer_ids: list[str] | None = None
    parsed: bool = True  # the turn's text parsed into calls/answer without format errors


def _weight(default: float, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class RewardWeights:
    """Weights of every reward component (0 switches a component off), keyed by component name.

    The one statement of the defaults: the trainers' ``reward_<component>`` config fields take theirs
    (and their help) from here (:func:`recagent.rl.grpo.reward_weight_field`).
    """

    success: float = _weight(0.5, "weight of the call-success term (per episode)")
    contribution: float = _weight(1.0, "weight of the target-progress term")
    task: float = _weight(2.0, "weight of the final task term (NDCG@10)")
    format: float = _weight(0.25, "ToolRL: calls parse (call tasks)")
    name: float = _weight(0.5, "ToolRL: tool-name match (call tasks)")
    param_name: float = _weight(0.5, "ToolRL: parameter-name match (call tasks)")
    param_value: float = _weight(1.0, "ToolRL: parameter-value match (call tasks)")


@dataclass
class StepReward:
    """A step's total reward and its components."""

    total: float
    components: dict[str, float]


def ndcg_at_k(ranked: list[str], target: str, k: int = 10) -> float:
    """NDCG@k of one relevant item: 1/log2(rank+2) for the 0-based rank of its first occurrence if in the top k, else 0."""
    return ndcg(ranked.index(target) if target in ranked else None, k)


def match_calls(calls: list[Call], gold: list[dict[str, Any]]) -> dict[str, float]:
    """ToolRL-style components in [0, 1]: format, tool-name, parameter-name and parameter-value match.

    ``gold`` is a list of ``{"name": str, "arguments": dict}``; calls are matched to gold calls
    order-free (greedy by name, then by arguments), so parallel calls may come in any order.
    """
    fmt = float(all(c.arguments is not None for c in calls)) if calls else 0.0
    if not gold:
        none = float(not calls)
        return {"format": 1.0 if not calls else fmt, "name": none, "param_name": none, "param_value": none}
    names, gold_names = [c.name for c in calls], [g["name"] for g in gold]
    union = len(set(names) | set(gold_names))
    name = len(set(names) & set(gold_names)) / union if union else 1.0
    pn, pv = [], []
    free = list(calls)
    for g in gold:
        cands = [c for c in free if c.name == g["name"]]
        best = max(cands, key=lambda c: _value_match(c.arguments or {}, g["arguments"]), default=None)
        if best is None:
            pn.append(0.0)
            pv.append(0.0)
            continue
        free.remove(best)
        a, b = set(best.arguments or {}), set(g["arguments"])
        pn.append(len(a & b) / len(a | b) if a | b else 1.0)
        pv.append(_value_match(best.arguments or {}, g["arguments"]))
    extra = len(free)  # calls beyond the gold ones dilute the parameter scores
    denom = len(gold) + extra
    return {"format": fmt, "name": name, "param_name": sum(pn) / denom, "param_value": sum(pv) / denom}


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True) if not isinstance(v, str) else v.strip().lower()


def _value_match(args: dict[str, Any], gold: dict[str, Any]) -> float:
    if not gold:
        return 1.0 if not args else 0.0
    return sum(1 for k, v in gold.items() if k in args and _canon(args[k]) == _canon(v)) / len(gold)


def step_rewards(
    steps: list[Step],
    weights: RewardWeights,
    target: str | None = None,
    gold_calls: list[dict[str, Any]] | None = None,
    k: int = 10,
) -> list[StepReward]:
    """One reward per step: success and contribution on each step, the task term added on the last one."""
    calling = [s for s in steps if s.calls]
    best_rank: int | None = None  # 0-based, the best over every call so far
    out = []
    for j, s in enumerate(steps):
        comp = {"success": 0.0, "contribution": 0.0, "task": 0.0}
        if s.calls:
            comp["success"] = weights.success * sum(c.valid for c in s.calls) / len(s.calls) / len(calling)
        if target is not None:
            before = ndcg(best_rank)
            for c in s.calls:
                if c.valid and target in c.result_ids:
                    r = c.result_ids.index(target)  # 0-based
                    best_rank = r if best_rank is None else min(best_rank, r)
            comp["contribution"] = weights.contribution * (ndcg(best_rank) - before)
        if j == len(steps) - 1:
            if gold_calls is not None:
                m = match_calls([c for st in steps for c in st.calls], gold_calls)
                for key in ("format", "name", "param_name", "param_value"):
                    comp[key] = getattr(weights, key) * m[key]
            if target is not None:
                comp["task"] = weights.task * ndcg_at_k(s.answer_ids or [], target, k)
        out.append(StepReward(sum(comp.values()), comp))
    return out
