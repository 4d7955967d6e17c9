"""Real multi-step rollouts in the recommender environment, recorded token by token and step by step.

An episode starts from a task's prompt (system + user, the task's offered tools), lets the
policy write a turn, parses it with the serving parser (:func:`parse_assistant_output`),
executes the calls on the real tools (:class:`~recagent.synth.tool_pool.OfferedTools` over a
fresh session, so every member of a GRPO group starts from the same state), appends the
results, and repeats until the policy answers or the step budget ends. The prompt format is the
serving one (:mod:`recagent.agents.prompt_format`); observation tokens are exactly what the chat
template adds between the policy's turn and its next turn, so the token sequence trained on is
the sequence the policy will see at inference, and a mask says which tokens the policy wrote.

TRL's own tool loop needs a chat template it recognises and a response parser; ours is neither,
and train/serve skew is a bug, so the loop is written here (small) and handed to TRL as a
``rollout_func``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from recagent.agents.grounding import ground_answer
from recagent.agents.prompt_format import parse_assistant_output, render_openai_messages, tool_names_of
from recagent.agents.steps import StepRecord, summarise_result
from recagent.rl.rewards import Call, RewardWeights, Step, StepReward, step_rewards
from recagent.synth.tool_pool import OfferedTools, ToolVariant
from recagent.tools.env import ToolEnv
from recagent.tools.recommender_tools import build_registry


@dataclass
class Task:
    """One RL task: the prompt, the offered tools, and what solving it means (a target item or gold calls)."""

    task_id: str
    messages: list[dict[str, Any]]  # OpenAI-format prompt: system + user turns
    tools: list[dict[str, Any]]
    tool_variants: dict[str, dict[str, Any]]  # offered name -> variant record (core tool, renames)
    target: str | None = None
    gold_calls: list[dict[str, Any]] | None = None
    user_id: str | None = None


def tasks_from_synth(rows: Sequence[dict[str, Any]], kinds: Sequence[str] | None = None) -> list[Task]:
    """Call tasks from synthesized dialogs: the prompt up to the first assistant turn, its calls as the gold."""
    out = []
    for r in rows:
        meta = r["meta"]
        if kinds is not None and meta["kind"] not in kinds:
            continue
        first = next(i for i, m in enumerate(r["messages"]) if m["role"] == "assistant")
        gold = [
            {"name": tc["function"]["name"], "arguments": json.loads(tc["function"]["arguments"])}
            for tc in r["messages"][first].get("tool_calls") or []
        ]
        variants = meta["tool_variants"]
        out.append(Task(
            task_id=r["id"], messages=r["messages"][:first], tools=r["tools"],
            tool_variants=json.loads(variants) if isinstance(variants, str) else variants,
            target=meta.get("target_item"), gold_calls=gold, user_id=meta.get("user_id"),
        ))  # fmt: skip
    return out


@dataclass
class Episode:
    """A finished rollout: tokens, which of them the policy wrote, step spans, steps, records and rewards."""

    task: Task
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    action_mask: list[int] = field(default_factory=list)  # 1 = written by the policy, 0 = observation
    spans: list[tuple[int, int]] = field(default_factory=list)  # completion token range of each policy turn
    steps: list[Step] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    rewards: list[StepReward] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False

    @property
    def total_reward(self) -> float:
        """Sum of the step rewards."""
        return sum(r.total for r in self.rewards)


class RolloutEnvironment:
    """The tools of one task over a fresh session of a shared tool environment (reset per episode)."""

    def __init__(self, env: ToolEnv, registry_factory: Callable[[ToolEnv], Any] = build_registry):
        self.env, self.registry_factory = env, registry_factory
        self.tools: OfferedTools | None = None

    def reset(self, task: Task) -> None:
        """Fresh candidate buffer, the task's offered tools: the same start state for every rollout of a task."""
        variants = [ToolVariant.from_record(t, task.tool_variants.get(t["function"]["name"], {"core": t["function"]["name"]}))
                    for t in task.tools]  # fmt: skip
        self.tools = OfferedTools(variants, self.registry_factory(self.env.session()))

    def call(self, name: str, arguments: dict[str, Any]):
        """Execute one call on the real tools."""
        assert self.tools is not None, "reset() first"
        return self.tools.call(name, arguments)


def generate_turn(
    model, tokenizer, input_ids: list[int], max_new_tokens: int, sample: bool = True, temperature: float = 1.0,
    top_p: float = 1.0,
) -> list[int]:
    """One policy turn with transformers ``generate``: the new token ids, cut after the first EOS."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([input_ids], device=device)
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=sample,
            **({"temperature": temperature, "top_p": top_p} if sample else {}),
            eos_token_id=eos, pad_token_id=tokenizer.pad_token_id or eos,
        )  # fmt: skip
    new = out[0, ids.shape[1] :].tolist()
    return new[: new.index(eos) + 1] if eos in new else new


def _observation_ids(tokenizer, turns_before: list[dict], turns_after: list[dict]) -> list[int]:
    """Tokens the chat template puts between the policy's turn and its next turn (tool results + header)."""
    before = tokenizer.apply_chat_template(turns_before, tokenize=False)
    after = tokenizer.apply_chat_template(turns_after, tokenize=False, add_generation_prompt=True)
    if not after.startswith(before):
        raise ValueError("the chat template is not append-only; cannot compute observation tokens")
    end = tokenizer.eos_token or "<|im_end|>"
    sep = before[before.rfind(end) + len(end) :]  # what follows the policy's end-of-turn token ("\n")
    return tokenizer(sep + after[len(before) :], add_special_tokens=False)["input_ids"]


