"""The agent graph: policy -> tools -> policy ..., then an answer check; one compiled graph per checkpointer.

Nodes return partial state; heavy handles (tool environment, chat model) come from the
runtime context, never from globals or the state. Invalid tool calls (unknown tool, bad
JSON, schema violations) and failing tools come back to the policy as tool errors; an
answer naming items that no tool returned is sent back with the list of offending items.
When the step budget runs out the agent answers from its latest tool result.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Literal

import numpy as np
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from recagent.agents.config import AgentContext
from recagent.agents.context import FEEDBACK, trim_turns
from recagent.agents.grounding import citation, ground_answer
from recagent.agents.preferences import stated_preferences
from recagent.agents.prompts import listwise_feedback, listwise_ids, system_prompt, unsupported_feedback
from recagent.agents.state import AgentState
from recagent.agents.steps import FALLBACK_CALL_ID, StepRecord, summarise_result
from recagent.tools.result_text import ANSWER_SHOWS, result_text
from recagent.tools.schemas import K_DEFAULT

FALLBACK = "recagent_fallback"  # marks answers written by the fallback, not by the policy


def start_turn(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Reset the per-turn step counter and outputs; note likes/dislikes the new message states."""
    update = {"steps": 0, "turn": state.get("turn", -1) + 1, "answer": "", "recommended": [], "filled": 0}
    messages = state.get("messages") or []
    if messages and isinstance(messages[-1], HumanMessage) and isinstance(messages[-1].content, str):
        likes, dislikes = stated_preferences(messages[-1].content, runtime.context.env.catalog.all_genres)
        if likes or dislikes:
            user = state.get("user") or {}
            old_likes = [g for g in user.get("likes", []) if g not in dislikes]
            old_dislikes = [g for g in user.get("dislikes", []) if g not in likes]
            update["user"] = {
                "likes": list(dict.fromkeys(old_likes + likes)),
                "dislikes": list(dict.fromkeys(old_dislikes + dislikes)),
            }
    return update


