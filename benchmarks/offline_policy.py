"""Compare offline policies (base, SFT, SFT+RL) with `recagent eval` on the same users, dialogs and requests.

Each policy is the local SmolLM2 as served (llama.cpp, grammar-constrained calls), with a LoRA adapter
or none (the untrained base, whose first step is forced to call). For each one this runs (or
resumes) one `recagent eval` in ``--runs/<name>`` with the protocols asked for:

- ``tool_calls``: held-out synthesized test dialogs (``test.jsonl`` of ``--synth``), AST and
  execution match, split into seen tools and held-out tool variants;
- ``chat_requests``: the hand-written requests (first call, no-tool, constraint satisfaction of
  recommended slots, unsupported items, latency), with the conventional recommender alone beside;
- ``full``: list-wise top-10 for ``--users`` users: NDCG@10 with a paired CI against SASRec, raw
  compliance (the policy's own list, before the fill) and the fallback share;
- ``simulator``: simulated users, success@5 against the SASRec-only agent.

It writes ``results/offline_policy.json`` and ``results/offline_policy.md`` (tables built from those
runs' ``results.json``), with RL reward curves from ``--rl-run`` when given.

    python benchmarks/offline_policy.py --synth ~/.cache/recagent/runs/policy/synth \\
        --policy base=none --policy sft=~/.cache/recagent/runs/policy/sft/checkpoint-150
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PROTOCOLS = ["chat_requests", "tool_calls", "full", "simulator"]


def _ci(b: dict | None, digits: int = 3) -> str:
    """``mean [low, high]`` of a results.json interval, or a dash when unmeasured."""
    if not b:
        return "-"
    return f"{b['mean']:.{digits}f} [{b['ci_low']:.{digits}f}, {b['ci_high']:.{digits}f}]"


def eval_config(name: str, adapter: str | None, a: argparse.Namespace):
    """The EvalConfig of one policy: the same users, seed, dialogs and requests for every policy."""
    from recagent.config import apply_overrides
    from recagent.evaluation.config import EvalConfig

    settings = [s.partition(":")[2] for s in a.policy_set if s.partition(":")[0] == name]
    policy = apply_overrides({"adapter": adapter, "num_threads": a.threads}, settings)

    return EvalConfig.build(
        dataset="ml-100k",
        users=a.users,
        seed=0,
        baselines=["sasrec"],
        protocols=a.protocols,
        synth_dir=str(a.synth),
        tool_call_tasks=a.tool_call_tasks,
        simulator={"users": a.sim_users, "max_turns": 5},
        agent={"policy": policy},
        chat_requests_file=a.chat_requests_file,
        out=str(a.runs / name),
    )


def _agent_cost(system: dict[str, Any]) -> dict[str, Any]:
    """An agent's misses and its policy steps and tool calls per request (a policy that never stops answering
    runs every request to max_steps); nothing for a baseline."""
    cost = system.get("cost")  # results.json flattens an agent's own block into its system
    if not cost:
        return {}
    return {
        "first_step_misses": system.get("first_step_misses"),
        "policy_steps": cost.get("llm_calls"),
        "tool_calls": cost.get("n_calls"),
    }


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """The numbers the report compares, from one eval run's results.json."""
    out: dict[str, Any] = {}
    tc = res.get("tool_calls") or {}
    if tc:
        out["tool_calls"] = {
            "all": tc["all"],
            "seen": tc["by_tools"].get("seen"),
            "heldout": tc["by_tools"].get("heldout"),
            "latency_s": tc.get("latency_s"),
            "ast_errors": tc.get("ast_errors"),
        }
    chat = res.get("chat_requests") or {}
    if chat:
        out["chat_requests"] = {
            s: {
                k: b.get(k)
                for k in (
                    "n",
                    "first_call",
                    "no_tool",
                    "constraint_satisfaction",
                    "unsupported_shipped",
                    "latency_s",
                    "errors",
                )
            }
            | _agent_cost(b)
            for s, b in chat["systems"].items()
        }
    full_agent = (res.get("utility", {}).get("agent") or {}).get("full")
    if full_agent:
        comp = res["compliance"]["agent"]["full"]
        out["listwise"] = {
            "ndcg10": full_agent["NDCG@10"],
            "sasrec_ndcg10": res["utility"]["sasrec"]["full"]["NDCG@10"],
            "raw_ndcg10": res["utility"]["agent (raw output)"]["full"]["NDCG@10"],
            "vs_sasrec": res.get("agent_vs_baselines", {}).get("agent - sasrec", {}).get("full"),
            "raw_compliance": comp["compliance"],
            "fallback_share": comp.get("filled_share"),
            "latency_s": res["cost"]["agent"]["full"]["latency_s"],
        }
    if res.get("simulator"):
        s = res["simulator"]
        key = f"success@{s['max_turns']}"
        base = (res.get("simulator_baselines") or {}).get("sasrec") or {}
        out["simulator"] = {
            "success": s.get(key),
            "sasrec_success": base.get(key),
            "vs_sasrec": (res.get("agent_vs_baselines", {}).get("agent - sasrec", {}).get("simulator") or {}).get(key),
            "max_turns": s["max_turns"],
            "episodes": s["episodes"],
            "latency_per_turn_s": s["latency_per_turn_s"],
        }
    return out


