"""Token budgets of the local policy, sized from what synthesized dialogs actually need.

The offline policy (SmolLM2-135M) decodes each reply under a token budget: ``PolicyConfig.max_new_tokens``
caps every reply, ``PolicyConfig.max_call_tokens`` a reply that can only be one tool call, and
``AgentConfig.max_steps`` the policy calls of one user turn (``agents/config.py``). This script
measures what verified dialogs need:

1. it synthesizes a sample of dialogs on ML-100K with the project's own pipeline
   (``recagent.synth.pipeline.synthesize``: programmatic generator, every rule check, no judge,
   fixed seed) into a temporary folder, or reads an existing ``recagent synth`` output (``--data``);
2. it renders every assistant turn exactly as the policy writes it: tool calls as one
   ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block per call
   (``prompt_format.render_tool_call`` with the offered tool's parameters schema, so arguments
   come in the constrained decoder's order) joined by ``prompt_format.BLOCK_SEPARATOR``; text
   replies as they are. It tokenizes each one with the policy's tokenizer after the generation
   prompt ``<|im_start|>assistant\\n`` and counts the reply's tokens plus the end-of-turn token
   ``<|im_end|>`` (the engine counts it against the budget too), in four categories:

   - ``single_call``: a reply with exactly one tool call (what ``max_call_tokens`` caps),
   - ``parallel_call``: a reply with several tool calls,
   - ``answer``: a text reply after a tool result of the same user turn (cites items as ``[id] Title (Year)``),
   - ``no_tool``: a text reply with no tool call before it in its user turn (chit-chat, clarification, refusal);
3. it counts the policy steps (assistant turns) of every user turn.

**Rule.** A category's budget is its longest observed reply rounded up to a multiple of 8,
plus a margin of ``--margin`` tokens (default 8): ``budget = 8 * ceil(max / 8) + margin``.
``max_call_tokens`` is the ``single_call`` budget; ``max_new_tokens`` is the largest of the
``answer``, ``no_tool`` and ``parallel_call`` budgets (it caps every reply that is not forced to
be one call). ``max_steps`` is the most steps observed in one user turn plus one (room for one
retry after a rejected answer or an invalid call).

Caveats: the programmatic generator's replies are templated (answers list at most 5 items),
so the budgets fit what the policy is trained to write, not an arbitrary answer; and a
constrained decoder may pick a non-canonical tokenization, which the margin absorbs.

Needs the trained recommenders and the converted SmolLM2 checkpoint (``recagent quickstart``).
Writes ``results/token_budgets.json`` and prints a table::

    python benchmarks/token_budgets.py --n 1000
    python benchmarks/token_budgets.py --data DIR   # an existing `recagent synth --out DIR` folder
    python benchmarks/token_budgets.py --models pop itemknn bpr   # before SASRec is trained
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine_info  # benchmarks/machine.py: the same machine block in every results file

RESULTS = Path(__file__).resolve().parent / "results"
CATEGORIES = ("single_call", "parallel_call", "answer", "no_tool")
GENERATION_PROMPT = "<|im_start|>assistant\n"  # where the policy's reply starts (SmolLM2's ChatML)
END_OF_TURN = "<|im_end|>"
CITATION = re.compile(r"\[[A-Za-z0-9_\-]+\] ")  # "[id] Title (Year)" (agents.grounding.citation)


# -- 1. dialogs -------------------------------------------------------------------------------------------------------


def synthesize_sample(n: int, seed: int, models: list[str] | None = None) -> tuple[list[dict[str, Any]], float]:
    """``n`` verified dialogs from the offline pipeline (in a temporary folder), and the seconds it took.

    ``models``: the trained recommenders the tools load (None = the tool environment's defaults);
    when its default model is not among them, the last one given becomes the default.
    """
    from recagent.synth.config import SynthConfig
    from recagent.synth.pipeline import synthesize
    from recagent.tools.env import ToolEnvConfig

    tools: dict[str, Any] = {}
    if models:
        default = ToolEnvConfig().default_model
        tools = {"models": models, "default_model": default if default in models else models[-1]}
    cfg = SynthConfig.build(n=n, seed=seed, exports=[], tools=tools)
    out = Path(tempfile.mkdtemp(prefix="token-budgets-"))
    t0 = time.perf_counter()
    try:
        synthesize(cfg, out, progress=False)
        rows = read_dialogs(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return rows, time.perf_counter() - t0


def read_dialogs(folder: Path) -> list[dict[str, Any]]:
    """The verified dialogs of a synth output folder (train and test)."""
    rows = []
    for split in ("train", "test"):
        path = folder / f"{split}.jsonl"
        if path.is_file():
            rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{folder} holds no train.jsonl/test.jsonl dialogs")
    return rows


# -- 2. replies as the policy writes them ----------------------------------------------------------------------------


def reply_text(message: dict[str, Any], schemas: dict[str, dict]) -> str:
    """An assistant message as the policy's reply: call blocks (text ignored: the decoder writes one or the other) or text."""
    from recagent.agents.prompt_format import BLOCK_SEPARATOR, render_tool_call

    calls = message.get("tool_calls") or []
    if not calls:
        return (message.get("content") or "").strip()
    blocks = []
    for call in calls:
        fn = call["function"]
        args = json.loads(fn["arguments"]) if isinstance(fn["arguments"], str) else fn["arguments"]
        blocks.append(render_tool_call(fn["name"], args, schemas.get(fn["name"])))
    return BLOCK_SEPARATOR.join(blocks)


class ReplyCounter:
    """Tokens of a reply after the generation prompt, end-of-turn token included."""

    def __init__(self, tokenizer: Any):
        self.tok = tokenizer
        self.prefix = self._ids(GENERATION_PROMPT)

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def __call__(self, reply: str) -> int:
        ids = self._ids(GENERATION_PROMPT + reply + END_OF_TURN)
        assert ids[: len(self.prefix)] == self.prefix, "the reply changed how the generation prompt tokenizes"
        return len(ids) - len(self.prefix)


def measure(rows: list[dict[str, Any]], count: ReplyCounter) -> dict[str, Any]:
    """Token counts per reply category, the longest reply of each, and policy steps per user turn."""
    tokens: dict[str, list[int]] = {c: [] for c in CATEGORIES}
    longest: dict[str, dict[str, Any]] = {}
    steps: list[int] = []
    steps_by_kind: dict[str, Counter] = {}
    calls_per_parallel: Counter = Counter()
    single_by_tool: dict[str, int] = {}  # core tool -> longest single call
    citations: list[int] = []  # items cited per answer
    for row in rows:
        kind = row["meta"]["kind"]
        variants = _json_field(row["meta"].get("tool_variants"))  # offered name -> {"core": ...}
        plan = _json_field(row["meta"].get("extra")).get("plan")
        schemas = {t["function"]["name"]: t["function"].get("parameters") or {} for t in row["tools"]}
        turn_steps, called = None, False
        for msg in row["messages"]:
            if msg["role"] == "user":
                if turn_steps is not None:
                    steps.append(turn_steps)
                    steps_by_kind.setdefault(kind, Counter())[turn_steps] += 1
                turn_steps, called = 0, False
                continue
            if msg["role"] != "assistant":
                continue
            turn_steps = (turn_steps or 0) + 1
            calls = msg.get("tool_calls") or []
            if len(calls) == 1:
                category = "single_call"
            elif calls:
                category = "parallel_call"
                calls_per_parallel[len(calls)] += 1
            else:
                category = "answer" if called else "no_tool"
            called = called or bool(calls)
            text = reply_text(msg, schemas)
            n = count(text)
            tokens[category].append(n)
            if category == "answer":
                citations.append(len(CITATION.findall(text)))
            if category == "single_call":
                name = calls[0]["function"]["name"]
                core = (variants.get(name) or {}).get("core") or name
                single_by_tool[core] = max(single_by_tool.get(core, 0), n)
            if n > longest.get(category, {}).get("tokens", -1):
                longest[category] = {"tokens": n, "dialog": row["id"], "kind": kind, "plan": plan, "text": text}
        if turn_steps is not None:
            steps.append(turn_steps)
            steps_by_kind.setdefault(kind, Counter())[turn_steps] += 1
    return {
        "tokens": tokens,
        "longest": longest,
        "steps": steps,
        "steps_by_kind": {k: dict(sorted(v.items())) for k, v in sorted(steps_by_kind.items())},
        "calls_per_parallel_reply": dict(sorted(calls_per_parallel.items())),
        "single_call_max_by_tool": dict(sorted(single_by_tool.items(), key=lambda kv: -kv[1])),
        "citations_per_answer": dict(sorted(Counter(citations).items())),
    }


def _json_field(value: Any) -> dict[str, Any]:
    """A ``meta`` value that synth stores as a JSON string (so Arrow loads every row under one schema)."""
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


# -- 3. statistics and budgets ---------------------------------------------------------------------------------------


def describe(values: list[int]) -> dict[str, Any]:
    """Count, mean, p50, p95, p99 and max of a list of token counts."""
    if not values:
        return {"count": 0}
    a = np.asarray(values)
    pct = lambda q: int(np.percentile(a, q, method="higher"))  # noqa: E731  an observed value, never interpolated
    return {
        "count": len(values),
        "mean": round(float(a.mean()), 1),
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "max": int(a.max()),
    }


def budget(longest: int, margin: int) -> int:
    """The rule: the longest observed reply rounded up to a multiple of 8, plus ``margin``."""
    return 8 * math.ceil(longest / 8) + margin


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="verified dialogs to synthesize (ignored with --data)")
    p.add_argument("--seed", type=int, default=0, help="synthesis seed")
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="recommenders the tools load (default: all trained ones the tool environment names, SASRec included)",
    )
    p.add_argument("--data", type=Path, default=None, help="read an existing synth output folder instead")
    p.add_argument("--margin", type=int, default=8, help="tokens added to each rounded-up maximum")
    p.add_argument("--out", type=Path, default=RESULTS / "token_budgets.json")
    args = p.parse_args()

    from recagent.agents.config import AgentConfig
    from recagent.agents.local_model import ensure_default_model, load_tokenizer

    t_start = time.perf_counter()
    if args.data is not None:
        rows, synth_s = read_dialogs(args.data), 0.0
        source = {"data": str(args.data)}
    else:
        rows, synth_s = synthesize_sample(args.n, args.seed, args.models)
        source = {
            "synthesized": {
                "dataset": "ml-100k",
                "generator": "programmatic",
                "n": args.n,
                "seed": args.seed,
                "models": args.models or "default",
            }
        }

    t0 = time.perf_counter()
    tokenizer = load_tokenizer(ensure_default_model())
    found = measure(rows, ReplyCounter(tokenizer))
    tokenize_s = time.perf_counter() - t0

    stats = {c: describe(found["tokens"][c]) for c in CATEGORIES}
    budgets = {c: budget(stats[c]["max"], args.margin) for c in CATEGORIES if stats[c]["count"]}
    steps = describe(found["steps"])
    recommended = {
        "max_call_tokens": budgets.get("single_call"),
        "max_new_tokens": max(budgets.get(c, 0) for c in ("answer", "no_tool", "parallel_call")),
        "max_steps": steps["max"] + 1,
    }
    current = AgentConfig()  # today's defaults, for comparison
    report = {
        "what": "reply tokens (SmolLM2 tokenizer, <|im_end|> included) and policy steps per user turn in verified "
        "synthesized dialogs; budget = 8 * ceil(max / 8) + margin, max_steps = most steps in a user turn + 1",
        "machine": machine_info(),
        "source": source,
        "dialogs": len(rows),
        "kinds": dict(Counter(r["meta"]["kind"] for r in rows).most_common()),
        "margin": args.margin,
        "tokens": stats,
        "budgets": budgets,
        "recommended": recommended,
        "current": {
            "max_new_tokens": current.policy.max_new_tokens,
            "max_call_tokens": current.policy.max_call_tokens,
            "max_steps": current.max_steps,
        },
        "steps_per_user_turn": {
            **steps,
            "histogram": dict(sorted(Counter(found["steps"]).items())),
            "by_kind": found["steps_by_kind"],
        },
        "calls_per_parallel_reply": found["calls_per_parallel_reply"],
        "single_call_max_by_tool": found["single_call_max_by_tool"],
        "citations_per_answer": found["citations_per_answer"],
        "longest": found["longest"],
        "seconds": {
            "synthesis": round(synth_s, 1),
            "tokenize": round(tokenize_s, 1),
            "total": round(time.perf_counter() - t_start, 1),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    print(f"{len(rows)} dialogs ({report['seconds']['total']} s); tokens per reply incl. {END_OF_TURN}:")
    print(f"{'category':<14}{'count':>7}{'mean':>8}{'p50':>6}{'p95':>6}{'p99':>6}{'max':>6}{'budget':>8}")
    for c in CATEGORIES:
        s = stats[c]
        if s["count"]:
            print(
                f"{c:<14}{s['count']:>7}{s['mean']:>8}{s['p50']:>6}{s['p95']:>6}{s['p99']:>6}{s['max']:>6}{budgets[c]:>8}"
            )
    s = steps
    print(
        f"{'steps/turn':<14}{s['count']:>7}{s['mean']:>8}{s['p50']:>6}{s['p95']:>6}{s['p99']:>6}{s['max']:>6}"
        f"{recommended['max_steps']:>8}"
    )
    print("recommended: " + ", ".join(f"{k}={v}" for k, v in recommended.items()) + f"  -> {args.out}")


if __name__ == "__main__":
    main()
