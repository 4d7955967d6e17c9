"""Tool-call accuracy of a policy on held-out synthesized dialogs: BFCL-style AST match plus an execution check.

Every assistant turn that calls tools in a synthesized *test* dialog is one task (the BFCL-style
entry of :func:`recagent.synth.export.to_bfcl`): the policy sees the conversation so far and the
offered tools, and its calls are checked two ways. The AST check (:mod:`.ast_match`) compares
names, required parameters, types and allowed values, order-free for parallel calls. The
execution check runs the predicted and the gold calls for real, each in a fresh session that
first replays the dialog's earlier calls (so candidate sets saved earlier exist), and asks that
every gold call's result is produced by one predicted call, item for item.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from recagent.evaluation.ast_match import ASTResult, PredictedCall, check_turn

if TYPE_CHECKING:
    from recagent.agents.policies.grammar import CallIds


@dataclass
class CallTask:
    """One assistant turn to reproduce: the conversation so far, the offered tools, the gold entry."""

    id: str
    kind: str
    heldout_tools: bool
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    entry: dict[str, Any]
    sample: Any  # the synthesized Sample (variant records for execution)


@dataclass
class CallOutcome:
    """The policy's calls for one task and how they scored."""

    id: str
    kind: str
    heldout_tools: bool
    ast_ok: bool
    ast_error: str | None
    exec_ok: bool
    exec_error: str | None
    predicted: list[dict[str, Any]] = field(default_factory=list)
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0


def call_tasks(rows: list[dict[str, Any]], limit: int | None = None) -> list[CallTask]:
    """BFCL-style tasks from synthesized test rows, in file order (at most ``limit``)."""
    from recagent.dialogs import Sample
    from recagent.synth.export import to_bfcl

    out = []
    for row in rows:
        sample = Sample.from_row(row)
        if sample.split != "test":
            raise ValueError(
                f"dialog {sample.id} is a {sample.split} dialog: tool-call accuracy uses test dialogs only"
            )
        for e in to_bfcl(sample):
            out.append(
                CallTask(e["id"], e["category"], bool(e["heldout_tools"]), e["question"], sample.tools, e, sample)
            )
            if limit is not None and len(out) >= limit:
                return out
    return out


def predict(
    policy, task: CallTask, tool_choice: str | None = None, call_ids: CallIds | None = None
) -> tuple[list[PredictedCall], dict[str, Any]]:
    """The policy's calls for the task's next turn (a langchain chat model with ``bind_tools``); ``call_ids``: the
    ids a grammar-constrained policy's calls may name, as the agent passes them."""
    from langchain_core.messages import convert_to_messages

    bound = policy.bind_tools(task.tools, tool_choice=tool_choice) if tool_choice else policy.bind_tools(task.tools)
    t0 = time.perf_counter()
    ai = bound.invoke(convert_to_messages(task.messages), **({"call_ids": call_ids} if call_ids else {}))
    usage = ai.usage_metadata or {}
    calls = [PredictedCall(c["name"], c.get("args")) for c in ai.tool_calls]
    calls += [
        PredictedCall(c.get("name"), c.get("args") if isinstance(c.get("args"), str) else None)
        for c in ai.invalid_tool_calls
    ]
    info = {
        "latency_s": time.perf_counter() - t0,
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
    }
    return calls, info


def _replayed(task: CallTask, env):
    """Offered tools over a fresh session in which the dialog's earlier calls have been run."""
    from recagent.synth.verify import variants_of
    from recagent.tools.recommender_tools import build_registry
    from recagent.tools.variants import OfferedTools

    offered = OfferedTools(list(variants_of(task.sample).values()), build_registry(env.session()))
    for m in task.messages:
        for tc in m.get("tool_calls") or [] if m.get("role") == "assistant" else []:
            offered.call(tc["function"]["name"], tc["function"]["arguments"])
    return offered


def _result_key(outcome) -> tuple:
    if not outcome.ok:
        return ("error",)
    items = (outcome.result or {}).get("items")
    if isinstance(items, list):
        return ("items", *[str(it.get("item_id")) for it in items if isinstance(it, dict)])
    return ("value", json.dumps(outcome.result, sort_keys=True, default=str))


def execution_match(task: CallTask, predicted: list[PredictedCall], env) -> tuple[bool, str | None]:
    """True when the predicted calls, run for real, give every gold call's result (multiset, order-free)."""
    gold_env, pred_env = _replayed(task, env), _replayed(task, env)
    gold = []
    for tc in task.sample.messages[len(task.messages)].get("tool_calls") or []:
        gold.append(_result_key(gold_env.call(tc["function"]["name"], tc["function"]["arguments"])))
    got = []
    for p in predicted:
        if p.name is None or p.arguments is None:
            return False, "a predicted call could not be parsed"
        out = pred_env.call(p.name, p.arguments)
        if not out.ok:
            return False, f"{p.name}: {out.error.error}: {out.error.message}"[:200]
        got.append(_result_key(out))
    missing = Counter(gold) - Counter(got)
    if missing or len(got) != len(gold):
        return False, f"{sum(missing.values())} of {len(gold)} gold results not reproduced ({len(got)} calls made)"
    return True, None


def conversation_ids(task: CallTask, env) -> CallIds:
    """The ids the agent would let a grammar-constrained policy's calls name in this task's conversation."""
    from langchain_core.messages import convert_to_messages

    from recagent.agents.call_ids import conversation_call_ids

    messages = convert_to_messages(task.messages)
    catalog = env.catalog
    return conversation_call_ids(
        messages, env.dataset.users.index_of, catalog.index_of, catalog_genres=catalog.all_genres, catalog=catalog
    )


def evaluate_task(
    policy, task: CallTask, env, tool_choice: str | None = None, grounded_ids: bool = False
) -> CallOutcome:
    """Predict, AST-check and execution-check one task; a policy failure scores as a miss. ``grounded_ids``: the
    policy's calls may name only the conversation's ids, as in the agent (a grammar-constrained local policy)."""
    try:
        calls, info = predict(policy, task, tool_choice, conversation_ids(task, env) if grounded_ids else None)
    except Exception as e:  # a failing policy call is a wrong answer, not the end of the run
        err = f"policy failed: {type(e).__name__}: {e}"[:200]
        return CallOutcome(task.id, task.kind, task.heldout_tools, False, err, False, err)
    ast: ASTResult = check_turn(calls, task.entry)
    ok, why = execution_match(task, calls, env)
    return CallOutcome(
        task.id,
        task.kind,
        task.heldout_tools,
        ast.valid,
        None if ast.valid else f"{ast.error}: {ast.message}"[:200],
        ok,
        why,
        [{"name": c.name, "arguments": c.arguments} for c in calls],
        **info,
    )
