"""Real multi-step rollouts in the recommender environment, recorded token by token and step by step.

An episode starts from a task's prompt (system + user, the task's offered tools), lets the
policy write a turn, parses it with the serving parser (:func:`parse_assistant_output`),
executes the calls on the real tools (:class:`~recagent.tools.variants.OfferedTools` over a
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
from recagent.agents.prompt_format import encode_prompt, parse_assistant_output, render_openai_messages, tool_names_of
from recagent.agents.steps import StepRecord, summarise_result
from recagent.rl.rewards import Call, RewardWeights, Step, StepReward, step_rewards
from recagent.tools.env import ToolEnv
from recagent.tools.recommender_tools import build_registry
from recagent.tools.variants import OfferedTools, ToolVariant


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
        out.append(
            Task(
                task_id=r["id"],
                messages=r["messages"][:first],
                tools=r["tools"],
                tool_variants=json.loads(variants) if isinstance(variants, str) else variants,
                target=meta.get("target_item"),
                gold_calls=gold,
                user_id=meta.get("user_id"),
            )
        )
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
    sampling_logprobs: list[float | None] | None = (
        None  # per completion token (None on observations), if the backend gave them
    )

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
        variants = [
            ToolVariant.from_record(t, task.tool_variants.get(t["function"]["name"], {"core": t["function"]["name"]}))
            for t in task.tools
        ]
        self.tools = OfferedTools(variants, self.registry_factory(self.env.session()))

    def call(self, name: str, arguments: dict[str, Any]):
        """Execute one call on the real tools."""
        assert self.tools is not None, "reset() first"
        return self.tools.call(name, arguments)


@dataclass
class Generated:
    """One policy turn: the new token ids (ending with EOS unless cut off) and, if the backend gives them, their log-probs."""

    ids: list[int]
    logprobs: list[float] | None = None


@dataclass(frozen=True)
class TurnConstraint:
    """What one turn is decoded under: a compiled xgrammar grammar and the ids that end a turn."""

    grammar: Any
    eos_ids: frozenset[int]


# A batch of policy turns: the token ids each active episode has so far -> one turn for each, in the same order.
# A generator that decodes under grammars also takes ``constraints=`` (one TurnConstraint or None per input).
GenerateBatch = Callable[..., Sequence["Generated | list[int]"]]
# The grammar of an episode's next turn: (its messages, its offered tools, its token ids so far) -> the constraint.
Constrain = Callable[[list[dict[str, Any]], list[dict[str, Any]], list[int]], TurnConstraint | None]


def generate_turns(
    model,
    tokenizer,
    inputs: list[list[int]],
    max_new_tokens: int,
    sample: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int | None = None,
    constraints: Sequence[TurnConstraint | None] | None = None,
) -> list[list[int]]:
    """One policy turn for each input with batched transformers ``generate`` (left-padded), each cut after its EOS.

    ``batch_size`` caps the rows per ``generate`` call (None: all at once). Identical inputs (a GRPO group's
    first turn) are generated together from one prompt forward (:func:`_generate_from_one_prompt`).
    ``constraints`` (one per input) decode each turn under its grammar; distinct prompts then decode one by one
    (the CPU recipe's ``rollout_batch_size`` is 1 anyway: batching distinct prompts only pads).
    """
    import torch

    if not inputs:
        return []
    if constraints is not None and len(constraints) != len(inputs):
        raise ValueError(f"{len(constraints)} constraints for {len(inputs)} inputs")
    rows_of: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(inputs):
        rows_of.setdefault(tuple(x), []).append(i)
    # one grammar per prompt (the same messages give the same grammar), so a constrained prompt decodes on its own
    constrained = constraints is not None and any(c is not None for c in constraints)
    if constrained or len(rows_of) < len(inputs):
        out: list[list[int] | None] = [None] * len(inputs)
        alone = [] if constrained else [rows[0] for rows in rows_of.values() if len(rows) == 1]
        if alone:  # distinct unconstrained prompts still share one left-padded batch
            single = generate_turns(
                model, tokenizer, [inputs[i] for i in alone], max_new_tokens, sample, temperature, top_p, batch_size
            )
            for i, row in zip(alone, single):
                out[i] = row
        for prompt, rows in rows_of.items():
            if constrained or len(rows) > 1:
                constraint = constraints[rows[0]] if constrained else None  # type: ignore[index]
                turns = _generate_from_one_prompt(
                    model, tokenizer, list(prompt), len(rows), max_new_tokens, sample, temperature, top_p, constraint
                )
                for i, row in zip(rows, turns):
                    out[i] = row
        return out  # type: ignore[return-value]
    if batch_size is not None and len(inputs) > batch_size:
        return [
            row
            for i in range(0, len(inputs), batch_size)
            for row in generate_turns(
                model, tokenizer, inputs[i : i + batch_size], max_new_tokens, sample, temperature, top_p
            )
        ]
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    width = max(len(x) for x in inputs)
    ids = torch.full((len(inputs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    for i, x in enumerate(inputs):  # left padding: every row's next token is generated at the same position
        ids[i, width - len(x) :] = torch.tensor(x, dtype=torch.long)
        mask[i, width - len(x) :] = 1
    return _generate_rows(model, tokenizer, ids.to(device), mask.to(device), max_new_tokens, sample, temperature, top_p)


def _generate_rows(
    model,
    tokenizer,
    ids,
    mask,
    max_new_tokens: int,
    sample: bool,
    temperature: float,
    top_p: float,
    cache=None,
    constraint: TurnConstraint | None = None,
) -> list[list[int]]:
    """transformers ``generate`` on a batch of equal-width rows (``cache``: their prompt's, already computed;
    ``constraint``: every row's grammar); each row's new tokens, cut after its EOS."""
    import torch

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            **({"cache": cache} if cache is not None else {}),
            **({"logits_processor": _grammar_processors(constraint, eos, ids.shape[0])} if constraint else {}),
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            **({"temperature": temperature, "top_p": top_p} if sample else {}),
            eos_token_id=eos,
            pad_token_id=pad,
        )
    rows = out[:, ids.shape[1] :].tolist()
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


def _grammar_processors(constraint: TurnConstraint, eos: int, rows: int):
    """xgrammar's transformers processor (a new one per ``generate``: its matchers keep state) for ``rows`` rows,
    and the served engine's rule that a turn ends only where the grammar lets it (:func:`ends_follow_grammar`)."""
    import xgrammar as xgr
    from transformers import LogitsProcessorList

    from recagent.agents.policies.engines import ends_follow_grammar

    stops = list(constraint.grammar.tokenizer_info.stop_token_ids)
    others = [e for e in constraint.eos_ids if e != eos]  # generate stops at eos only: a turn ends with it

    def ends(input_ids, scores):
        for row in scores:
            ends_follow_grammar(row, set(constraint.eos_ids), stops)
            row[[e for e in others if e < row.shape[0]]] = float("-inf")
        return scores

    return LogitsProcessorList([xgr.contrib.hf.LogitsProcessor([constraint.grammar] * rows), ends])


def _generate_from_one_prompt(
    model,
    tokenizer,
    prompt: list[int],
    n: int,
    max_new_tokens: int,
    sample: bool,
    temperature: float,
    top_p: float,
    constraint: TurnConstraint | None = None,
) -> list[list[int]]:
    """``n`` turns from one prompt: its forward runs once and the key/value cache is repeated ``n`` times.

    On a CPU the ~700-token tool prompt's forward costs as much as decoding ~30 tokens, and a GRPO group
    of G rollouts would pay it G times; the rows then decode as one batch with no padding.
    """
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    cache = DynamicCache()
    with torch.no_grad():
        if len(prompt) > 1:  # generate feeds the uncached last token itself and starts decoding from it
            model(input_ids=ids[:, :-1], cache=cache, use_cache=True)
    cache.batch_repeat_interleave(n)
    mask = torch.ones((n, len(prompt)), dtype=torch.long, device=device)
    return _generate_rows(
        model, tokenizer, ids.repeat(n, 1), mask, max_new_tokens, sample, temperature, top_p, cache, constraint
    )


def generate_turn(
    model,
    tokenizer,
    input_ids: list[int],
    max_new_tokens: int,
    sample: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> list[int]:
    """One policy turn for one input (:func:`generate_turns` with a batch of one)."""
    return generate_turns(model, tokenizer, [input_ids], max_new_tokens, sample, temperature, top_p)[0]


def _observation_ids(tokenizer, turns_before: list[dict], turns_after: list[dict]) -> list[int]:
    """Tokens the chat template puts between the policy's turn and its next turn (tool results + header)."""
    before = tokenizer.apply_chat_template(turns_before, tokenize=False)
    after = tokenizer.apply_chat_template(turns_after, tokenize=False, add_generation_prompt=True)
    if not after.startswith(before):
        raise ValueError("the chat template is not append-only; cannot compute observation tokens")
    end = tokenizer.eos_token or "<|im_end|>"
    sep = before[before.rfind(end) + len(end) :]  # what follows the policy's end-of-turn token ("\n")
    return encode_prompt(tokenizer, sep + after[len(before) :])  # tool results can never become special tokens


class _Play:
    """One episode in progress: what the policy sees next, and what happens with the turn it writes."""

    def __init__(self, tokenizer, environment: RolloutEnvironment, task: Task, max_steps: int):
        environment.reset(task)
        self.tok, self.environment, self.task, self.max_steps = tokenizer, environment, task, max_steps
        self.names = tool_names_of(task.tools)
        self.messages = [dict(m) for m in task.messages]
        prompt = tokenizer.apply_chat_template(
            render_openai_messages(self.messages, task.tools), tokenize=False, add_generation_prompt=True
        )
        self.ep = Episode(task, encode_prompt(tokenizer, prompt))
        self.logprobs: list[float | None] | None = []  # None once a turn came without log-probs
        self.seen: set[str] = set()
        self.turn = 0
        self.done = False

    def input_ids(self) -> list[int]:
        """The tokens the policy conditions on for its next turn."""
        return self.ep.prompt_ids + self.ep.completion_ids

    def take(self, turn: Generated) -> None:
        """Record the policy's turn; run its calls and append their results, or read its answer and finish."""
        ep, tok, new = self.ep, self.tok, list(turn.ids)
        start = len(ep.completion_ids)
        ep.completion_ids += new
        ep.action_mask += [1] * len(new)
        ep.spans.append((start, len(ep.completion_ids)))
        self._log(turn.logprobs if turn.logprobs is not None and len(turn.logprobs) == len(new) else None, len(new))
        closed = bool(new) and new[-1] == tok.eos_token_id
        text = tok.decode(new[:-1] if closed else new, skip_special_tokens=False)
        parsed = parse_assistant_output(text, self.names)
        if not closed:
            ep.truncated = True
        last = self.turn == self.max_steps - 1
        if parsed.tool_calls or parsed.invalid_tool_calls:
            self._calls(parsed, new, closed, last)
        else:
            g = ground_answer(parsed.content, self.environment.env.catalog, self.seen)
            answer = list(
                dict.fromkeys(g.supported + g.unsupported + _bare_ids(parsed.content, self.environment.env.catalog))
            )
            ep.steps.append(Step(answer_ids=answer, parsed=closed))
            ep.records.append(StepRecord(self.turn, 0, "answer", result_item_ids=answer, output_tokens=len(new)))
            self.messages.append({"role": "assistant", "content": parsed.content})
            self.done = True
        self.turn += 1
        self.done = self.done or self.turn >= self.max_steps

    def _calls(self, parsed, new: list[int], closed: bool, last: bool) -> None:
        ep, turn = self.ep, self.turn
        calls: list[Call] = []
        tool_calls, tool_msgs = [], []
        for j, tc in enumerate(parsed.tool_calls):
            out = self.environment.call(tc["name"], tc["args"])
            summary, ids = summarise_result(out.result) if out.ok else ("", [])
            self.seen.update(ids)
            call_id = f"call_{turn}_{j}"
            tool_calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": tc["name"], "arguments": json.dumps(tc["args"], ensure_ascii=False)},
                }
            )
            tool_msgs.append({"role": "tool", "tool_call_id": call_id, "name": tc["name"], "content": out.content()})
            calls.append(Call(tc["name"], tc["args"], out.ok, ids))
            ep.records.append(
                StepRecord(
                    turn,
                    j,
                    "tool_call" if out.ok else "invalid_call",
                    tc["name"],
                    tc["args"],
                    call_id,
                    out.ok,
                    None if out.ok else out.error.message,
                    summary,
                    ids,
                    out.latency_ms,
                    len(ep.prompt_ids),
                    len(new),
                )
            )
        for bad in parsed.invalid_tool_calls:
            calls.append(Call(bad.get("name"), None, False))
            ep.records.append(
                StepRecord(
                    turn,
                    len(ep.records),
                    "invalid_call",
                    bad.get("name"),
                    bad.get("args"),
                    valid=False,
                    error=bad.get("error"),
                    output_tokens=len(new),
                )
            )
        ep.steps.append(Step(calls=calls, parsed=not parsed.invalid_tool_calls))
        if not tool_calls or not closed or last:
            self.done = True  # nothing ran (only invalid calls), the turn was cut off, or the budget is spent
            return
        call_turn = {"role": "assistant", "content": None, "tool_calls": tool_calls}
        before = render_openai_messages(self.messages + [call_turn], self.task.tools)
        self.messages += [call_turn, *tool_msgs]
        obs = _observation_ids(self.tok, before, render_openai_messages(self.messages, self.task.tools))
        ep.completion_ids += obs
        ep.action_mask += [0] * len(obs)
        self._log([None] * len(obs) if self.logprobs is not None else None, len(obs))

    def _log(self, logprobs: list[float | None] | None, n: int) -> None:
        if self.logprobs is not None and logprobs is not None:
            self.logprobs += logprobs
        elif n:
            self.logprobs = None

    def finish(self, weights: RewardWeights) -> Episode:
        """The episode with its messages, sampling log-probs (when every turn had them) and step rewards."""
        ep = self.ep
        ep.messages = self.messages
        ep.sampling_logprobs = self.logprobs or None  # aligned with completion_ids whenever it is a list
        ep.rewards = step_rewards(ep.steps, weights, target=self.task.target, gold_calls=self.task.gold_calls)
        return ep


def run_episodes(
    generate_batch: GenerateBatch,
    tokenizer,
    environments: Sequence[RolloutEnvironment],
    tasks: Sequence[Task],
    max_steps: int = 4,
    weights: RewardWeights | None = None,
    fixed_rounds: bool = False,
    constrain: Constrain | None = None,
) -> list[Episode]:
    """Play one episode per task in lock-step: each round, one batched policy call writes a turn for every live episode.

    Episodes finish at different turns; a finished one leaves the batch. ``fixed_rounds`` calls the generator
    every round even with nothing left to play (an empty batch), for backends whose call is a collective across
    processes and must happen as often on each of them. Each episode needs its own environment. ``constrain``
    gives each turn's grammar (:class:`~recagent.rl.served_grammar.ServedGrammar`), passed to the generator.
    """
    if len(environments) != len(tasks) or len({id(e) for e in environments}) != len(environments):
        raise ValueError("run_episodes needs one environment of its own per task")
    weights = weights or RewardWeights()
    plays = [_Play(tokenizer, env, task, max_steps) for env, task in zip(environments, tasks)]
    for _ in range(max_steps):
        live = [p for p in plays if not p.done]
        if not live and not fixed_rounds:
            break
        inputs = [p.input_ids() for p in live]
        if constrain is None:
            turns = list(generate_batch(inputs))
        else:
            turns = list(
                generate_batch(
                    inputs, constraints=[constrain(p.messages, p.task.tools, x) for p, x in zip(live, inputs)]
                )
            )
        if len(turns) != len(live):
            raise RuntimeError(f"the generator returned {len(turns)} turns for {len(live)} episodes")
        for play, turn in zip(live, turns):
            play.take(turn if isinstance(turn, Generated) else Generated(list(turn)))
    return [p.finish(weights) for p in plays]


def run_episode(
    generate: Callable[[list[int]], list[int]],
    tokenizer,
    environment: RolloutEnvironment,
    task: Task,
    max_steps: int = 4,
    weights: RewardWeights | None = None,
) -> Episode:
    """Play one episode; ``generate(input_ids) -> new_ids`` is the policy (ending with EOS unless cut off)."""
    return run_episodes(
        lambda batch: [generate(x) for x in batch], tokenizer, [environment], [task], max_steps, weights
    )[0]


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
