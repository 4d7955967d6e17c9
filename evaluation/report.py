"""The markdown report and its plots (metric bars, position bias, history length, success vs turns)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from recagent.evaluation.results import ChatRequests, Cost, EvalResults, Interval, Shipped


def _fmt(block: Interval | None) -> str:
    if block is None or block.mean is None:
        return "–"
    lo, hi = block.ci_low, block.ci_high
    if lo is None or hi is None or lo != lo:  # nan: too few users for an interval
        return f"{block.mean:.4f}"
    return f"{block.mean:.4f} [{lo:.4f}, {hi:.4f}]"


def _finite(x: float | None, default: float) -> float:
    return default if x is None or x != x else x  # nan: too few users for an interval


def _section(
    title: str,
    columns: list[str],
    align: str,
    rows: Iterable[list[Any]],
    intro: Iterable[str] = (),
    notes: Iterable[str] = (),
) -> list[str]:
    """One report section: ``## title``, paragraphs, a table, paragraphs after it, a blank line.

    ``align`` has one letter per column: ``l`` left, ``r`` right; a row is its cells, in column order.
    """
    lines = [f"## {title}", ""]
    for paragraph in intro:
        lines += [paragraph, ""]
    lines += [_row(columns), "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
    lines += [_row(cells) for cells in rows]
    for paragraph in notes:
        lines += ["", paragraph]
    return [*lines, ""]


def _row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _plots(results: EvalResults, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = f"NDCG@{results.config.k}"
    made = []
    systems = results.systems
    protos = [p for p in ("full", "cand:shuffled") if any(p in results.utility.get(s, {}) for s in systems)]
    if protos:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        width = 0.8 / len(protos)
        for j, p in enumerate(protos):
            blocks = [results.utility.get(s, {}).get(p, {}).get(metric) for s in systems]
            means = [(b.mean if b else None) or 0.0 for b in blocks]
            err = [
                [m - _finite(b.ci_low if b else None, m) for m, b in zip(means, blocks)],
                [_finite(b.ci_high if b else None, m) - m for m, b in zip(means, blocks)],
            ]
            ax.bar(
                [i + j * width for i in range(len(systems))],
                means,
                width,
                yerr=err,
                capsize=3,
                label="full ranking" if p == "full" else f"{results.config.n_candidates} candidates",
            )
        ax.set_xticks([i + width * (len(protos) - 1) / 2 for i in range(len(systems))], systems)
        ax.set_ylabel(f"{metric} (95% CI)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "metric_bars.png", dpi=120)
        plt.close(fig)
        made.append("metric_bars.png")
    if results.position_bias:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        orders = ["target_first", "shuffled", "target_last"]
        for s, block in results.position_bias.items():
            ax.plot(orders, [block.means[o] for o in orders], marker="o", label=s)
        ax.set_ylabel(metric)
        ax.set_title("candidate position bias")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "position_bias.png", dpi=120)
        plt.close(fig)
        made.append("position_bias.png")
    hl = {s: v for s, v in results.history_length.items() if v}
    if hl:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for s, by_n in hl.items():
            ns = sorted(by_n, key=int)
            ax.plot([int(n) for n in ns], [by_n[n].mean for n in ns], marker="o", label=s)
        ax.set_xscale("log")
        ax.set_xlabel("history items kept")
        ax.set_ylabel(metric)
        ax.set_title("history-length sensitivity")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "history_length.png", dpi=120)
        plt.close(fig)
        made.append("history_length.png")
    sim = results.simulator
    if sim:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        turns = sorted(sim.success_by_turn, key=int)
        ax.plot([int(t) for t in turns], [sim.success_by_turn[t] for t in turns], marker="o")
        ax.set_xlabel("turns")
        ax.set_ylabel("share of users whose target was recommended")
        ax.set_ylim(0, 1)
        ax.set_title(f"simulated users ({sim.kind}, n={sim.episodes})")
        fig.tight_layout()
        fig.savefig(out / "success_vs_turns.png", dpi=120)
        plt.close(fig)
        made.append("success_vs_turns.png")
    return made


def _condensed(by_protocol: dict[str, Any], cost: dict[str, Cost]) -> list[tuple[str, Any]]:
    """All rows of a system that calls an LLM; the full-ranking row only for one that does not."""
    if any(c.llm_calls for c in cost.values()) or "full" not in by_protocol:
        return list(by_protocol.items())
    return [("full (all protocols alike)", by_protocol["full"])]


def _utility_sections(results: EvalResults) -> list[str]:
    """HR/NDCG at every cut-off and MRR, per system, on the full ranking and on the candidate lists."""
    ks, k = results.config.ks, results.config.k
    lines = []
    for proto, title in (
        ("full", "Full ranking (whole catalog, history masked)"),
        (
            "cand:shuffled",
            f"Candidate list ({results.config.n_candidates} items: target + sampled negatives, shuffled)",
        ),
    ):
        names = [x for s in results.systems for x in (s, f"{s} (raw output)")]
        rows = [s for s in names if proto in results.utility.get(s, {})]
        if not rows:
            continue
        lines += _section(
            title,
            ["system", *(f"{m}@{x}" for x in ks for m in ("HR", "NDCG")), f"MRR@{k}"],
            "l" + "r" * (2 * len(ks) + 1),
            (
                [s, *(_fmt(u.get(f"{m}@{x}")) for x in ks for m in ("HR", "NDCG")), _fmt(u.get(f"MRR@{k}"))]
                for s in rows
                for u in [results.utility[s][proto]]
            ),
        )
    return lines


def _beyond_utility_section(results: EvalResults) -> list[str]:
    if not results.beyond_utility:
        return []
    return _section(
        "Beyond utility (full ranking lists)",
        ["system", "coverage", "Gini", "avg popularity", "long-tail share", "intra-list diversity", "novelty"],
        "lrrrrrr",
        (
            [
                s,
                _fmt(b.coverage),
                _fmt(b.gini),
                _fmt(b.avg_popularity),
                _fmt(b.long_tail_share),
                _fmt(b.intra_list_diversity),
                _fmt(b.novelty),
            ]
            for s, b in results.beyond_utility.items()
        ),
    )


def _fairness_section(results: EvalResults) -> list[str]:
    if not results.fairness:
        return []
    rows = []
    for s, f in results.fairness.items():
        lo, hi = f.gap_ci
        interval = f" [{lo:+.4f}, {hi:+.4f}]" if lo == lo and hi == hi else ""
        rows.append([s, f"{f.heavy:.4f}", f"{f.light:.4f}", f"{f.gap:+.4f}{interval}"])
    cfg = results.config
    return _section(
        f"Fairness: heavy vs light users (NDCG@{cfg.k}, heavy = top {cfg.heavy_share:.0%} by history length)",
        ["system", "heavy", "light", "gap [CI]"],
        "lrrr",
        rows,
    )


def _compliance_section(results: EvalResults) -> list[str]:
    if not results.compliance:
        return []
    return _section(
        "Compliance and hallucination (raw output, before the agent's answer check and fill)",
        ["system", "protocol", "n", "compliant", "hallucinated slots", "unparsed", "filled by fallback", "errors"],
        "llrrrrrr",
        (
            [
                s,
                p,
                c.n,
                _fmt(c.compliance),
                f"{_fmt(c.hallucinated_slots) if c.raw_slots else '–'} ({c.raw_slots} slots)",
                f"{c.unparsed_share:.3f}",
                f"{c.filled_share:.3f}",
                c.errors,
            ]
            for s, by_p in results.compliance.items()
            # a conventional recommender always returns k catalog items: one row says so
            for p, c in _condensed(by_p, results.cost.get(s, {}))
        ),
    )


def _shipped_section(shipped: dict[str, dict[str, Shipped]]) -> list[str]:
    """The unsupported-items-shipped table (agent systems only), with its total in words."""
    rows = [(s, p, b) for s, by_p in shipped.items() for p, b in by_p.items()]
    if not rows:
        return []
    total = sum(b.unsupported for _, _, b in rows)
    answers = sum(b.measured for _, p, b in rows if p not in ("simulator", "chat_requests"))
    chats = sum(b.measured for _, p, b in rows if p == "chat_requests")
    talks = sum(b.measured for _, p, b in rows if p == "simulator")
    with_any = sum(b.answers_with_any for _, _, b in rows)
    unmeasured = sum(b.n - b.measured for _, _, b in rows)
    where = " and ".join(
        x
        for x in (
            f"{answers} list-wise answers" if answers else "",
            f"{chats} chat turns on hand-written requests" if chats else "",
            f"{talks} simulated conversations" if talks else "",
        )
        if x
    )
    headline = (
        f"**{total} unsupported item{'' if total == 1 else 's'} shipped** in {where}"
        + (f" ({with_any} of them with any)" if total else "")
        + (f"; {unmeasured} were recorded before this was measured and are not counted" if unmeasured else "")
        + "."
    )
    label = {
        "simulator": "simulated conversations (every turn)",
        "chat_requests": "hand-written chat requests (one turn each)",
    }
    examples = list(dict.fromkeys(x for _, _, b in rows for x in b.examples or []))
    return _section(
        "Unsupported items shipped (final output, after the agent's answer check and fill)",
        [
            "system",
            "protocol",
            "answers (conversations)",
            "items shipped",
            "unsupported shipped",
            "share [CI]",
            "answers with any",
        ],
        "llrrrrr",
        (
            [
                s,
                label.get(p, p),
                f"{b.measured}" if b.measured == b.n else f"{b.measured} of {b.n}",
                b.shipped_items,
                b.unsupported,
                _fmt(b.share),
                b.answers_with_any,
            ]
            for s, p, b in rows
        ),
        intro=[
            "An item counts when the delivered list, or in a conversation the delivered answer text (items cited as "
            "`[id] Title (Year)` or `Title (Year)`), names it although no tool returned it in that conversation, it "
            "was not among the given candidates, and the default recommender did not fill it in; a mention of no "
            "catalog item counts too. The answer check is meant to keep this at 0. Conventional recommenders ship "
            "only their own ranking and are left out; tool-call accuracy tasks ship no answer. Share: of the "
            "distinct items each answer shipped (a conversation: summed over its turns), resampled by user.",
            headline,
        ],
        notes=[f"Unsupported items shipped (first ones): {', '.join(f'`{x}`' for x in examples[:10])}."]
        if examples
        else [],
    )


def _position_bias_section(results: EvalResults) -> list[str]:
    if not results.position_bias:
        return []
    rows = []
    for s, b in results.position_bias.items():
        m, d = b.means, b.first_minus_last
        rows.append(
            [
                s,
                f"{m['target_first']:.4f}",
                f"{m['shuffled']:.4f}",
                f"{m['target_last']:.4f}",
                f"{d.mean:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]",
                f"{b.spread:.4f}",
            ]
        )
    return _section(
        f"Candidate position bias (NDCG@{results.config.k}; same candidates, target first / shuffled / last)",
        ["system", "first", "shuffled", "last", "first − last [CI]", "spread"],
        "lrrrrr",
        rows,
    )


def _history_length_section(results: EvalResults) -> list[str]:
    hl = {s: v for s, v in results.history_length.items() if v}
    if not hl:
        return []
    ns = sorted({n for v in hl.values() for n in v}, key=int)
    return _section(
        f"History-length sensitivity (NDCG@{results.config.k}, full ranking, last n items kept)",
        ["system", *(f"n={n}" for n in ns)],
        "l" + "r" * len(ns),
        ([s, *(_fmt(v.get(n)) for n in ns)] for s, v in hl.items()),
    )


def _tool_calls_section(results: EvalResults) -> list[str]:
    tc = results.tool_calls
    if not tc:
        return []
    slices = [("all", tc.all), *tc.by_tools.items(), *tc.by_kind.items()]
    return _section(
        "Tool-call accuracy on held-out synthesized dialogs (BFCL-style AST; execution)",
        ["slice", "n", "AST match", "execution match"],
        "lrrr",
        ([name, f"{b.ast.n:.0f}", _fmt(b.ast), _fmt(b.exec)] for name, b in slices),
        notes=[f"AST errors: {tc.ast_errors}. Mean policy latency per task: {tc.latency_s} s."],
    )


def _simulator_section(results: EvalResults) -> list[str]:
    sim = results.simulator
    if not sim:
        return []
    n = sim.max_turns
    return [
        f"## Multi-turn success with a simulated user ({sim.kind}, {sim.episodes} users)",
        "",
        f"- success@{n}: {_fmt(sim.success)}",
        f"- success by turn: {sim.success_by_turn}",
        f"- average turns: {sim.avg_turns_successful} (successful episodes), {sim.avg_turns_all} (all; failures count {n})",
        f"- per episode: {sim.tool_calls_per_episode} tool calls, {sim.llm_calls_per_episode} LLM calls, "
        f"{sim.tokens_per_episode} tokens; {sim.latency_per_turn_s} s per turn",
        f"- leak audit: {sim.leaked_episodes} episode(s) where the simulator named the target; errors: {sim.errors}",
        *_simulator_baseline_lines(results),
        "",
    ]


def _simulator_baseline_lines(results: EvalResults) -> list[str]:
    """Each baseline as a chat agent on the same simulated users (it pages through its ranking), with the paired
    difference."""
    lines = []
    for name, sim in results.simulator_baselines.items():
        vs = results.agent_vs_baselines.get(f"agent - {name}", {}).get("simulator")
        paired = f"; agent - {name} (paired, {vs.n} users): {_fmt(vs.diff)}" if vs else ""
        lines.append(
            f"- {name} alone (each turn its next {results.config.k} unseen items, whatever was said): "
            f"success@{sim.max_turns} {_fmt(sim.success)}{paired}"
        )
    return lines


def _chat_requests_section(chat: ChatRequests | None) -> list[str]:
    """The hand-written chat requests: first step, constraint satisfaction, shipped items and latency per system."""
    if not chat or not chat.systems:
        return []
    rows = []
    for s, b in chat.systems.items():
        slots = f" ({b.slots[0]}/{b.slots[1]})" if b.slots else ""
        shipped = b.agent.unsupported_shipped if b.agent else None
        rows.append(
            [
                s,
                _fmt(b.first_call),
                _fmt(b.no_tool),
                _fmt(b.first_step),
                f"{_fmt(b.constraint_satisfaction)}{slots}",
                shipped.unsupported if shipped else "–",
                f"{b.latency_s.p50.mean:.3f} / {b.latency_s.p95.mean:.3f}",
                b.errors,
            ]
        )
    notes = []
    agent = chat.systems.get("agent")
    if agent and agent.agent and agent.agent.by_kind:
        kinds = agent.agent.by_kind
        notes.append(
            "First step right, by kind of request (agent): "
            + ", ".join(f"{k} {v.first_step:.2f} (n={v.n})" for k, v in kinds.items())
            + "."
        )
        misses = agent.agent.first_step_misses or []
        if misses:
            notes.append(
                f"First step wrong ({len(misses)}): {', '.join(misses[:30])}"
                + (" ..." if len(misses) > 30 else "")
                + "."
            )
    return _section(
        f"Hand-written chat requests ({chat.n_requests} requests: {chat.tool_requests} need a tool, "
        f"{chat.no_tool_requests} need none, {chat.constrained_requests} state constraints on the items)",
        [
            "system",
            "first call",
            "no tool",
            "first step (all)",
            "constraint satisfaction [CI] (slots)",
            "unsupported shipped",
            "latency p50 / p95 (s)",
            "errors",
        ],
        "lrrrrrrr",
        rows,
        intro=[
            "One chat turn per request, as `recagent chat` takes it. First call: the turn's first tool call names an "
            "accepted tool with the request's key arguments; no tool: a request that needs none got no call. "
            "Constraint satisfaction: share of recommended item slots that meet the request's stated genres, years, "
            "unseen-by-user or given-list constraints (catalog metadata). The conventional baseline "
            "(`MODEL+pop`) ignores the text: the recommender's top-k unseen items when the request names a user, "
            "the k most popular items otherwise."
        ],
        notes=notes,
    )


def _cost_section(results: EvalResults) -> list[str]:
    if not results.cost:
        return []
    return _section(
        "Cost per request",
        [
            "system",
            "protocol",
            "latency (s)",
            "LLM calls",
            "tool calls",
            "failed calls",
            "input tokens",
            "output tokens",
        ],
        "llrrrrrr",
        (
            [
                s,
                p,
                f"{c.latency_s:.3f}",
                f"{c.llm_calls:.2f}",
                f"{c.tool_calls:.2f}",
                f"{c.invalid_calls:.2f}",
                f"{c.input_tokens:.0f}",
                f"{c.output_tokens:.0f}",
            ]
            for s, by_p in results.cost.items()
            for p, c in _condensed(by_p, by_p)
        ),
    )


def write_report(results: EvalResults, out: Path) -> Path:
    """Write ``report.md`` and the PNGs into ``out``."""
    cfg = results.config
    lines = [
        f"# recagent evaluation: {results.dataset} ({results.part} targets, {results.n_users} users, seed {cfg.seed})",
        "",
        "Mean [95% bootstrap CI over users]. Every system answers the same users, candidates and orders.",
        "",
    ]
    if results.notes:
        lines += ["Leakage check passed before evaluation. " + " ".join(f"{n}." for n in results.notes), ""]
    else:
        lines += ["Leakage check passed before evaluation.", ""]
    lines += _utility_sections(results)
    lines += _beyond_utility_section(results)
    lines += _fairness_section(results)
    lines += _compliance_section(results)
    lines += _shipped_section(results.unsupported_shipped)
    lines += _position_bias_section(results)
    lines += _history_length_section(results)
    lines += _tool_calls_section(results)
    lines += _simulator_section(results)
    lines += _chat_requests_section(results.chat_requests)
    lines += _cost_section(results)
    plots = _plots(results, out)
    lines += [f"![{p[:-4]}]({p})" for p in plots]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
