"""How likely a policy is to open its reply with a tool call, per kind of turn: the call-or-words decision in numbers.

On the validation tasks of ``policy_checkpoints.py`` (same seeded sample), the probability that the first token of
the reply opens a call (every token whose text starts with ``<``: answers never write one), from one forward pass
of the base model plus the adapter (transformers, bf16 on a CPU that has it). Grouped by what the turn should do
and what it follows: a first call, a later call after a user turn, a chain's next call after a tool result, an
answer after a tool result, a no-tool reply. After a tool result the table also gives, for a logit bias ``b`` on
the call token, the share of calls and of answers decided right: a decoding knob cannot separate the two kinds
where their probabilities overlap. Greedy decoding under the grammar decides on this token, so a median far below
0.5 on a kind of turn means the policy writes words there.

    python benchmarks/call_probability.py --data ~/.cache/recagent/runs/policy/synth4 \
        --adapter shipped=agents/weights/recagent-smollm2-135m --tasks 300 --answer-tasks 40
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BIASES = (0.0, 1.0, 2.0, 3.0, 4.0)


def turn_kind(task: dict) -> str:
    """What the turn should do and what it follows: ``first call``, ``chain call``, ``answer``, ..."""
    q = task["entry"]["question"]
    if task.get("answer"):
        return "answer after tool"
    if task["no_tool"]:
        return "no-tool reply"
    if q[-1]["role"] == "tool":
        return "chain call after tool"
    return "first call" if task.get("first") else "later call after user"


def _chain_step(task: dict) -> str:
    """``previous tool -> gold next tool`` (or ``ANSWER``) of a turn that follows a tool result."""
    q = task["entry"]["question"]
    prev = [m for m in q if m["role"] == "assistant" and m.get("tool_calls")][-1]["tool_calls"][0]["function"]["name"]
    gold = task["entry"]["ground_truth"]
    return f"{prev} -> {next(iter(gold[0])) if gold else 'ANSWER'}"


def call_probabilities(adapter: str | None, tasks: list[dict]) -> list[float]:
    """P(the reply's first token opens a call) for each task."""
    import torch
    from langchain_core.messages import convert_to_messages

    from recagent.agents.local_model import default_dtype, load_causal_lm
    from recagent.agents.prompt_format import TOOL_CALL_OPEN, encode_prompt, format_prompt

    model, tok = load_causal_lm(None, adapter, default_dtype("cpu"))
    opens = [i for i in range(len(tok)) if tok.decode([i]).lstrip().startswith(TOOL_CALL_OPEN[0])]
    out = []
    with torch.inference_mode():
        for t in tasks:
            ids = encode_prompt(tok, format_prompt(tok, convert_to_messages(t["entry"]["question"]), t["tools"]))
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), -1)
            out.append(float(logp[opens].exp().sum()))
    return out


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def summarize(tasks: list[dict], probs: list[float]) -> dict:
    """Per kind of turn: n, median and quartiles of P(call), share called; after tools: bias sweep and chain steps."""
    kinds: dict[str, list[float]] = {}
    steps: dict[str, list[float]] = {}
    for t, p in zip(tasks, probs):
        kinds.setdefault(turn_kind(t), []).append(p)
        if t["entry"]["question"][-1]["role"] == "tool":
            steps.setdefault(_chain_step(t), []).append(p)

    def stats(v: list[float]) -> dict:
        q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
        return {
            "n": len(v),
            "median": round(q[1], 3),
            "q1": round(q[0], 3),
            "q3": round(q[2], 3),
            "called": round(sum(x > 0.5 for x in v) / len(v), 3),
        }

    calls, answers = kinds.get("chain call after tool", []), kinds.get("answer after tool", [])
    sweep = {
        f"{b:+.0f}": {
            "chain calls made": round(sum(_logit(p) + b > 0 for p in calls) / max(1, len(calls)), 3),
            "answers kept": round(sum(_logit(p) + b <= 0 for p in answers) / max(1, len(answers)), 3),
        }
        for b in BIASES
    }
    return {
        "by_kind": {k: stats(v) for k, v in sorted(kinds.items())},
        "after_tool_bias_sweep": sweep,
        "after_tool_by_step": {
            k: stats(v) for k, v in sorted(steps.items(), key=lambda kv: -len(kv[1])) if len(v) >= 3
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="synthesis run with validation.jsonl")
    ap.add_argument("--adapter", action="append", required=True, help="NAME=PATH of a LoRA adapter (PATH none: base)")
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--answer-tasks", type=int, default=40)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=RESULTS / "call_probability.json")
    args = ap.parse_args()

    import torch
    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)
    from policy_checkpoints import answer_tasks, validation_tasks

    if not (args.data / "validation.jsonl").is_file():
        raise SystemExit(f"{args.data} has no validation.jsonl (make it with `recagent synth ... -o validation_n=400`)")
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = validation_tasks(args.data, 0, args.tasks, file="validation.jsonl")
    tasks += answer_tasks(args.data, 0, args.answer_tasks, file="validation.jsonl")
    results = {
        "what": __doc__.splitlines()[0],
        "machine": machine_info(torch_threads=torch.get_num_threads()),
        "data": str(args.data),
        "tasks": f"validation.jsonl: {args.tasks} call/no-tool tasks + {args.answer_tasks} answer tasks, as "
        "policy_checkpoints.py samples them",
        "adapters": {},
    }
    for spec in args.adapter:
        name, eq, path = spec.partition("=")
        if not (name and eq and path):  # a bare path would silently score the base model under that name
            raise SystemExit(f"--adapter {spec!r}: expected NAME=PATH (PATH none for the base model)")
        adapter = None if path == "none" else path
        if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
            raise SystemExit(f"--adapter {spec!r}: {adapter} is not a LoRA adapter folder (no adapter_config.json)")
        results["adapters"][name] = {"path": path, **summarize(tasks, call_probabilities(adapter, tasks))}
        print(name, json.dumps(results["adapters"][name]["by_kind"]), flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