def per_task(run: Path) -> dict[str, dict[str, float]]:
    """One eval run's per-task scores: ``ast`` / ``ast_seen`` / ``ast_heldout`` by test-dialog task and
    ``first_step`` by hand-written request (its first call, or no call where none is needed)."""
    out: dict[str, dict[str, float]] = {"ast": {}, "ast_seen": {}, "ast_heldout": {}, "first_step": {}}
    records = run / "records.jsonl"
    if not records.is_file():
        return out
    rows = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    res = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
    agent = ((res.get("chat_requests") or {}).get("systems") or {}).get("agent") or {}
    misses = set(agent.get("first_step_misses") or [])
    for r in rows:
        if r.get("system") != "agent":
            continue
        if r["section"] == "tool_call":
            ok = float(bool(r.get("ast_ok")))
            out["ast"][r["key"]] = ok
            out["ast_heldout" if r.get("heldout_tools") else "ast_seen"][r["key"]] = ok
        elif r["section"] == "chat_request" and agent:
            out["first_step"][r["request_id"]] = float(r["request_id"] not in misses)
    return out


def paired(runs: Path, names: list[str], against: str) -> dict[str, dict[str, Any]]:
    """Each policy minus ``against`` on the tasks both ran: mean difference with a paired bootstrap 95% CI."""
    from recagent.evaluation.metrics import paired_difference_ci

    ref = per_task(runs / against)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        if name == against:
            continue
        mine = per_task(runs / name)
        rows: dict[str, Any] = {}
        for metric, values in mine.items():
            keys = sorted(set(values) & set(ref[metric]))
            if not keys:
                continue
            a, b = [values[k] for k in keys], [ref[metric][k] for k in keys]
            mean, low, high = paired_difference_ci(a, b)
            rows[metric] = {
                "mean": round(mean, 4),
                "ci_low": round(low, 4),
                "ci_high": round(high, 4),
                "n": len(keys),
                "won": sum(x > y for x, y in zip(a, b)),
                "lost": sum(x < y for x, y in zip(a, b)),
            }
        out[f"{name} - {against}"] = rows
    return out


