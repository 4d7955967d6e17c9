"""Does the GRPO reward prefer the right call? Reward against exact gold match in the RL recipe's own rollouts.

Plays the rollouts a GRPO update would (the recipe's config and training tasks, groups of G sampled rollouts, the
served grammar when the config asks for it) from a policy, and for every group compares each rollout's reward
with whether its calls are exactly the gold calls (``rl.rewards.match_calls``: tool names, argument names and
values all 1). GRPO learns only from a group's spread, so the question is what that spread rewards:

- ``uniform``: groups whose rollouts all earned the same reward (zero advantage: nothing learnt);
- ``mixed``: groups with an exact and an inexact rollout; ``top_is_exact`` the share of them whose best reward
  goes to exact rollouts only, and the pairwise exact-vs-inexact wins, ties and losses;
- ``no_exact``: groups with spread but no exact rollout (only partial credit to learn from);
- per reward component, its mean spread (max - min) inside groups with spread: which term moves the advantages
  (``contribution`` is the held-out target's progress, which the request alone does not determine).

Writes ``results/rl_reward_agreement_<tag>.json`` with the machine and every group's rewards.

    python benchmarks/rl_reward_agreement.py --config examples/policy_cpu/grpo.yaml --data RUN/synth \\
        --base-model ADAPTER -o max_samples=6600 -o served_grammar=true -o temperature=1.0 --tasks 48 --tag shipped
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from functools import partial
from pathlib import Path
from statistics import mean

RESULTS = Path(__file__).resolve().parent / "results"
MATCH = ("format", "name", "param_name", "param_value")


def exact(ep) -> bool:
    """Whether the episode's calls are exactly its task's gold calls (every ToolRL match component is 1)."""
    from recagent.rl.rewards import match_calls

    calls = [c for s in ep.steps for c in s.calls]
    m = match_calls(calls, ep.task.gold_calls or [])
    return all(m[k] == 1.0 for k in MATCH)


def summarize(groups: list[dict]) -> dict:
    """The shares and pairwise counts described in the module docstring."""
    spread = [g for g in groups if len(set(g["rewards"])) > 1]
    mixed = [g for g in spread if any(g["exact"]) and not all(g["exact"])]
    wins = ties = losses = 0
    top_exact = 0
    for g in mixed:
        best = max(g["rewards"])
        top_exact += all(e for r, e in zip(g["rewards"], g["exact"]) if r == best)
        good = [r for r, e in zip(g["rewards"], g["exact"]) if e]
        bad = [r for r, e in zip(g["rewards"], g["exact"]) if not e]
        for a in good:
            for b in bad:
                wins, ties, losses = wins + (a > b), ties + (a == b), losses + (a < b)
    pairs = max(1, wins + ties + losses)
    components = sorted({k for g in groups for c in g["components"] for k in c})
    return {
        "groups": len(groups),
        "rollouts_exact": round(mean(e for g in groups for e in g["exact"]), 3),
        "uniform": round(1 - len(spread) / len(groups), 3),
        "uniform_all_exact": round(sum(all(g["exact"]) for g in groups if g not in spread) / len(groups), 3),
        "uniform_none_exact": round(sum(not any(g["exact"]) for g in groups if g not in spread) / len(groups), 3),
        "spread": len(spread),
        "mixed": len(mixed),
        "top_is_exact": round(top_exact / len(mixed), 3) if mixed else None,
        "exact_vs_inexact_pairs": {"won": wins, "tied": ties, "lost": losses, "won_share": round(wins / pairs, 3)},
        "no_exact": len([g for g in spread if not any(g["exact"])]),
        "mean_reward_exact": _mean([r for g in groups for r, e in zip(g["rewards"], g["exact"]) if e]),
        "mean_reward_inexact": _mean([r for g in groups for r, e in zip(g["rewards"], g["exact"]) if not e]),
        "component_spread_in_spread_groups": {
            k: _mean(
                [
                    max(c.get(k, 0.0) for c in g["components"]) - min(c.get(k, 0.0) for c in g["components"])
                    for g in spread
                ]
            )
            for k in components
        },
    }


def _mean(xs: list[float]) -> float | None:
    return round(mean(xs), 3) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="the RL job's YAML (examples/policy_cpu/grpo.yaml)")
    ap.add_argument("--data", required=True, help="the synthesis run RL reads (its train.jsonl)")
    ap.add_argument("--base-model", required=True, help="the policy: an adapter folder (with its tool router)")
    ap.add_argument("-o", dest="overrides", action="append", default=[], help="KEY=VALUE of the RL job config")
    ap.add_argument("--tasks", type=int, default=48, help="training tasks drawn at random (one group each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="cpu")
    a = ap.parse_args()

    import torch
    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)

    from recagent.rl.grpo import task_of
    from recagent.rl.rollout import RolloutEnvironment, generate_turns, run_episodes
    from recagent.rl.train_rl import load_policy, load_rl_config, rl_tasks, rl_tool_env

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = load_rl_config(a.config, [*a.overrides, "use_cpu=true"], data_dir=a.data, base_model=a.base_model)
    rows = rl_tasks(cfg)  # the training tasks RL draws from (leakage-checked); validation rows are never read
    env = rl_tool_env(cfg)
    model, tok = load_policy(cfg)
    model.eval()
    constrain = None
    if cfg.served_grammar:
        from recagent.rl.served_grammar import ServedGrammar

        constrain = ServedGrammar.for_policy(cfg.base_model, model, tok, env)
    generate = partial(
        generate_turns,
        model,
        tok,
        max_new_tokens=cfg.max_turn_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        batch_size=cfg.rollout_batch_size,
    )
    picked = random.Random(a.seed).sample(range(len(rows)), min(a.tasks, len(rows)))
    groups, started = [], time.perf_counter()
    for n, i in enumerate(picked):
        task = task_of(rows[i])
        envs = [RolloutEnvironment(env) for _ in range(cfg.num_generations)]
        eps = run_episodes(
            generate,
            tok,
            envs,
            [task] * cfg.num_generations,
            cfg.max_episode_steps,
            cfg.reward_weights_(),
            constrain=constrain,
        )
        comps = [
            {k: round(sum(r.components.get(k, 0.0) for r in ep.rewards), 4) for k in ep.rewards[0].components}
            for ep in eps
        ]
        groups.append(
            {
                "task_id": task.task_id,
                "rewards": [round(ep.total_reward, 4) for ep in eps],
                "exact": [exact(ep) for ep in eps],
                "components": comps,
                "calls": [
                    [{"name": c.name, "arguments": c.arguments} for s in ep.steps for c in s.calls] for ep in eps
                ],
                "gold": task.gold_calls,
            }
        )
        print(f"{n + 1}/{len(picked)}", groups[-1]["rewards"], groups[-1]["exact"], flush=True)
    out = {
        "what": __doc__.splitlines()[0],
        "machine": machine_info(),
        "argv": " ".join(sys.argv[1:]),
        "seconds": round(time.perf_counter() - started),
        "summary": summarize(groups),
        "groups": groups,
    }
    path = RESULTS / f"rl_reward_agreement_{a.tag}.json"
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(json.dumps(out["summary"], indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
