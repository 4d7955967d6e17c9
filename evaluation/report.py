"""The markdown report and its plots (metric bars, position bias, history length, success vs turns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(block: dict | None) -> str:
    if not block or block.get("mean") is None:
        return "–"
    lo, hi = block.get("ci_low"), block.get("ci_high")
    if lo is None or hi is None or lo != lo:  # nan: too few users for an interval
        return f"{block['mean']:.4f}"
    return f"{block['mean']:.4f} [{lo:.4f}, {hi:.4f}]"


def _finite(x: float | None, default: float) -> float:
    return default if x is None or x != x else x  # nan: too few users for an interval


def _plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = max(results["config"]["ks"])
    metric = f"NDCG@{k}"
    made = []
    systems = results["systems"]
    protos = [p for p in ("full", "cand:shuffled") if any(p in results["utility"].get(s, {}) for s in systems)]
    if protos:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        width = 0.8 / len(protos)
        for j, p in enumerate(protos):
            blocks = [results["utility"].get(s, {}).get(p, {}).get(metric) or {} for s in systems]
            means = [b.get("mean") or 0.0 for b in blocks]
            err = [
                [m - _finite(b.get("ci_low"), m) for m, b in zip(means, blocks)],
                [_finite(b.get("ci_high"), m) - m for m, b in zip(means, blocks)],
            ]
            ax.bar(
                [i + j * width for i in range(len(systems))],
                means,
                width,
                yerr=err,
                capsize=3,
                label="full ranking" if p == "full" else f"{results['config']['n_candidates']} candidates",
            )
        ax.set_xticks([i + width * (len(protos) - 1) / 2 for i in range(len(systems))], systems)
        ax.set_ylabel(f"{metric} (95% CI)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "metric_bars.png", dpi=120)
        plt.close(fig)
        made.append("metric_bars.png")
    pb = results.get("position_bias") or {}
    if pb:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        orders = ["target_first", "shuffled", "target_last"]
        for s, block in pb.items():
            ax.plot(orders, [block[metric][o] for o in orders], marker="o", label=s)
        ax.set_ylabel(metric)
        ax.set_title("candidate position bias")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "position_bias.png", dpi=120)
        plt.close(fig)
        made.append("position_bias.png")
    hl = {s: v for s, v in (results.get("history_length") or {}).items() if v}
    if hl:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for s, by_n in hl.items():
            ns = sorted(by_n, key=int)
            ax.plot([int(n) for n in ns], [by_n[n]["mean"] for n in ns], marker="o", label=s)
        ax.set_xscale("log")
        ax.set_xlabel("history items kept")
        ax.set_ylabel(metric)
        ax.set_title("history-length sensitivity")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "history_length.png", dpi=120)
        plt.close(fig)
        made.append("history_length.png")
    sim = results.get("simulator") or {}
    if sim:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        turns = sorted(sim["success_by_turn"], key=int)
        ax.plot([int(t) for t in turns], [sim["success_by_turn"][t] for t in turns], marker="o")
        ax.set_xlabel("turns")
        ax.set_ylabel("share of users whose target was recommended")
        ax.set_ylim(0, 1)
        ax.set_title(f"simulated users ({sim['kind']}, n={sim['episodes']})")
        fig.tight_layout()
        fig.savefig(out / "success_vs_turns.png", dpi=120)
        plt.close(fig)
        made.append("success_vs_turns.png")
    return made


def _condensed(by_protocol: dict[str, Any], cost: dict[str, Any]) -> list[tuple[str, Any]]:
    """All rows of a system that calls an LLM; the full-ranking row only for one that does not."""
    if any((c or {}).get("llm_calls") for c in cost.values()) or "full" not in by_protocol:
        return list(by_protocol.items())
    return [("full (all protocols alike)", by_protocol["full"])]


def _shipped_section(shipped: dict[str, Any]) -> list[str]:
    """The unsupported-items-shipped table (agent systems only), with its total in words."""
    rows = [(s, p, b) for s, by_p in shipped.items() for p, b in by_p.items()]
    if not rows:
        return []
    total = sum(b["unsupported"] for _, _, b in rows)
    answers = sum(b["measured"] for _, p, b in rows if p not in ("simulator", "chat_requests"))
    chats = sum(b["measured"] for _, p, b in rows if p == "chat_requests")
    talks = sum(b["measured"] for _, p, b in rows if p == "simulator")
    with_any = sum(b["answers_with_any"] for _, _, b in rows)
    unmeasured = sum(b["n"] - b["measured"] for _, _, b in rows)
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
    lines = [
        "## Unsupported items shipped (final output, after the agent's answer check and fill)",
        "",
        "An item counts when the delivered list, or in a conversation the delivered answer text (items cited as "
        "`[id] Title (Year)` or `Title (Year)`), names it although no tool returned it in that conversation, it "
        "was not among the given candidates, and the default recommender did not fill it in; a mention of no "
        "catalog item counts too. The answer check is meant to keep this at 0. Conventional recommenders ship "
        "only their own ranking and are left out; tool-call accuracy tasks ship no answer. Share: of the "
        "distinct items each answer shipped (a conversation: summed over its turns), resampled by user.",
        "",
        headline,
        "",
        "| system | protocol | answers (conversations) | items shipped | unsupported shipped | share [CI] | answers with any |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s, p, b in rows:
        label = {
            "simulator": "simulated conversations (every turn)",
            "chat_requests": "hand-written chat requests (one turn each)",
        }.get(p, p)
        n = f"{b['measured']}" if b["measured"] == b["n"] else f"{b['measured']} of {b['n']}"
        lines.append(
            f"| {s} | {label} | {n} | {b['shipped_items']} | {b['unsupported']} | {_fmt(b['share'])} | "
            f"{b['answers_with_any']} |"
        )
    examples = list(dict.fromkeys(x for _, _, b in rows for x in b.get("examples") or []))
    if examples:
        lines += ["", f"Unsupported items shipped (first ones): {', '.join(f'`{x}`' for x in examples[:10])}."]
    return [*lines, ""]


def _chat_requests_section(chat: dict[str, Any]) -> list[str]:
    """The hand-written chat requests: first step, constraint satisfaction, shipped items and latency per system."""
    systems = chat.get("systems") or {}
    if not systems:
        return []
    lines = [
        f"## Hand-written chat requests ({chat['n_requests']} requests: {chat['tool_requests']} need a tool, "
        f"{chat['no_tool_requests']} need none, {chat['constrained_requests']} state constraints on the items)",
        "",
        "One chat turn per request, as `recagent chat` takes it. First call: the turn's first tool call names an "
        "accepted tool with the request's key arguments; no tool: a request that needs none got no call. "
        "Constraint satisfaction: share of recommended item slots that meet the request's stated genres, years, "
        "unseen-by-user or given-list constraints (catalog metadata). The conventional baseline "
        "(`MODEL+pop`) ignores the text: the recommender's top-k unseen items when the request names a user, "
        "the k most popular items otherwise.",
        "",
        "| system | first call | no tool | first step (all) | constraint satisfaction [CI] (slots) | "
        "unsupported shipped | latency p50 / p95 (s) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, b in systems.items():
        cs = b.get("constraint_satisfaction")
        slots = f" ({b['slots'][0]}/{b['slots'][1]})" if b.get("slots") else ""
        shipped = b.get("unsupported_shipped")
        lat = b["latency_s"]
        lines.append(
            f"| {s} | {_fmt(b.get('first_call'))} | {_fmt(b.get('no_tool'))} | {_fmt(b.get('first_step'))} | "
            f"{_fmt(cs)}{slots} | {shipped['unsupported'] if shipped else '–'} | "
            f"{lat['p50']['mean']:.3f} / {lat['p95']['mean']:.3f} | {b['errors']} |"
        )
    agent = systems.get("agent") or {}
    if agent.get("by_kind"):
        kinds = agent["by_kind"]
        lines += [
            "",
            "First step right, by kind of request (agent): "
            + ", ".join(f"{k} {v['first_step']:.2f} (n={v['n']})" for k, v in kinds.items())
            + ".",
        ]
        misses = agent.get("first_step_misses") or []
        if misses:
            lines += [
                "",
                f"First step wrong ({len(misses)}): {', '.join(misses[:30])}"
                + (" ..." if len(misses) > 30 else "")
                + ".",
            ]
    return [*lines, ""]


def write_report(results: dict[str, Any], out: Path) -> Path:
    """Write ``report.md`` and the PNGs into ``out``."""
    cfg = results["config"]
    ks = cfg["ks"]
    k = max(ks)
    lines = [
        f"# recagent evaluation: {results['dataset']} ({results['part']} targets, {results['n_users']} users, seed {cfg['seed']})",
        "",
        "Mean [95% bootstrap CI over users]. Every system answers the same users, candidates and orders.",
        "",
    ]
    if results.get("notes"):
        lines += ["Leakage check passed before evaluation. " + " ".join(f"{n}." for n in results["notes"]), ""]
    else:
        lines += ["Leakage check passed before evaluation.", ""]
    for proto, title in (
        ("full", "Full ranking (whole catalog, history masked)"),
        ("cand:shuffled", f"Candidate list ({cfg['n_candidates']} items: target + sampled negatives, shuffled)"),
    ):
        names = [x for s in results["systems"] for x in (s, f"{s} (raw output)")]
        rows = [s for s in names if proto in results["utility"].get(s, {})]
        if not rows:
            continue
        lines += [
            f"## {title}",
            "",
            "| system | " + " | ".join(f"HR@{x} | NDCG@{x}" for x in ks) + f" | MRR@{k} |",
            "|---|" + "---:|" * (2 * len(ks) + 1),
        ]
        for s in rows:
            u = results["utility"][s][proto]
            lines.append(
                f"| {s} | "
                + " | ".join(f"{_fmt(u.get(f'HR@{x}'))} | {_fmt(u.get(f'NDCG@{x}'))}" for x in ks)
                + f" | {_fmt(u.get(f'MRR@{k}'))} |"
            )
        lines.append("")
    bu = results.get("beyond_utility") or {}
    if bu:
        lines += [
            "## Beyond utility (full ranking lists)",
            "",
            "| system | coverage | Gini | avg popularity | long-tail share | intra-list diversity | novelty |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for s, b in bu.items():
            lines.append(
                f"| {s} | {_fmt(b['coverage'])} | {_fmt(b['gini'])} | {_fmt(b['avg_popularity'])} | "
                f"{_fmt(b['long_tail_share'])} | {_fmt(b['intra_list_diversity'])} | {_fmt(b['novelty'])} |"
            )
        lines.append("")
    fair = results.get("fairness") or {}
    if fair:
        lines += [
            f"## Fairness: heavy vs light users (NDCG@{k}, heavy = top {cfg['heavy_share']:.0%} by history length)",
            "",
            "| system | heavy | light | gap [CI] |",
            "|---|---:|---:|---:|",
        ]
        for s, f in fair.items():
            lo, hi = f[f"NDCG@{k}_gap_ci"]
            interval = f" [{lo:+.4f}, {hi:+.4f}]" if lo == lo and hi == hi else ""
            lines.append(
                f"| {s} | {f[f'NDCG@{k}_heavy']:.4f} | {f[f'NDCG@{k}_light']:.4f} | {f[f'NDCG@{k}_gap']:+.4f}{interval} |"
            )
        lines.append("")
    comp = results.get("compliance") or {}
    cost = results.get("cost") or {}
    if comp:
        lines += [
            "## Compliance and hallucination (raw output, before the agent's answer check and fill)",
            "",
            "| system | protocol | n | compliant | hallucinated slots | unparsed | filled by fallback | errors |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for s, by_p in comp.items():
            # a conventional recommender always returns k catalog items: one row says so
            for p, c in _condensed(by_p, cost.get(s, {})):
                lines.append(
                    f"| {s} | {p} | {c['n']} | {_fmt(c['compliance'])} | {_fmt(c['hallucinated_slots']) if c['raw_slots'] else '–'} "
                    f"({c['raw_slots']} slots) | {c['unparsed_share']:.3f} | {c['filled_share']:.3f} | {c['errors']} |"
                )
        lines.append("")
    lines += _shipped_section(results.get("unsupported_shipped") or {})
    pb = results.get("position_bias") or {}
    if pb:
        lines += [
            f"## Candidate position bias (NDCG@{k}; same candidates, target first / shuffled / last)",
            "",
            "| system | first | shuffled | last | first − last [CI] | spread |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for s, b in pb.items():
            m, d = b[f"NDCG@{k}"], b["first_minus_last"]
            lines.append(
                f"| {s} | {m['target_first']:.4f} | {m['shuffled']:.4f} | {m['target_last']:.4f} | "
                f"{d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] | {b['spread']:.4f} |"
            )
        lines.append("")
    hl = {s: v for s, v in (results.get("history_length") or {}).items() if v}
    if hl:
        ns = sorted({n for v in hl.values() for n in v}, key=int)
        lines += [
            f"## History-length sensitivity (NDCG@{k}, full ranking, last n items kept)",
            "",
            "| system | " + " | ".join(f"n={n}" for n in ns) + " |",
            "|---|" + "---:|" * len(ns),
        ]
        for s, v in hl.items():
            lines.append(f"| {s} | " + " | ".join(_fmt(v.get(n)) for n in ns) + " |")
        lines.append("")
    tc = results.get("tool_calls") or {}
    if tc:
        lines += [
            "## Tool-call accuracy on held-out synthesized dialogs (BFCL-style AST; execution)",
            "",
            "| slice | n | AST match | execution match |",
            "|---|---:|---:|---:|",
            f"| all | {tc['all']['ast']['n']:.0f} | {_fmt(tc['all']['ast'])} | {_fmt(tc['all']['exec'])} |",
        ]
        for group in ("by_tools", "by_kind"):
            for name, b in tc[group].items():
                lines.append(f"| {name} | {b['ast']['n']:.0f} | {_fmt(b['ast'])} | {_fmt(b['exec'])} |")
        lines += ["", f"AST errors: {tc['ast_errors']}. Mean policy latency per task: {tc['latency_s']} s.", ""]
    sim = results.get("simulator") or {}
    if sim:
        n = sim["max_turns"]
        lines += [
            f"## Multi-turn success with a simulated user ({sim['kind']}, {sim['episodes']} users)",
            "",
            f"- success@{n}: {_fmt(sim[f'success@{n}'])}",
            f"- success by turn: {sim['success_by_turn']}",
            f"- average turns: {sim['avg_turns_successful']} (successful episodes), {sim['avg_turns_all']} (all; failures count {n})",
            f"- per episode: {sim['tool_calls_per_episode']} tool calls, {sim['llm_calls_per_episode']} LLM calls, "
            f"{sim['tokens_per_episode']} tokens; {sim['latency_per_turn_s']} s per turn",
            f"- leak audit: {sim['leaked_episodes']} episode(s) where the simulator named the target; errors: {sim['errors']}",
            "",
        ]
    lines += _chat_requests_section(results.get("chat_requests") or {})
    if cost:
        lines += [
            "## Cost per request",
            "",
            "| system | protocol | latency (s) | LLM calls | tool calls | failed calls | input tokens | output tokens |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for s, by_p in cost.items():
            for p, c in _condensed(by_p, by_p):
                lines.append(
                    f"| {s} | {p} | {c['latency_s']:.3f} | {c['llm_calls']:.2f} | {c['tool_calls']:.2f} | {c['invalid_calls']:.2f} | "
                    f"{c['input_tokens']:.0f} | {c['output_tokens']:.0f} |"
                )
        lines.append("")
    plots = _plots(results, out)
    lines += [f"![{p[:-4]}]({p})" for p in plots]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