def policy(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Ask the chat model for the next step: tool calls or an answer."""
    ctx = runtime.context
    catalog = ctx.env.catalog
    listing = {i: catalog.display(catalog.index_of[i]) for i in state.get("pool") or [] if i in catalog.index_of}
    history = trim_turns(state.get("messages", []), ctx.config.history_budget())  # older turns fall out of the window
    messages = [SystemMessage(system_prompt(state, ctx.env.dataset.name, listing)), *history]
    t0 = time.perf_counter()
    turn_now = state.get("turn", 0)
    # until a call of this turn has worked, the policy may be made to call a tool (see PolicyConfig.first_tool_choice)
    no_result_yet = not any(s.kind == "tool_call" and s.valid and s.turn == turn_now for s in state.get("trace") or [])
    # a call repeated within the turn returns what it returned before: the policy answers from it. Measured: the
    # shipped policy, asked "What have I watched recently?", called get_user_history with the same argument six times
    # (to max_steps) and the fallback answered
    bound = ctx.bound_policy(first_step=no_result_yet, answer_now=_repeated_calls(state))
    with ctx.policy_lock or nullcontext():  # tools stay outside the lock: they run concurrently across sessions
        ai: AIMessage = bound.invoke(messages, **_decoding_constraints(state, ctx))
    ms = (time.perf_counter() - t0) * 1000
    usage = ai.usage_metadata or {}
    turn, steps = state.get("turn", 0), state.get("steps", 0)
    trace = [
        StepRecord(
            turn=turn,
            index=steps,
            kind="invalid_call",
            tool=bad.get("name"),
            arguments=bad.get("args"),
            call_id=bad.get("id"),
            valid=False,
            error=f"invalid_call: {bad.get('error') or 'malformed tool call'}",
            latency_ms=ms,
            input_tokens=usage.get("input_tokens", 0),
            output_tokens=usage.get("output_tokens", 0),
        )
        for bad in ai.invalid_tool_calls
    ]
    return {"messages": [ai], "steps": steps + 1, "trace": trace}


def _decoding_constraints(state: AgentState, ctx: AgentContext) -> dict:
    """For a policy that decodes under a grammar: the items its answer may cite (and k in list-wise mode), and the
    ids its calls may name."""
    if not ctx.grounded_decoding():
        return {}
    from recagent.agents.call_ids import conversation_call_ids, turned_down_items
    from recagent.agents.policies.grammar import citable_items

    catalog = ctx.env.catalog
    if state.get("mode") == "listwise":
        # in the tools' order, which the answer keeps (grammar.answer_filter): the ranking is the tools' job, the
        # policy's is which tools and which of their items (reordering SASRec's list, the shipped policy lost
        # NDCG@10 against SASRec alone)
        # given candidates no tool returned follow, best first by the default recommender: their given order must not
        # decide the list (the candidate protocols put the target first or last)
        may = listwise_allowed(state, ctx)
        may_set = set(may)
        returned = [i for i in _latest_results_first(state) if i in may_set]
        seen = set(returned)
        allowed = returned + _by_default_model(state, ctx, [i for i in may if i not in seen])
    else:
        # after this turn's calls returned items, the answer cites those: an earlier turn's sci-fi films are no
        # answer to "3 comedies" (the shipped policy cited one; none of 7,047 synthesized answers after results does)
        this_turn = _turn_item_ids(state)
        allowed = this_turn or list(dict.fromkeys(state.get("grounded_ids") or []))
        if this_turn:
            # and none of those the user just turned down ("none of those ..."), while others are left: simulated
            # users were shown Willy Wonka again two turns after turning it down
            turned_down = set(turned_down_items(state["messages"]))
            allowed = [i for i in allowed if i not in turned_down] or allowed
    items = list(citable_items(allowed, catalog))
    call_ids = conversation_call_ids(
        state["messages"],
        ctx.env.dataset.users.index_of,
        catalog.index_of,
        (state.get("user") or {}).get("user_id"),
        state.get("grounded_ids") or [],
        catalog.all_genres,
        catalog,
    )
    if state.get("mode") == "listwise":
        return {"cite_items": items, "listwise_k": state.get("k", ctx.config.k), "call_ids": call_ids}
    return {"cite_items": items, "cite_required": _citations_needed(state, allowed, ctx), "call_ids": call_ids}


def _latest_results_first(state: AgentState) -> list[str]:
    """The ids valid tool calls returned, the latest call's first, each call's in the order it returned them."""
    steps = [s for s in reversed(state.get("trace") or []) if s.kind == "tool_call" and s.valid]
    return list(dict.fromkeys(i for s in steps for i in s.result_item_ids))


def _turn_item_ids(state: AgentState) -> list[str]:
    """The ids this turn's valid calls returned, first seen first."""
    turn = state.get("turn", 0)
    steps = [s for s in state.get("trace") or [] if s.kind == "tool_call" and s.valid and s.turn == turn]
    return list(dict.fromkeys(i for s in steps for i in s.result_item_ids))


def _repeated_calls(state: AgentState) -> bool:
    """True when every call of the policy's previous step repeats (same tool, same arguments) an earlier one of
    this turn."""
    turn, previous = state.get("turn", 0), state.get("steps", 0) - 1
    calls = [
        s
        for s in state.get("trace") or []
        if s.kind == "tool_call" and s.turn == turn and s.call_id != FALLBACK_CALL_ID
    ]
    last = [_call_key(s) for s in calls if s.index == previous]
    earlier = {_call_key(s) for s in calls if s.index < previous}
    return bool(last) and all(k in earlier for k in last)


def _call_key(step: StepRecord) -> str:
    """A call's tool and arguments as one comparable string."""
    return json.dumps([step.tool, step.arguments], sort_keys=True, default=str)


def _citations_needed(state: AgentState, allowed: list[str], ctx: AgentContext) -> int:
    """How many items an answer right after the policy's previous step's calls returned some cites (0: it follows
    none): as many as the request asked for, else as many as a synthesized answer shows, at most those of them it may
    cite, and at most the tools' default count (a longer answer runs past the token budget); a look-up counts its one
    item, not the near titles it offers besides. Measured on simulated users: after turning a list down they were
    shown one film of the ten found."""
    from recagent.agents.call_ids import asked_count
    from recagent.agents.policies.grammar import lookup_names

    turn, previous = state.get("turn", 0), state.get("steps", 0) - 1
    if not isinstance(state["messages"][-1], ToolMessage):
        return 0
    lookups = lookup_names(ctx.tool_schemas)
    returned = {
        i
        for s in state.get("trace") or []
        if s.kind == "tool_call" and s.valid and s.turn == turn and s.index == previous
        for i in (s.result_item_ids[:1] if s.tool in lookups else s.result_item_ids)
    }
    if not returned:
        return 0
    citable = len(returned & set(allowed)) or 1  # all turned down: one of the turn's others
    return min(citable, asked_count(state["messages"]) or ANSWER_SHOWS, K_DEFAULT)


def listwise_allowed(state: AgentState, ctx: AgentContext) -> list[str]:
    """Ids a list-wise answer may hold: the given candidates, else tool results the user has not seen yet."""
    pool = state.get("pool") or []
    if pool:
        return list(pool)
    grounded = list(dict.fromkeys(state.get("grounded_ids") or []))
    env, user = ctx.env, (state.get("user") or {}).get("user_id")
    u = env.dataset.users.index_of.get(str(user)) if user is not None else None
    if u is None:
        return grounded
    seen = {env.catalog.ids[i] for i in env.seen(u)}  # next-item recommendation: a seen item is never an answer
    return [i for i in grounded if i not in seen]


def route_after_policy(state: AgentState) -> Literal["tools", "check"]:
    """Tool calls (valid or not) go to the tool node; plain text is an answer to check."""
    last = state["messages"][-1]
    return "tools" if (last.tool_calls or last.invalid_tool_calls) else "check"


def tools(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Run the step's tool calls (in parallel) and answer invalid ones with a tool error."""
    ctx = runtime.context
    ai: AIMessage = state["messages"][-1]
    turn, index = state.get("turn", 0), state.get("steps", 1) - 1
    env = ctx.env.session()
    for name, ids in (state.get("candidates") or {}).items():  # restore this conversation's candidate sets
        env.buffer.put(name, [env.catalog.index_of[i] for i in ids if i in env.catalog.index_of])
    from recagent.tools.recommender_tools import build_registry

    registry = build_registry(env)
    allowed = {s["function"]["name"] for s in ctx.tool_schemas}
    usage = ai.usage_metadata or {}

    def run(call: dict):
        if call["name"] not in allowed:  # a server may emit a tool we did not bind
            return registry.call(f"{call['name']} (not offered)", call.get("args"))
        return registry.call(call["name"], call.get("args"))

    with ThreadPoolExecutor(max_workers=ctx.config.parallel_tool_workers) as pool:
        outcomes = list(pool.map(run, ai.tool_calls))
    messages, trace, grounded = [], [], []
    for call, out in zip(ai.tool_calls, outcomes):
        summary, ids = summarise_result(out.result) if out.ok else ("", [])
        grounded += ids
        messages.append(
            ToolMessage(
                out.content(),
                artifact=out.payload(),
                tool_call_id=call["id"],
                name=call["name"],
                status="success" if out.ok else "error",
            )
        )
        trace.append(
            StepRecord(
                turn=turn,
                index=index,
                kind="tool_call",
                tool=call["name"],
                arguments=call.get("args"),
                call_id=call["id"],
                valid=out.ok,
                error=None if out.ok else f"{out.error.error}: {out.error.message}",
                result_summary=summary or None,
                result_item_ids=ids,
                latency_ms=out.latency_ms,
                input_tokens=usage.get("input_tokens", 0),
                output_tokens=usage.get("output_tokens", 0),
            )
        )
    for bad in ai.invalid_tool_calls:
        error = {
            "error": "invalid_call",
            "message": f"could not parse this tool call: {bad.get('error')}. "
            "Emit a tool call with a tool name from the list and a JSON object of arguments.",
        }
        messages.append(
            ToolMessage(result_text(error), artifact=error, tool_call_id=bad.get("id") or "invalid", status="error")
        )
    sets = {name: [env.catalog.ids[i] for i in items] for name, items in env.buffer.sets.items()}
    return {"messages": messages, "trace": trace, "grounded_ids": grounded, "candidates": sets}


def route_after_tools(state: AgentState, runtime: Runtime[AgentContext]) -> Literal["policy", "fallback"]:
    """Back to the policy while budget remains."""
    return "policy" if state.get("steps", 0) < runtime.context.config.max_steps else "fallback"


def check(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Accept the answer if it names only items tools returned; otherwise send it back with the reasons."""
    ctx = runtime.context
    ai: AIMessage = state["messages"][-1]
    text = ai.text if isinstance(ai.text, str) else str(ai.content)
    grounded = set(state.get("grounded_ids") or [])
    catalog = ctx.env.catalog
    turn, index = state.get("turn", 0), state.get("steps", 1) - 1
    budget_left = state.get("steps", 0) < ctx.config.max_steps
    if state.get("mode") == "listwise":
        k = state.get("k", ctx.config.k)
        allowed = set(listwise_allowed(state, ctx))
        ids = list(dict.fromkeys(i for i in listwise_ids(text) if i in allowed))
        bad = [i for i in listwise_ids(text) if i not in allowed]
        if len(ids) < k and budget_left:
            return _reject(turn, index, listwise_feedback(len(ids), k), bad)
        return _finish(turn, index, text, ids[:k], state, "listwise", k=k, fill=True, ctx=ctx)
    g = ground_answer(text, catalog, grounded)
    if not g.ok and budget_left:
        return _reject(turn, index, unsupported_feedback(g.unsupported, g.unknown), g.unsupported + g.unknown)
    if not g.ok:  # out of budget: an answer naming unsupported items is never shipped; tool results answer instead
        rejected = _reject(turn, index, unsupported_feedback(g.unsupported, g.unknown), g.unsupported + g.unknown)
        done = fallback(state, runtime)
        return {**done, "trace": rejected["trace"] + done["trace"]}
    return _finish(turn, index, text, g.supported, state, "chat")


def _reject(turn: int, index: int, feedback: str, offending: list[str]) -> dict:
    record = StepRecord(
        turn=turn, index=index, kind="rejected_answer", valid=False, error=feedback, result_item_ids=offending
    )
    return {"messages": [HumanMessage(feedback, additional_kwargs={FEEDBACK: True})], "trace": [record]}


def _finish(
    turn: int,
    index: int,
    text: str,
    ids: list[str],
    state: AgentState,
    mode: Literal["chat", "listwise"],
    *,
    k: int = 0,
    fill: bool = False,
    ctx: AgentContext | None = None,
) -> dict:
    """End the turn with ``text`` recommending ``ids``.

    ``mode="chat"`` ships ``ids`` as they are. ``mode="listwise"`` answers a list of ``k``; with ``fill`` a
    shorter list is completed (counted in ``filled``) from the turn's latest tool results, best first, then
    by the default recommender, both kept to the ids a list-wise answer may hold (``ctx`` is needed to fill).
    """
    if mode == "chat" and fill:
        raise ValueError("a chat answer is never filled; only a list-wise one is")
    if fill and ctx is None:
        raise ValueError("filling a list-wise answer needs the agent context")
    filled = 0
    if fill and len(ids) < k:
        allowed = set(listwise_allowed(state, ctx))
        for i in _latest_results_first(state):
            if len(ids) < k and i not in ids and i in allowed:
                ids.append(i)
                filled += 1
    if fill and len(ids) < k:
        # still short (no usable tool result): the default recommender completes the list, counted in `filled`;
        # over given candidates it ranks exactly those, so the order they were listed in cannot matter
        pool = state.get("pool") or []
        env, (u, hist) = ctx.env, _user_history(state, ctx)
        if pool:
            ranked = _by_default_model(state, ctx, pool)
        else:
            top, _ = env.model(None).topk(
                env.query(u, hist), k + len(ids), exclude=env.seen(u) if u is not None else hist
            )
            ranked = [env.catalog.ids[j] for j in top]
        for i in ranked:
            if len(ids) < k and i not in ids:
                ids.append(i)
                filled += 1
    record = StepRecord(turn=turn, index=index, kind="answer", result_item_ids=list(ids), result_summary=text[:200])
    return {"answer": text, "recommended": ids, "filled": filled, "trace": [record]}


def _user_history(state: AgentState, ctx: AgentContext) -> tuple[int | None, np.ndarray]:
    """The session user's index (None: no known user) and the history the tools see for them (empty without one)."""
    env, user = ctx.env, (state.get("user") or {}).get("user_id")
    u = env.dataset.users.index_of.get(str(user)) if user is not None else None
    return u, env.history(u) if u is not None else env.split.train_sequences[0][:0]


def _by_default_model(state: AgentState, ctx: AgentContext, ids: list[str]) -> list[str]:
    """``ids`` best first by the default recommender for the session user, ties by catalog index (so the order they
    came in cannot matter)."""
    if not ids:
        return []
    env, (u, hist) = ctx.env, _user_history(state, ctx)
    idx = np.asarray([env.catalog.index_of[i] for i in ids], dtype=np.int64)
    scores = env.score(None, u, hist)[idx].astype(np.float64)
    return [env.catalog.ids[j] for j in idx[np.lexsort((idx, -scores))]]


def fallback(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Out of steps: answer from the latest successful tool result (or say that nothing was found)."""
    ctx = runtime.context
    catalog = ctx.env.catalog
    turn, index = state.get("turn", 0), state.get("steps", 1)
    latest = next(
        (s for s in reversed(state.get("trace") or []) if s.kind == "tool_call" and s.valid and s.result_item_ids), None
    )
    listwise = state.get("mode") == "listwise"
    extra: list[StepRecord] = []
    if latest is None and not listwise:
        latest = _fallback_call(state, ctx, turn, index)
        if latest is None:
            text = (
                "I could not find recommendations within my step budget. Could you rephrase what you are looking for?"
            )
            return {
                "messages": [AIMessage(text, additional_kwargs={FALLBACK: True})],
                **_finish(turn, index, text, [], state, "chat"),
            }
        extra.append(latest)
    k = state.get("k", ctx.config.k) if listwise else 5
    allowed = set(listwise_allowed(state, ctx)) if listwise else None
    ids = [i for i in (latest.result_item_ids if latest else []) if allowed is None or i in allowed][:k]
    if listwise:
        done = _finish(turn, index, "", list(ids), state, "listwise", k=k, fill=True, ctx=ctx)
    else:
        done = _finish(turn, index, "", list(ids), state, "chat")
    done["trace"] = extra + done["trace"]
    if extra:
        done["grounded_ids"] = list(extra[0].result_item_ids)
    lines = [f"{i + 1}. {citation(x, catalog.display(catalog.index_of[x]))}" for i, x in enumerate(done["recommended"])]
    text = "Here is what I found:\n" + "\n".join(lines)
    done["answer"] = text
    done["trace"][-1].result_summary = text[:200]
    return {"messages": [AIMessage(text, additional_kwargs={FALLBACK: True})], **done}


def _fallback_call(state: AgentState, ctx: AgentContext, turn: int, index: int) -> StepRecord | None:
    """No tool worked this turn: ask the default recommender (known user) or popularity (stated genre) directly."""
    from recagent.tools.recommender_tools import build_registry

    user = state.get("user") or {}
    likes = user.get("likes") or []
    registry = build_registry(ctx.env.session())
    if user.get("user_id") and likes:  # the user's recommender, restricted to the genres they asked for
        pool = registry.call(
            "filter_items", {"genres": likes, "exclude_seen_by": user["user_id"], "k": 100, "save_as": "fallback"}
        )
        name, args = "rank_items", {"user_id": user["user_id"], "candidates": "fallback", "k": 5}
        if not pool.ok:
            name, args = "retrieve_for_user", {"user_id": user["user_id"], "k": 5}
    elif user.get("user_id"):
        name, args = "retrieve_for_user", {"user_id": user["user_id"], "k": 5}
    else:
        name, args = "popular_items", ({"genre": likes[0], "k": 5} if likes else {"k": 5})
    out = registry.call(name, args)
    if not out.ok:
        return None
    summary, ids = summarise_result(out.result)
    return StepRecord(
        turn=turn,
        index=index,
        kind="tool_call",
        tool=name,
        arguments=args,
        call_id=FALLBACK_CALL_ID,
        valid=True,
        result_summary=f"(fallback) {summary}",
        result_item_ids=ids,
        latency_ms=out.latency_ms,
    )


def route_after_check(state: AgentState) -> Literal["policy", "__end__"]:
    """A rejected answer goes back to the policy; an accepted one ends the turn."""
    last = state["messages"][-1]
    return "policy" if isinstance(last, HumanMessage) and last.additional_kwargs.get(FEEDBACK) else END


def build_graph(checkpointer=None):
    """The compiled agent graph (pass a LangGraph checkpointer for persistent sessions)."""
    g = StateGraph(AgentState, context_schema=AgentContext)
    g.add_node("start_turn", start_turn)
    g.add_node("policy", policy)
    g.add_node("tools", tools)
    g.add_node("check", check)
    g.add_node("fallback", fallback)
    g.add_edge(START, "start_turn")
    g.add_edge("start_turn", "policy")
    g.add_conditional_edges("policy", route_after_policy, ["tools", "check"])
    g.add_conditional_edges("tools", route_after_tools, ["policy", "fallback"])
    g.add_conditional_edges("check", route_after_check, ["policy", END])
    g.add_edge("fallback", END)
    return g.compile(checkpointer=checkpointer)


graph = build_graph()  # no checkpointer: one-shot use, e.g. list-wise evaluation