def run_episode(
    generate: Callable[[list[int]], list[int]],
    tokenizer,
    environment: RolloutEnvironment,
    task: Task,
    max_steps: int = 4,
    weights: RewardWeights | None = None,
) -> Episode:
    """Play one episode; ``generate(input_ids) -> new_ids`` is the policy (ending with EOS unless cut off)."""
    environment.reset(task)
    weights = weights or RewardWeights()
    names = tool_names_of(task.tools)
    messages = [dict(m) for m in task.messages]
    prompt = tokenizer.apply_chat_template(render_openai_messages(messages, task.tools), tokenize=False, add_generation_prompt=True)
    ep = Episode(task, tokenizer(prompt, add_special_tokens=False)["input_ids"])
    eos = tokenizer.eos_token_id
    seen: set[str] = set()
    for turn in range(max_steps):
        new = list(generate(ep.prompt_ids + ep.completion_ids))
        start = len(ep.completion_ids)
        ep.completion_ids += new
        ep.action_mask += [1] * len(new)
        ep.spans.append((start, len(ep.completion_ids)))
        closed = bool(new) and new[-1] == eos
        text = tokenizer.decode(new[:-1] if closed else new, skip_special_tokens=False)
        parsed = parse_assistant_output(text, names)
        calls: list[Call] = []
        if not closed:
            ep.truncated = True
        if parsed.tool_calls or parsed.invalid_tool_calls:
            tool_calls, tool_msgs = [], []
            for j, tc in enumerate(parsed.tool_calls):
                out = environment.call(tc["name"], tc["args"])
                summary, ids = summarise_result(out.result) if out.ok else ("", [])
                seen.update(ids)
                call_id = f"call_{turn}_{j}"
                tool_calls.append({"id": call_id, "type": "function",
                                   "function": {"name": tc["name"], "arguments": json.dumps(tc["args"], ensure_ascii=False)}})  # fmt: skip
                tool_msgs.append({"role": "tool", "tool_call_id": call_id, "name": tc["name"], "content": out.content()})
                calls.append(Call(tc["name"], tc["args"], out.ok, ids))
                ep.records.append(StepRecord(turn, j, "tool_call" if out.ok else "invalid_call", tc["name"], tc["args"],
                                             call_id, out.ok, None if out.ok else out.error.message, summary, ids,
                                             out.latency_ms, len(ep.prompt_ids), len(new)))  # fmt: skip
            for bad in parsed.invalid_tool_calls:
                calls.append(Call(bad.get("name"), None, False))
                ep.records.append(StepRecord(turn, len(ep.records), "invalid_call", bad.get("name"), bad.get("args"),
                                             valid=False, error=bad.get("error"), output_tokens=len(new)))  # fmt: skip
            ep.steps.append(Step(calls=calls, parsed=not parsed.invalid_tool_calls))
            if not tool_calls or not closed or turn == max_steps - 1:
                break  # nothing ran (only invalid calls), the turn was cut off, or the budget is spent
            before = render_openai_messages(messages + [{"role": "assistant", "content": None, "tool_calls": tool_calls}], task.tools)
            messages += [{"role": "assistant", "content": None, "tool_calls": tool_calls}, *tool_msgs]
            obs = _observation_ids(tokenizer, before, render_openai_messages(messages, task.tools))
            ep.completion_ids += obs
            ep.action_mask += [0] * len(obs)
            continue
        g = ground_answer(parsed.content, environment.env.catalog, seen)
        answer = g.supported + g.unsupported + _bare_ids(parsed.content, environment.env.catalog)
        ep.steps.append(Step(answer_ids=list(dict.fromkeys(answer)), parsed=closed))
        ep.records.append(StepRecord(turn, 0, "answer", result_item_ids=list(dict.fromkeys(answer)), output_tokens=len(new)))
        messages.append({"role": "assistant", "content": parsed.content})
        break
    ep.messages = messages
    ep.rewards = step_rewards(ep.steps, weights, target=task.target, gold_calls=task.gold_calls)
    return ep


def _bare_ids(text: str, catalog) -> list[str]:
    """Item ids in a list-wise JSON answer (``[50, 181]``); other text gives none."""
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        return []
    try:
        values = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return []
    if not isinstance(values, list):
        return []
    return [str(v) for v in values if isinstance(v, int | str) and str(v) in catalog.index_of]
