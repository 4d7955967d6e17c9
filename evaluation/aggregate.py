"""From records to results: every headline number with a bootstrap confidence interval over users.

Malformed or failed answers stay in every denominator: a user whose answer could not be read
scores zero utility and counts against compliance, never disappears from the average.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import fields
from typing import Any

import numpy as np

from recagent.evaluation import metrics as M
from recagent.evaluation.config import EvalConfig
from recagent.evaluation.results import (
    AgentChat,
    BeyondUtility,
    CallAccuracy,
    ChatLatency,
    ChatRequests,
    ChatSystem,
    Compliance,
    Cost,
    EvalResults,
    Fairness,
    Interval,
    KindStep,
    MetricIntervals,
    PairedDiff,
    PositionBias,
    Shipped,
    Simulator,
    ToolCalls,
)

COST_KEYS = tuple(f.name for f in fields(Cost))  # latency_s, llm_calls, tool_calls, ...: means per request


def _ci(values, cfg: EvalConfig) -> Interval:
    return Interval(
        **{
            k: (round(v, 5) if isinstance(v, float) and np.isfinite(v) else v)
            for k, v in M.summarise(list(values), n_resamples=cfg.bootstrap, seed=cfg.seed).items()
        }
    )


def _slot_share(lists: list[list[str]], catalog_index: dict[str, int]) -> float:
    slots = [i for ids in lists for i in ids]
    return float(np.mean([i not in catalog_index for i in slots])) if slots else 0.0


def _set_ci(items: list, stat, cfg: EvalConfig, bounds: tuple[float, float] | None = (0.0, 1.0)) -> Interval:
    """A statistic of the whole set of users (coverage, Gini, a group gap) with a bootstrap interval over users.

    Resampled sets repeat users, which adds no new items: coverage and Gini of a resample are biased
    (coverage low). The percentile interval is therefore re-centred on the full-sample value (shifted
    by the resamples' median), so it measures spread, not that bias.
    """
    value = float(stat(items))
    if len(items) < 2:
        return Interval(round(value, 5), float("nan"), float("nan"), len(items))
    rng = np.random.default_rng(cfg.seed)
    draws = [float(stat([items[i] for i in rng.integers(0, len(items), len(items))])) for _ in range(cfg.bootstrap)]
    lo, hi = np.nanpercentile(draws, [2.5, 97.5]) + (value - np.nanmedian(draws))
    if bounds is not None:  # a share stays a share
        lo, hi = np.clip([lo, hi], *bounds)
    return Interval(round(value, 5), round(float(lo), 5), round(float(hi), 5), len(items))


def _diff(a, b, cfg: EvalConfig) -> Interval:
    mean, lo, hi = M.paired_difference_ci(a, b, n_resamples=cfg.bootstrap, seed=cfg.seed)
    return Interval(round(mean, 5), round(lo, 5), round(hi, 5), len(a))


def _valid_raw(r: dict[str, Any], catalog_index: dict[str, int]) -> list[str]:
    allowed = set(r["candidates"]) if r.get("candidates") else None
    return [
        i for i in dict.fromkeys(r.get("raw_ids") or []) if i in catalog_index and (allowed is None or i in allowed)
    ]


def _compliant(r: dict[str, Any], catalog_index: dict[str, int], k: int) -> bool:
    return bool(r.get("parsed")) and len(_valid_raw(r, catalog_index)) == len(r.get("raw_ids") or []) == k


def _shipped(recs: list[dict[str, Any]], cfg: EvalConfig) -> Shipped | None:
    """Unsupported items shipped over a set of answers (rank requests or simulated conversations), or None if unmeasured.

    The share is of shipped items, resampled by user (each user bringing all their items), as for
    hallucinated slots. Records written before this was measured have no field and are counted as such.
    """
    measured = [r for r in recs if r.get("unsupported_shipped") is not None]
    if not measured:
        return None
    pairs = [(len(r["unsupported_shipped"]), int(r.get("shipped_items") or 0)) for r in measured]

    def share(ps):
        total = sum(p[1] for p in ps)
        return sum(p[0] for p in ps) / total if total else 0.0

    examples = list(dict.fromkeys(i for r in measured for i in r["unsupported_shipped"]))
    return Shipped(
        n=len(recs),
        measured=len(measured),
        unsupported=sum(p[0] for p in pairs),
        shipped_items=sum(p[1] for p in pairs),
        share=_set_ci(pairs, share, cfg),
        answers_with_any=sum(p[0] > 0 for p in pairs),
        examples=examples[:10],
    )


def aggregate(
    cfg: EvalConfig, env, cases, rows: list[dict[str, Any]], notes: list[str], chat_requests: list | None = None
) -> EvalResults:
    """The results of a run; ``chat_requests``: the hand-written requests asked, if any."""
    catalog = env.catalog
    pop = {catalog.ids[i]: int(c) for i, c in enumerate(env.popularity)}
    genres = {catalog.ids[i]: frozenset(catalog.genres[i]) for i in range(len(catalog.ids))}
    tail = M.long_tail(pop)
    users = [env.dataset.users.ids[c.user] for c in cases]
    hist_len = {env.dataset.users.ids[c.user]: len(c.history) for c in cases}
    rank = defaultdict(dict)  # (system, protocol) -> user -> record
    for r in rows:
        if r["section"] == "rank":
            rank[(r["system"], r["protocol"])][r["user_id"]] = r
    present = {s for s, _ in rank}
    systems = [s for s in [*cfg.baselines, "agent"] if s in present]  # config order, whatever order records came in
    protocols = list(dict.fromkeys(p for _, p in rank))
    utility: dict[str, dict[str, MetricIntervals]] = {}
    beyond_utility: dict[str, BeyondUtility] = {}
    fairness: dict[str, Fairness] = {}
    compliance: dict[str, dict[str, Compliance]] = {}
    cost: dict[str, dict[str, Cost]] = {}
    unsupported_shipped: dict[str, dict[str, Shipped]] = {}
    k = cfg.k
    for (system, protocol), by_user in rank.items():
        recs = [by_user.get(u) for u in users]
        # a user without a record (run still going) is absent; a record with an empty list is a miss
        recs = [r for r in recs if r is not None]
        per = [M.utility(r["ranked"][:k], r["target"], cfg.ks) for r in recs]
        utility.setdefault(system, {})[protocol] = {m: _ci([p[m] for p in per], cfg) for m in (per[0] if per else {})}
        if any(r.get("llm_calls") for r in recs):
            # the policy's own list, before the answer check and fallback fill: a malformed answer is a miss
            raw = [M.utility(_valid_raw(r, catalog.index_of)[:k], r["target"], cfg.ks) for r in recs]
            utility.setdefault(f"{system} (raw output)", {})[protocol] = {
                m: _ci([p[m] for p in raw], cfg) for m in raw[0]
            }
        raw_slots = [i for r in recs for i in r.get("raw_ids") or []]
        compliance.setdefault(system, {})[protocol] = Compliance(
            n=len(recs),
            compliance=_ci([float(_compliant(r, catalog.index_of, k)) for r in recs], cfg),
            # a share of slots, not of users: resampled by user, each user bringing all their slots
            hallucinated_slots=_set_ci(
                [r.get("raw_ids") or [] for r in recs], lambda ls: _slot_share(ls, catalog.index_of), cfg
            ),
            raw_slots=len(raw_slots),
            unparsed_share=round(float(np.mean([not r.get("parsed") for r in recs])), 5) if recs else None,
            filled_share=round(float(np.mean([r.get("filled", 0) / k for r in recs])), 5) if recs else None,
            errors=sum(bool(r.get("error")) for r in recs),
        )
        shipped = _shipped(recs, cfg)  # the agent only: conventional recommenders ship their own ranking, unmeasured
        if shipped is not None:
            unsupported_shipped.setdefault(system, {})[protocol] = shipped
        cost.setdefault(system, {})[protocol] = Cost(
            **{key: round(float(np.mean([r.get(key, 0) for r in recs])), 4) if recs else None for key in COST_KEYS}
        )
        if protocol == "full" and recs:
            lists = [r["ranked"][:k] for r in recs]
            ndcg = [p[f"NDCG@{k}"] for p in per]
            beyond_utility[system] = BeyondUtility(
                coverage=_set_ci(lists, lambda ls: M.coverage(ls, len(catalog.ids)), cfg),
                gini=_set_ci(lists, lambda ls: M.gini(ls, catalog.ids), cfg),
                avg_popularity=_ci([M.average_popularity([x], pop) for x in lists], cfg),
                long_tail_share=_ci([M.long_tail_share([x], tail) for x in lists], cfg),
                intra_list_diversity=_ci([M.intra_list_diversity(x, genres) for x in lists], cfg),
                novelty=_ci([M.novelty(x, pop, env.dataset.n_users) for x in lists], cfg),
            )
            if len(recs) >= 2:
                lengths = [hist_len[r["user_id"]] for r in recs]
                gap = M.group_gap(ndcg, lengths, cfg.heavy_share)
                # the gap's interval: users resampled, the heavy/light split redone on each resample
                pairs = list(zip(ndcg, lengths))
                ci = _set_ci(
                    pairs,
                    lambda ps: M.group_gap([p[0] for p in ps], [p[1] for p in ps], cfg.heavy_share)["gap"],
                    cfg,
                    None,
                )
                fairness[system] = Fairness(
                    metric=f"NDCG@{k}",
                    **{key: (round(v, 5) if isinstance(v, float) else v) for key, v in gap.items()},
                    gap_ci=[ci.ci_low, ci.ci_high],
                )
    agent_vs_baselines = _agent_vs_baselines(rank, systems, users, cfg)
    order = [x for s in systems for x in (s, f"{s} (raw output)")]

    def in_order(by_system: dict) -> dict:
        return {s: by_system[s] for s in order if s in by_system}

    utility, compliance, cost = in_order(utility), in_order(compliance), in_order(cost)
    beyond_utility, fairness, unsupported_shipped = (
        in_order(beyond_utility),
        in_order(fairness),
        in_order(unsupported_shipped),
    )
    history_length = {
        s: {
            p.split(":")[1]: utility[s][p].get(f"NDCG@{k}")
            for p in protocols
            if p.startswith("hist:") and p in utility[s]
        }
        for s in systems
    }
    sim_by_system: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["section"] == "simulator":
            sim_by_system.setdefault(r["system"], []).append(r)
    sim_rows = sim_by_system.pop("agent", [])
    for name, base_rows in sim_by_system.items():
        diff = _success_difference(sim_rows, base_rows, cfg)
        if diff is not None:
            agent_vs_baselines.setdefault(f"agent - {name}", {})["simulator"] = diff
    shipped = _shipped(sim_rows, cfg)  # every agent turn of the simulated conversations
    if shipped is not None:
        unsupported_shipped.setdefault("agent", {})["simulator"] = shipped
    chat = _chat_requests(rows, chat_requests or [], env, cfg)
    agent_chat = chat.systems.get("agent") if chat is not None else None
    if agent_chat is not None and agent_chat.agent is not None and agent_chat.agent.unsupported_shipped is not None:
        unsupported_shipped.setdefault("agent", {})["chat_requests"] = agent_chat.agent.unsupported_shipped
    return EvalResults(
        config=cfg,
        dataset=env.dataset.name,
        part=cfg.part,
        users=users,
        n_users=len(users),
        notes=notes,
        systems=systems,
        utility=utility,
        beyond_utility=beyond_utility,
        fairness=fairness,
        compliance=compliance,
        cost=cost,
        unsupported_shipped=unsupported_shipped,
        agent_vs_baselines=agent_vs_baselines,
        position_bias=_position_bias(rank, systems, users, cfg),
        history_length=history_length,
        tool_calls=_tool_calls([r for r in rows if r["section"] == "tool_call"], cfg),
        simulator=_simulator(sim_rows, cfg),
        simulator_baselines={name: _simulator(r, cfg) for name, r in sim_by_system.items()},
        chat_requests=chat,
    )


def _agent_vs_baselines(rank, systems, users, cfg: EvalConfig) -> dict[str, dict[str, PairedDiff]]:
    """Paired NDCG@k difference, agent minus each baseline, per protocol, over the users both answered."""
    if "agent" not in systems:
        return {}
    k, out = cfg.k, {}
    for (system, protocol), by_user in rank.items():
        agent = rank.get(("agent", protocol), {})
        if system == "agent" or not agent:
            continue
        both = [u for u in users if u in agent and u in by_user]
        if len(both) < 2:
            continue
        a = [M.utility(agent[u]["ranked"][:k], agent[u]["target"], [k])[f"NDCG@{k}"] for u in both]
        b = [M.utility(by_user[u]["ranked"][:k], by_user[u]["target"], [k])[f"NDCG@{k}"] for u in both]
        out.setdefault(f"agent - {system}", {})[protocol] = PairedDiff(f"NDCG@{k}", _diff(a, b, cfg), len(both))
    return out


def _position_bias(rank, systems, users, cfg: EvalConfig) -> dict[str, PositionBias]:
    k, out = cfg.k, {}
    for s in systems:
        by_order = {o: rank.get((s, f"cand:{o}"), {}) for o in ("shuffled", "target_first", "target_last")}
        common = [u for u in users if all(u in by_order[o] for o in by_order)]
        if not common or not all(by_order.values()):
            continue
        nd = {
            o: [M.utility(by_order[o][u]["ranked"][:k], by_order[o][u]["target"], (k,))[f"NDCG@{k}"] for u in common]
            for o in by_order
        }
        means = {o: round(float(np.mean(v)), 5) for o, v in nd.items()}
        out[s] = PositionBias(
            metric=f"NDCG@{k}",
            means=means,
            first_minus_last=_diff(nd["target_first"], nd["target_last"], cfg),
            first_minus_shuffled=_diff(nd["target_first"], nd["shuffled"], cfg),
            spread=round(max(means.values()) - min(means.values()), 5),
            n=len(common),
        )
    return out


def _tool_calls(rows: list[dict[str, Any]], cfg: EvalConfig) -> ToolCalls | None:
    if not rows:
        return None

    def block(rs):
        return CallAccuracy(
            ast=_ci([float(r["ast_ok"]) for r in rs], cfg), exec=_ci([float(r["exec_ok"]) for r in rs], cfg)
        )

    by_kind = {kind: block([r for r in rows if r["kind"] == kind]) for kind in sorted({r["kind"] for r in rows})}
    by_tools = {}
    for name, flag in (("heldout", True), ("seen", False)):
        rs = [r for r in rows if r["heldout_tools"] == flag]
        if rs:
            by_tools[name] = block(rs)
    errors = defaultdict(int)
    for r in rows:
        if r.get("ast_error"):
            errors[r["ast_error"].split(":")[0]] += 1
    return ToolCalls(
        all=block(rows),
        by_kind=by_kind,
        by_tools=by_tools,
        ast_errors=dict(sorted(errors.items(), key=lambda kv: -kv[1])),
        latency_s=round(float(np.mean([r.get("latency_s", 0.0) for r in rows])), 3),
    )


def _success_difference(
    agent: list[dict[str, Any]], baseline: list[dict[str, Any]], cfg: EvalConfig
) -> PairedDiff | None:
    """Paired success difference, agent minus a baseline, over the simulated users both talked to."""
    a, b = {r["key"]: float(r["success"]) for r in agent}, {r["key"]: float(r["success"]) for r in baseline}
    both = [u for u in a if u in b]
    if len(both) < 2:
        return None
    diff = _diff([a[u] for u in both], [b[u] for u in both], cfg)
    return PairedDiff(f"success@{cfg.simulator.max_turns}", diff, len(both))


def _simulator(rows: list[dict[str, Any]], cfg: EvalConfig) -> Simulator | None:
    if not rows:
        return None
    n, max_turns = len(rows), cfg.simulator.max_turns
    success = [float(r["success"]) for r in rows]
    hit_turns = [r["turns"] for r in rows if r["success"]]
    return Simulator(
        kind=cfg.simulator.kind,
        max_turns=max_turns,
        episodes=n,
        success=_ci(success, cfg),
        success_by_turn={t: round(sum(1 for x in hit_turns if x <= t) / n, 5) for t in range(1, max_turns + 1)},
        avg_turns_successful=round(float(np.mean(hit_turns)), 3) if hit_turns else None,
        avg_turns_all=round(float(np.mean([r["turns"] if r["success"] else max_turns for r in rows])), 3),
        tool_calls_per_episode=round(float(np.mean([r["tool_calls"] for r in rows])), 3),
        llm_calls_per_episode=round(float(np.mean([r["llm_calls"] for r in rows])), 3),
        tokens_per_episode=round(float(np.mean([r["tokens"] for r in rows])), 1),
        latency_per_turn_s=round(sum(r["latency_s"] for r in rows) / max(sum(r["turns"] for r in rows), 1), 3),
        leaked_episodes=sum(bool(r["leaked"]) for r in rows),
        errors=sum(bool(r.get("error")) for r in rows),
    )


def _chat_requests(rows: list[dict[str, Any]], requests: list, env, cfg: EvalConfig) -> ChatRequests | None:
    """First-call / no-tool accuracy, constraint satisfaction, shipped items and latency on the hand-written requests.

    Accuracies are means over requests; constraint satisfaction is a share of recommended slots over the requests that
    state constraints, resampled by request (each bringing all its slots); latency percentiles are over turns.
    """
    from recagent.evaluation.chat_requests import SECTION, ConstraintChecker, request_key, score_record, tool_defaults
    from recagent.tools.recommender_tools import build_registry

    by_key = {request_key(r): r for r in requests}
    recs = [r for r in rows if r["section"] == SECTION and r["key"] in by_key]
    if not recs:
        return None
    defaults, checker = tool_defaults(build_registry(env)), ConstraintChecker(env)

    def share(pairs):
        slots = sum(p[1] for p in pairs)
        return sum(p[0] for p in pairs) / slots if slots else float("nan")

    systems: dict[str, ChatSystem] = {}
    present = list(dict.fromkeys(r["system"] for r in recs))
    for system in sorted(present, key=lambda s: s != "agent"):  # the agent first, then the baseline
        rs = [r for r in recs if r["system"] == system]
        scored = [(by_key[r["key"]], r, score_record(r, by_key[r["key"]], checker, defaults)) for r in rs]
        accuracy: dict[str, Interval | None] = {}
        for metric in ("first_call", "no_tool", "first_step"):
            values = [float(sc[metric]) for _, _, sc in scored if sc[metric] is not None]
            accuracy[metric] = _ci(values, cfg) if values else None
        pairs = [(sc["satisfied"], sc["slots"]) for _, _, sc in scored if sc["slots"] is not None]
        latency = [float(r.get("latency_s") or 0.0) for r in rs]
        agent = None
        if any("first_step" in r for r in rs):  # an agent: it calls tools and ships answers
            by_kind = {}
            for kind in dict.fromkeys(req.kind or "other" for req, _, _ in scored):
                steps = [float(sc["first_step"]) for req, _, sc in scored if (req.kind or "other") == kind]
                by_kind[kind] = KindStep(n=len(steps), first_step=round(float(np.mean(steps)), 5))
            agent = AgentChat(
                unsupported_shipped=_shipped(rs, cfg),
                by_kind=by_kind,
                first_step_misses=[req.id for req, _, sc in scored if not sc["first_step"]],
                cost={
                    key: round(float(np.mean([r.get(key, 0) for r in rs])), 4)
                    for key in ("llm_calls", "n_calls", "invalid_calls", "input_tokens", "output_tokens")
                },
            )
        systems[system] = ChatSystem(
            n=len(rs),
            errors=sum(bool(r.get("error")) for r in rs),
            **accuracy,
            constraint_satisfaction=_set_ci(pairs, share, cfg) if pairs else None,
            constrained_answers=len(pairs),
            constrained_without_items=sum(p[1] == 0 for p in pairs),
            slots=[sum(p[0] for p in pairs), sum(p[1] for p in pairs)],  # satisfied, recommended
            latency_s=ChatLatency(
                p50=_set_ci(latency, lambda xs: float(np.percentile(xs, 50)), cfg, None),
                p95=_set_ci(latency, lambda xs: float(np.percentile(xs, 95)), cfg, None),
                mean=round(float(np.mean(latency)), 4),
            ),
            agent=agent,
        )
    return ChatRequests(
        n_requests=len(requests),
        tool_requests=sum(not r.no_tool for r in requests),
        no_tool_requests=sum(r.no_tool for r in requests),
        constrained_requests=sum(not r.constraints.is_empty() for r in requests),
        systems=systems,
    )
