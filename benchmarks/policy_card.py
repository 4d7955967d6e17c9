"""The metrics section of the shipped policy's model card, built from committed benchmark results only.

``recagent train ship --report`` reads the JSON this writes (``metrics_markdown``, ``training``,
``machine``), so every number on the card comes from a committed results file, never typed in:

- validation dialogs (``benchmarks/policy_checkpoints.py``, the split the checkpoint was chosen on):
  accuracy per task kind with a percentile-bootstrap 95% CI over the scored tasks;
- the hand-written requests (``benchmarks/offline_policy.py``, never trained on and never used to
  choose): first call, no-tool, constraint satisfaction, unsupported items, p50 latency, with the
  CIs ``recagent eval`` computed, and the conventional recommender alone on the same requests.

::

    python benchmarks/policy_card.py --checkpoints results/policy_checkpoints_sft10.json \\
        --checkpoint checkpoint-200 --offline results/offline_policy_sft10_200.json \\
        --training "..." --out results/shipped_policy_card.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from offline_policy import _ci  # benchmarks/offline_policy.py: "mean [low, high]" of a results.json interval

# validation task kinds, in card order, with what each one asks of the policy
VALIDATION_KINDS = {
    "first_calls_serving": "first call of a dialog (tools as served)",
    "calls_serving": "every call turn (tools as served)",
    "calls_variants": "every call turn (held-out tool variants)",
    "answers_after_results": "answer after a tool result",
    "no_tool": "no-tool turns answered without a call",
}


def validation_rows(score: dict[str, Any]) -> list[str]:
    """Markdown rows: accuracy of each validation task kind with a bootstrap CI over its 0/1 outcomes."""
    from recagent.evaluation.metrics import bootstrap_ci

    rows = []
    for kind, what in VALIDATION_KINDS.items():
        if kind not in score:
            continue
        n, acc = score[kind]["n"], score[kind]["accuracy"]
        right = round(acc * n)
        # the percentile bootstrap of a mean of 0/1 outcomes depends only on n and the count right
        mean, low, high = bootstrap_ci([1.0] * right + [0.0] * (n - right))
        rows.append(f"| validation: {what} | {n} | {_ci({'mean': mean, 'ci_low': low, 'ci_high': high})} |")
    return rows


def handwritten_rows(agent: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    """Markdown rows of the hand-written requests, as ``recagent eval`` scored them."""
    rows = [
        f"| hand-written: first call | {int(agent['first_call']['n'])} | {_ci(agent['first_call'])} |",
        f"| hand-written: no-tool answered without a call | {int(agent['no_tool']['n'])} | {_ci(agent['no_tool'])} |",
        f"| hand-written: constraint satisfaction (recommended slots) | {agent['constraint_satisfaction']['n']} "
        f"| {_ci(agent['constraint_satisfaction'])} |",
    ]
    if baseline and baseline.get("constraint_satisfaction"):
        b = baseline["constraint_satisfaction"]
        rows.append(f"| hand-written: constraint satisfaction, SASRec/popularity alone | {b['n']} | {_ci(b)} |")
    u = agent["unsupported_shipped"]
    rows.append(f"| hand-written: unsupported items shipped | {u['n']} | {u['unsupported']} of {u['shipped_items']} |")
    if agent.get("latency_s", {}).get("p50"):
        rows.append(f"| hand-written: turn latency p50, s | {agent['n']} | {_ci(agent['latency_s']['p50'])} |")
    return rows


def card_report(
    checkpoints: dict[str, Any], checkpoint: str, offline: dict[str, Any], training: str, policy: str | None = None
) -> dict:
    """The ``--report`` JSON of ``recagent train ship``: metrics table, training summary, machine."""
    if checkpoint not in checkpoints["scores"]:
        raise SystemExit(f"{checkpoint} was not scored on validation; scored: {', '.join(checkpoints['scores'])}")
    policies = offline["policies"]
    if policy is None and len(policies) != 1:
        raise SystemExit(f"the offline results hold {len(policies)} policies; name the shipped one with --policy")
    if policy is not None and policy not in policies:
        raise SystemExit(f"--policy {policy} is not in the offline results: {', '.join(policies)}")
    name = policy or next(iter(policies))
    policy = policies[name]
    requests = policy["chat_requests"]
    lines = ["| measure | n | value [95% CI] |", "|---|---|---|"]
    lines += validation_rows(checkpoints["scores"][checkpoint])
    lines += handwritten_rows(requests["agent"], requests.get("sasrec+pop"))
    lines += [
        "",
        f"Validation: {checkpoints['scored_rows']} of the synthesis run, scored by `benchmarks/policy_checkpoints.py` "
        f"on {checkpoints['machine']['date'][:10]} (validation dialogs: never trained on, used to choose). Hand-written: the "
        f"{requests['agent']['n']} requests of `recagent/data/chat_requests_ml100k.yaml`, never trained on and never "
        f"used to choose, scored by `benchmarks/offline_policy.py` ({name}) on {offline['machine']['date'][:10]}: "
        f"greedy, llama.cpp Q8_0, {offline['machine']['cpu_count']} cores.",
    ]
    return {"metrics_markdown": "\n".join(lines), "training": {"summary": training}, "machine": offline["machine"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", type=Path, required=True, help="policy_checkpoints.py results (validation)")
    p.add_argument("--checkpoint", required=True, help="the checkpoint shipped, as named in that file")
    p.add_argument("--offline", type=Path, required=True, help="offline_policy.py results of the shipped adapter")
    p.add_argument("--policy", default=None, help="the shipped policy's NAME in --offline (needed if it holds several)")
    p.add_argument("--training", required=True, help="one line: updates, time and machine of the training")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    report = card_report(
        json.loads(a.checkpoints.read_text()), a.checkpoint, json.loads(a.offline.read_text()), a.training, a.policy
    )
    a.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(report["metrics_markdown"])


if __name__ == "__main__":
    main()