def rl_curves(rl_run: Path) -> dict[str, Any]:
    """Reward per update, the share of GRPO groups whose rewards were all equal (zero advantage), step components."""
    state = rl_run / "trainer_state.json"
    log = json.loads(state.read_text())["log_history"] if state.is_file() else []
    if not log and (rl_run / "rl_run.json").is_file():
        log = json.loads((rl_run / "rl_run.json").read_text())["log_history"]
    rows = [h for h in log if "reward" in h]
    return {
        "steps": [h.get("step") for h in rows],
        "reward": [h["reward"] for h in rows],
        "zero_std_groups": [h.get("frac_reward_zero_std") for h in rows],
        "step_time_s": [h.get("step_time") for h in rows],
        "components": {
            k: [h.get(k) for h in rows]
            for k in sorted({k for h in rows for k in h if k.startswith(("rewards/step/", "tools/", "groups/"))})
        },
    }


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """The report's tables, one row per policy."""
    names = list(summary)
    lines = [
        f"# Offline policy: {', '.join(names)}",
        "",
        meta["what"],
        "",
        f"Machine: {meta['machine'].get('cpu')}, {meta['machine'].get('cpu_count')} cores, "
        f"flags {meta['machine'].get('cpu_flags')}; `python benchmarks/offline_policy.py {meta['argv']}`.",
        "",
    ]
    if any("tool_calls" in s for s in summary.values()):
        lines += [
            "## (a) Held-out synthesized test dialogs (AST / execution match, 95% CIs)",
            "",
            "| policy | AST, all | AST, seen tools | AST, held-out variants | exec, all | tasks |",
            "|---|---|---|---|---|---|",
        ]
        for n in names:
            t = summary[n].get("tool_calls")
            if t:
                lines.append(
                    f"| {n} | {_ci(t['all']['ast'])} | {_ci((t['seen'] or {}).get('ast'))} | "
                    f"{_ci((t['heldout'] or {}).get('ast'))} | {_ci(t['all']['exec'])} | {int(t['all']['ast']['n'])} |"
                )
        lines.append("")
    if any("chat_requests" in s for s in summary.values()):
        lines += [
            "## (b) Hand-written requests" + (f" (`{meta['requests_file']}`)" if meta.get("requests_file") else ""),
            "",
            "| policy | first call | no-tool | constraint satisfaction (slots) | unsupported shipped | p50 latency s "
            "| policy steps / request |",
            "|---|---|---|---|---|---|---|",
        ]
        baseline = None
        for n in names:
            c = summary[n].get("chat_requests")
            if not c:
                continue
            a = c.get("agent") or {}
            shipped = (a.get("unsupported_shipped") or {}).get("share")
            lines.append(
                f"| {n} | {_ci(a.get('first_call'))} | {_ci(a.get('no_tool'))} | {_ci(a.get('constraint_satisfaction'))} "
                f"| {_ci(shipped)} | {_ci((a.get('latency_s') or {}).get('p50'), 2)} | {a.get('policy_steps', '-')} |"
            )
            baseline = baseline or next(({"name": s, **b} for s, b in c.items() if s != "agent"), None)
        if baseline:
            lines.append(
                f"| {baseline['name']} alone | - | - | {_ci(baseline.get('constraint_satisfaction'))} | - | - | - |"
            )
        lines.append("")
    if any("listwise" in s for s in summary.values()):
        lines += [
            "## (c) List-wise top-10, full ranking",
            "",
            "| policy | NDCG@10 | SASRec NDCG@10 | agent - SASRec (paired) | raw NDCG@10 | raw compliance | fallback share |",
            "|---|---|---|---|---|---|---|",
        ]
        for n in names:
            w = summary[n].get("listwise")
            if w:
                vs = (w.get("vs_sasrec") or {}).get("NDCG@10")
                lines.append(
                    f"| {n} | {_ci(w['ndcg10'])} | {_ci(w['sasrec_ndcg10'])} | {_ci(vs)} | {_ci(w['raw_ndcg10'])} "
                    f"| {_ci(w['raw_compliance'])} | {w['fallback_share']} |"
                )
        lines.append("")
    if any("simulator" in s for s in summary.values()):
        lines += [
            "## (d) Simulated users (the SASRec-only agent lists SASRec's next 10 unseen items each turn)",
            "",
            "| policy | success within turns | SASRec-only agent | policy - SASRec-only (paired) | turns | episodes "
            "| s per turn |",
            "|---|---|---|---|---|---|---|",
        ]
        for n in names:
            s = summary[n].get("simulator")
            if s:
                lines.append(
                    f"| {n} | {_ci(s['success'])} | {_ci(s['sasrec_success'])} | {_ci(s['vs_sasrec'])} "
                    f"| {s['max_turns']} | {s['episodes']} | {s['latency_per_turn_s']} |"
                )
        lines.append("")
    if meta.get("paired"):
        lines += [
            "## Paired differences (the same tasks and requests; 95% paired bootstrap CIs; won / lost tasks)",
            "",
            "| comparison | AST, all | AST, seen tools | AST, held-out variants | hand-written first step |",
            "|---|---|---|---|---|",
        ]
        for comparison, rows in meta["paired"].items():
            cells = []
            for metric in ("ast", "ast_seen", "ast_heldout", "first_step"):
                d = rows.get(metric)
                cells.append(
                    f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}], {d['won']}/{d['lost']} of {d['n']}"
                    if d
                    else "-"
                )
            lines.append(f"| {comparison} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Hand-written first step: the request's first call is accepted, or no call where none is needed.",
            "",
        ]
    if meta.get("rl"):
        r = meta["rl"]
        zero = [z for z in r["zero_std_groups"] if z is not None]
        secs = [t for t in r.get("step_time_s") or [] if t is not None]
        # one update's reward is a couple of tasks' worth: a tenth of the run reads steadier
        tenth = max(1, len(r["reward"]) // 10)

        def mean(xs):
            return round(sum(xs) / len(xs), 3) if xs else "-"

        lines += [
            "## RL",
            "",
            f"{len(r['reward'])} logged updates"
            + (f" in {round(sum(secs) / 60, 1)} min" if secs else "")
            + f"; mean reward of the first / last {tenth} updates: {mean(r['reward'][:tenth])} / "
            f"{mean(r['reward'][-tenth:])}; share of zero-advantage groups (mean): {mean(zero)}.",
            "",
            f"Reward curve, {tenth} updates per row (means; zero-advantage: the share of groups whose rollouts all "
            "earned the same reward):",
            "",
            "| updates | reward | zero-advantage groups | "
            + " | ".join(k.rpartition("/")[2] for k in r["components"])
            + " |",
            "|---|---|---|" + "---|" * len(r["components"]),
        ]
        for start in range(0, len(r["reward"]), tenth):
            block = slice(start, start + tenth)
            comps = [mean([v for v in vs[block] if v is not None]) for vs in r["components"].values()]
            lines.append(
                f"| {r['steps'][start]}-{r['steps'][min(start + tenth, len(r['steps'])) - 1]} | "
                f"{mean(r['reward'][block])} | {mean([z for z in r['zero_std_groups'][block] if z is not None])} | "
                + " | ".join(str(c) for c in comps)
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth", type=Path, required=True, help="the synthesis run (its test.jsonl: held-out dialogs)")
    ap.add_argument(
        "--policy",
        action="append",
        required=True,
        help="NAME=ADAPTER_FOLDER, NAME=shipped (the installed policy) or NAME=none (the base)",
    )
    ap.add_argument(
        "--policy-set",
        action="append",
        default=[],
        help="NAME:FIELD=VALUE, a policy setting of the policy NAME (e.g. base:router_top_k=1); repeatable",
    )
    ap.add_argument("--protocols", nargs="+", default=PROTOCOLS, choices=PROTOCOLS)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--tool-call-tasks", type=int, default=200)
    ap.add_argument("--sim-users", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rl-run", type=Path, default=None, help="GRPO output folder (reward curves)")
    ap.add_argument(
        "--paired-against",
        default=None,
        help="policy NAME every other policy is compared with, task by task (default: the first --policy)",
    )
    ap.add_argument(
        "--chat-requests-file",
        default=None,
        help="hand-written requests (default: the packaged test set); 'dev' = the development set, for choosing "
        "a checkpoint (recagent/data/chat_requests_dev_ml100k.yaml), never a reported score",
    )
    ap.add_argument("--runs", type=Path, default=Path("~/.cache/recagent/runs/offline_policy").expanduser())
    ap.add_argument("--out", type=Path, default=RESULTS / "offline_policy")
    a = ap.parse_args()

    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)

    from recagent.agents.config import SHIPPED
    from recagent.evaluation.runner import run_eval
    from recagent.heldout_requests import packaged_path

    if a.chat_requests_file == "dev":
        a.chat_requests_file = str(packaged_path(dev=True))
    shown = Path(a.chat_requests_file).resolve() if a.chat_requests_file else None
    if shown is not None and shown.is_relative_to(RESULTS.parents[1]):  # the report names it as the repo does
        shown = shown.relative_to(RESULTS.parents[1])

    names = {spec.partition("=")[0] for spec in a.policy}
    for setting in a.policy_set:  # a typo would otherwise score a policy silently without its setting
        name, _, field_value = setting.partition(":")
        if name not in names or "=" not in field_value:
            raise SystemExit(f"--policy-set {setting}: expected NAME:FIELD=VALUE with NAME one of {sorted(names)}")
    summary = {}
    for spec in a.policy:
        name, _, adapter = spec.partition("=")
        if adapter.lower() in ("", "none"):
            adapter = None
        elif adapter != SHIPPED:
            adapter = str(Path(adapter).expanduser())
        out = run_eval(eval_config(name, adapter, a), progress=False)
        summary[name] = {"adapter": adapter, **summarize(json.loads((out / "results.json").read_text()))}
        print(name, json.dumps(summary[name])[:400], flush=True)
    against = a.paired_against or next(iter(summary))
    if against not in summary:
        raise SystemExit(f"--paired-against {against} is not one of the policies {sorted(summary)}")
    meta = {
        "what": __doc__.splitlines()[0],
        "machine": machine_info(),
        "argv": " ".join(sys.argv[1:]),
        "requests_file": str(shown) if shown else None,
        "paired": paired(a.runs, list(summary), against) if len(summary) > 1 else None,
        "rl": rl_curves(a.rl_run) if a.rl_run else None,
    }
    a.out.parent.mkdir(exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps({**meta, "policies": summary}, indent=2, default=str) + "\n")
    a.out.with_suffix(".md").write_text(markdown(summary, meta) + "\n")
    print(f"wrote {a.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
