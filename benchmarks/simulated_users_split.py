"""Simulated users' success split into the users read while an agent rule was made and those never read.

A rule made after reading some simulated users' conversations flatters its score on those users. This reads the
records of ``offline_policy.py --protocols simulator`` runs (one folder per policy under ``--runs``; episodes run in
the evaluation's seeded user order, so the first ``--read`` of them are the users a shorter run showed) and reports,
for the users read, those not read and all: each policy's success within the turns, the SASRec-only agent's on the
same users, the paired difference against it and against ``--paired-against`` (95% bootstrap CIs), and seconds per
turn. Only the unread users give an honest estimate of a rule made after reading the others.

    python benchmarks/simulated_users_split.py --runs wip/policy/sim50 --policies shows2 down --read 50 \
        --out benchmarks/results/simulated_users_down_100
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from machine import machine_info

BASELINE = "sasrec"  # the SASRec-only agent of the same run (it pages through its ranking)


def episodes(run: Path) -> tuple[list[dict], dict[str, dict]]:
    """The agent's simulated episodes in the order they ran, and the SASRec-only agent's by user."""
    rows = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines() if line.strip()]
    sim = [r for r in rows if r["section"] == "simulator"]
    return [r for r in sim if r["system"] == "agent"], {r["key"]: r for r in sim if r["system"] == BASELINE}


def group(agent: list[dict], baseline: dict[str, dict], against: dict[str, dict] | None) -> dict:
    """Success, the SASRec-only agent's, paired differences and seconds per turn over these episodes."""
    from recagent.evaluation import metrics as M

    def ci(values: list[float]) -> dict:
        return {k: round(v, 3) for k, v in M.summarise(values).items()}

    def paired(a: list[float], b: list[float]) -> dict:
        mean, low, high = M.paired_difference_ci(a, b)
        return {"mean": round(mean, 3), "ci_low": round(low, 3), "ci_high": round(high, 3), "n": len(a)}

    users = [r["key"] for r in agent if r["key"] in baseline]
    kept = [r for r in agent if r["key"] in baseline]
    own = {r["key"]: float(r["success"]) for r in kept}
    base = [float(baseline[u]["success"]) for u in users]
    out = {
        "users": len(users),
        "success": ci([own[u] for u in users]),
        "successes": int(sum(own[u] for u in users)),
        "sasrec_only": ci(base),
        "sasrec_only_successes": int(sum(base)),
        "minus_sasrec_only": paired([own[u] for u in users], base),
        "s_per_turn": round(sum(r["latency_s"] for r in kept) / max(sum(r["turns"] for r in kept), 1), 2),
    }
    if against is not None:
        both = [u for u in users if u in against]
        out["minus_paired_against"] = paired([own[u] for u in both], [float(against[u]["success"]) for u in both])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder of offline_policy.py runs, one per policy")
    parser.add_argument("--policies", nargs="+", required=True, help="policy names (run folders under --runs)")
    parser.add_argument("--read", type=int, required=True, help="the first N users, read while rules were made")
    parser.add_argument("--paired-against", default=None, help="policy compared with, user by user (default: first)")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    against_name = args.paired_against or args.policies[0]
    if against_name not in args.policies:
        raise SystemExit(f"--paired-against {against_name!r} is not one of --policies")
    runs = {name: episodes(args.runs / name) for name in args.policies}
    orders = [[r["key"] for r in agent] for agent, _ in runs.values()]
    if any(len(set(o)) != len(o) for o in orders):
        raise SystemExit("a run holds two episodes of one user: its records are not one evaluation")
    n = min(len(o) for o in orders)
    if any(o[:n] != orders[0][:n] for o in orders):
        raise SystemExit("the runs talked to their users in different orders: not the same evaluation")
    if n <= args.read:
        raise SystemExit(f"every run has at most {n} users: none beyond the {args.read} read")
    parts = {"read": slice(0, args.read), "not read": slice(args.read, n), "all": slice(0, n)}
    against_agent = {r["key"]: r for r in runs[against_name][0]}
    report = {
        "what": __doc__.splitlines()[0],
        "machine": machine_info(),
        "runs": str(args.runs),
        "read": args.read,
        "paired_against": against_name,
        "policies": {
            name: {
                part: group(agent[cut], baseline, None if name == against_name else against_agent)
                for part, cut in parts.items()
            }
            for name, (agent, baseline) in runs.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    """The report as a table per group of users."""

    def ci(x: dict) -> str:
        return f"{x['mean']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}]"

    def diff(x: dict | None) -> str:
        return "-" if x is None else f"{x['mean']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}]"

    m = report["machine"]
    lines = [
        f"# {report['what']}",
        "",
        f"Runs `{report['runs']}`; the first {report['read']} users were read while rules were made. "
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, {m['date'][:10]}. 95% bootstrap CIs; paired over the same users.",
        "",
        "| policy | users | success | SASRec-only | policy - SASRec-only | policy - "
        f"{report['paired_against']} | s per turn |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, parts in report["policies"].items():
        for part, g in parts.items():
            lines.append(
                f"| {name} ({part}) | {g['users']} | {ci(g['success'])} ({g['successes']}) | "
                f"{ci(g['sasrec_only'])} ({g['sasrec_only_successes']}) | {diff(g['minus_sasrec_only'])} | "
                f"{diff(g.get('minus_paired_against'))} | {g['s_per_turn']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
