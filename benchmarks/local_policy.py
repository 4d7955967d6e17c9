"""The offline local policy on CPU, before and after the compact prompt and the llama.cpp engine, in one run.

Three measurements, each beside its baseline:

1. **Prompt size**: SmolLM2 tokens of the tools block and of the whole chat system turn (system
   prompt + the ten real tools), today's compact rendering vs the JSON-schema rendering it replaced
   (:func:`legacy_tools_block`, kept here only as the baseline).
2. **Engine speed**: cold prefill tokens/s over a ~2,000-token prompt and greedy decode tokens/s
   (128 new tokens after a ~200-token prompt), for transformers (float32; bfloat16 too on CPUs
   with native bf16) and llama.cpp (the shipped Q4_1 GGUF and its Q8_0 copy), 1 and 2 threads
   each, plus llama.cpp decoding under a tool-call grammar.
3. **Agent turn latency**: p50/p95 seconds per chat turn of the offline agent on ML-100K over 20
   fixed, hand-written requests that need 1-2 tool calls. Until a trained policy exists the base
   model is forced to make one call, then to answer (``first_tool_choice=required``,
   ``later_tool_choice=none``). Systems, interleaved per request so machine load hits them alike:
   ``before`` (transformers, JSON tools block: the previous default), ``transformers`` (compact
   block), ``llama_cpp`` (compact block, the untrained base); and ``shipped``: the trained policy
   installed with the package, as users get it (llama.cpp, tool choice ``auto``: it decides how many
   calls a request needs), and ``shipped_no_jump``, the same without jump-forward decoding. Each
   system keeps one session per request, so the shared tools prefix stays cached across turns and
   sessions, as in serving.

Writes ``results/local_policy.json``; run on an otherwise idle machine (it says its load)::

    python benchmarks/local_policy.py            # about 15 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results"

# Hand-written requests (not generated, never trained on) that need one or two tool calls.
REQUESTS: list[tuple[str | None, str]] = [
    ("42", "Recommend 5 comedies for me."),
    ("7", "What should I watch tonight? Give me 3 films."),
    (None, "Find me films similar to Toy Story."),
    (None, "I want a dark crime thriller from the nineties."),
    (None, "Show the most popular horror movies."),
    ("196", "What have I watched recently?"),
    ("12", "Suggest romantic comedies I have not seen."),
    (None, "Any good animated films for kids?"),
    (None, "Tell me about the movie Casablanca."),
    ("300", "Something like Star Wars but older, please."),
    (None, "a feel-good musical for a rainy sunday"),
    ("88", "pick 4 sci-fi movies i havent seen"),
    (None, "Which westerns are the most popular?"),
    (None, "I loved Fargo. What else would I like?"),
    ("5", "Give me three documentaries."),
    (None, "Recommend a war film from the 1960s."),
    ("250", "I'm in the mood for a thriller, top 5 for me"),
    (None, "Films like The Godfather?"),
    (None, "Find a children's film about animals."),
    ("17", "What are my favourite genres, and one new film in them?"),
]
DECODE_PROMPT = "Write a short story about a robot who learns to paint. Make it vivid and detailed."


def legacy_tools_block(tools: list[dict]) -> str:
    """The tools block before the compact rendering (full JSON schemas, one per line): the baseline."""
    lines = [json.dumps(t, ensure_ascii=False, separators=(",", ":")) for t in tools]
    return (
        "# Tools\nYou may call one or more tools to help the user. The tools, as JSON function schemas, one per line:\n"
        "<tools>\n" + "\n".join(lines) + "\n</tools>\n"
        "To call a tool, reply with one block per call and nothing else:\n"
        '<tool_call>{"name": "<tool name>", "arguments": <JSON object of arguments>}</tool_call>\n'
        "Several blocks, one per line, are calls made at the same time. Results come back as\n"
        '<tool_response>{"name": "<tool name>", "content": <result>}</tool_response>.\n'
        "When you can answer, reply in plain text without any <tool_call> block."
    )


def prompt_sizes(tok: Any, tools: list[dict], system: str) -> dict:
    """Tokens of the tools block and of the system turn, compact vs legacy."""
    from langchain_core.messages import SystemMessage

    from recagent.agents import prompt_format as pf

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    def system_turn() -> int:
        return count(pf.format_prompt(tok, [SystemMessage(system)], tools))

    compact = {"tools_block": count(pf.render_tools(tools)), "system_turn_with_tools": system_turn()}
    real = pf.render_tools
    pf.render_tools = legacy_tools_block
    try:
        legacy = {"tools_block": count(legacy_tools_block(tools)), "system_turn_with_tools": system_turn()}
    finally:
        pf.render_tools = real
    return {"compact": compact, "legacy_json": legacy, "tools": len(tools)}


def result_sizes(tok: Any) -> dict:
    """Tokens of one real ten-item tool result as the model reads it (compact lines) and as JSON."""
    from recagent.tools.env import ToolEnv
    from recagent.tools.recommender_tools import build_registry

    out = build_registry(ToolEnv.load()).call("retrieve_for_user", {"user_id": "42", "k": 10})
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    return {
        "tool": "retrieve_for_user",
        "items": len(out.result["items"]),
        "compact_text": count(out.content()),
        "json": count(out.record()),
    }


def engine_speeds(checkpoint: Path, tok: Any, tools: list[dict], decode_tokens: int) -> list[dict]:
    """Cold prefill and greedy decode tokens/s per engine, dtype and thread count."""
    import torch
    from langchain_core.messages import HumanMessage, SystemMessage

    from recagent.agents.local_model import GGUF_TYPES, cpu_has_bf16, default_gguf, load_causal_lm
    from recagent.agents.policies.engines import DecodeJob, LlamaCppEngine, TransformersEngine
    from recagent.agents.policies.grammar import GrammarCache
    from recagent.agents.prompt_format import format_prompt

    short = tok(format_prompt(tok, [HumanMessage(DECODE_PROMPT)], None), add_special_tokens=False)["input_ids"]
    long_text = format_prompt(tok, [SystemMessage("You are a film recommender."), HumanMessage(DECODE_PROMPT)], tools)
    long = tok(long_text * 4, add_special_tokens=False)["input_ids"][:2000]  # ~2,000 tokens of real prompt text
    rows: list[dict] = []

    def measure(name: str, engine: Any, grammar: Any = None, threads: int = 0) -> None:
        engine.decode(DecodeJob(ids=short, max_new_tokens=4, eos_ids=set()))  # warm-up (and grammar-free)
        engine.forget_cache()
        t0 = time.perf_counter()
        engine.decode(DecodeJob(ids=long, max_new_tokens=1, eos_ids=set()))
        prefill = time.perf_counter() - t0
        engine.forget_cache()
        out = engine.decode(DecodeJob(ids=short, grammar=grammar, max_new_tokens=decode_tokens, eos_ids=set()))
        dec = out.decode_seconds
        row = {
            "engine": name,
            "threads": threads,
            "prefill_prompt_tokens": len(long),
            "prefill_tokens_per_s": round(len(long) / prefill, 1),
            "decode_prompt_tokens": len(short),
            "decode_new_tokens": len(out.new_ids),
            "decode_tokens_per_s": round(len(out.new_ids) / dec, 1),
        }
        if name.startswith("transformers"):  # generate() includes the short prompt's prefill: take it out
            t0 = time.perf_counter()
            engine.decode(DecodeJob(ids=short, max_new_tokens=1, eos_ids=set()))
            pre = time.perf_counter() - t0
            engine.forget_cache()
            row["decode_tokens_per_s"] = round(len(out.new_ids) / max(dec - pre, 1e-6), 1)
        print(f"speed {row}", flush=True)
        rows.append(row)

    for threads in (1, 2):
        torch.set_num_threads(threads)
        dtypes = [torch.float32] + ([torch.bfloat16] if cpu_has_bf16() else [])
        for dtype in dtypes:
            model, _ = load_causal_lm(checkpoint, dtype=dtype)
            measure(
                f"transformers-{str(dtype).removeprefix('torch.')}", TransformersEngine(model, tok), threads=threads
            )
            del model
        for gguf_type in GGUF_TYPES:
            llama = LlamaCppEngine(default_gguf(gguf_type), tok, n_threads=threads)
            measure(f"llama_cpp-{gguf_type}", llama, threads=threads)
            grammar = GrammarCache(tok, llama.vocab_size).get(tools, "required", True, None)
            measure(f"llama_cpp-{gguf_type}+tool-call-grammar", llama, grammar=grammar, threads=threads)
            del llama
    return rows


def agent_latency(systems: list[str], n_requests: int, checkpoint: Path) -> dict:
    """Per-turn seconds of the offline agent for each system over the fixed requests."""
    from recagent.agents import Agent, AgentConfig
    from recagent.agents import prompt_format as pf
    from recagent.agents.config import PolicyConfig
    from recagent.tools.env import ToolEnv

    env = ToolEnv.load()
    agents = {}
    for name in systems:
        # shipped: the default policy as users get it: trained adapter, llama.cpp, tool choice auto;
        if name.startswith("shipped"):
            # shipped_no_jump: the same without jump-forward decoding (every forced token decoded one by one)
            policy = PolicyConfig(jump_forward=name != "shipped_no_jump")
            if policy.adapter_folder() is None:
                raise SystemExit("no trained policy is installed (agents/weights): run `recagent train ship` first")
        else:  # the untrained base, steered: one forced call, then an answer
            engine = "llama_cpp" if name == "llama_cpp" else "transformers"
            model = None if engine == "llama_cpp" else str(checkpoint)
            # engines at their own thread defaults; "before" also keeps the old budgets (192 tokens for every reply)
            budgets = {"max_new_tokens": 192, "max_call_tokens": None} if name == "before" else {}
            policy = PolicyConfig(
                model=model,
                engine=engine,
                adapter=None,
                first_tool_choice="required",
                later_tool_choice="none",
                **budgets,
            )
        db = Path(f"/tmp/recagent-bench-{name}-{time.time_ns()}.sqlite")
        agents[name] = Agent.from_config(AgentConfig(policy=policy), env=env, db_path=db)
    turns: dict[str, list[dict]] = {name: [] for name in systems}
    real_render = pf.render_tools
    for i, (user, text) in enumerate(REQUESTS[:n_requests]):
        for name, agent in agents.items():
            pf.render_tools = legacy_tools_block if name == "before" else real_render
            try:
                t0 = time.perf_counter()
                r = agent.chat(text, session=f"s{i}", user_id=user)
                seconds = time.perf_counter() - t0
            finally:
                pf.render_tools = real_render
            calls = [s for s in r.trace if s.kind == "tool_call" and s.call_id != "fallback"]
            row = {
                "request": text,
                "user": user,
                "seconds": round(seconds, 2),
                "llm_calls": r.usage.get("llm_calls"),
                "output_tokens": r.usage.get("output_tokens"),
                "tool_calls": [s.tool for s in calls],
                "valid_calls": sum(s.valid for s in calls),
                "policy_answered": r.policy_answer is not None,
                "recommended": r.recommended,
                "answer": r.answer[:300],
            }
            turns[name].append(row)
            print(
                f"[{i + 1}/{n_requests}] {name:12s} {seconds:6.1f}s calls={row['tool_calls']} "
                f"answered={row['policy_answered']} {r.answer[:60]!r}",
                flush=True,
            )
    summary = {}
    for name, rows in turns.items():
        secs = sorted(r["seconds"] for r in rows)
        summary[name] = {
            "turns": len(rows),
            "p50_s": round(statistics.median(secs), 2),
            "p95_s": round(secs[min(len(secs) - 1, round(0.95 * (len(secs) - 1)))], 2),
            "mean_s": round(statistics.mean(secs), 2),
            "policy_answered_share": round(sum(r["policy_answered"] for r in rows) / len(rows), 3),
            "policy_steps_mean": round(statistics.mean(r["llm_calls"] or 0 for r in rows), 2),
            "output_tokens_mean": round(statistics.mean(r["output_tokens"] or 0 for r in rows), 1),
            "valid_first_call_share": round(sum(r["valid_calls"] > 0 for r in rows) / len(rows), 3),
        }
        print(f"{name:12s} p50 {summary[name]['p50_s']:6.2f}s p95 {summary[name]['p95_s']:6.2f}s", flush=True)
    return {"summary": summary, "turns": turns}


def merge_results(old: dict, new: dict) -> dict:
    """``old`` with the parts (and latency systems) ``new`` measured replaced; each system keeps its run's machine."""
    merged = {**old, "prompt_tokens": new["prompt_tokens"], "tool_result_tokens": new["tool_result_tokens"]}
    if "engine_speeds" in new:
        merged["engine_speeds"] = new["engine_speeds"]
        merged["machine"] = new["machine"]
    if "agent_turn_latency" in new:
        latency = merged.setdefault("agent_turn_latency", {"summary": {}, "turns": {}})
        runs = latency.setdefault("machine_by_system", {})
        for name in latency["summary"]:
            runs.setdefault(name, old.get("machine"))  # systems the earlier run measured
        for name, summary in new["agent_turn_latency"]["summary"].items():
            latency["summary"][name] = summary
            latency["turns"][name] = new["agent_turn_latency"]["turns"][name]
            runs[name] = new["machine"]
    return merged


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=len(REQUESTS), help="how many of the fixed requests to run")
    p.add_argument("--decode-tokens", type=int, default=128, help="new tokens in the decode measurement")
    p.add_argument(
        "--systems",
        default="before,transformers,llama_cpp",
        help="agent systems to time (shipped: the trained default policy, tool choice auto; shipped_no_jump: "
        "the same without jump-forward decoding)",
    )
    p.add_argument("--skip", default="", help="comma list of parts to skip: speeds, latency")
    p.add_argument(
        "--update",
        action="store_true",
        help="merge into the existing results: replace only the parts and systems this run measured",
    )
    args = p.parse_args()
    from recagent.agents.local_model import ensure_default_model, load_tokenizer
    from recagent.tools.recommender_tools import TOOL_FUNCTIONS
    from recagent.tools.toolkit import Tool, ToolRegistry

    registry = ToolRegistry(env=None)
    for fn in TOOL_FUNCTIONS:
        registry.register(Tool.from_function(fn))
    tools = registry.openai_schemas()
    checkpoint = ensure_default_model(progress=True)
    tok = load_tokenizer(checkpoint)
    from recagent.agents.prompts import CHAT

    system = CHAT.format(
        dataset="ml-100k", user=" About the user: the user is user_id 42 of the dataset; they like Comedy."
    )
    report: dict[str, Any] = {"machine": machine_info(), "prompt_tokens": prompt_sizes(tok, tools, system)}
    report["tool_result_tokens"] = result_sizes(tok)
    print(f"prompt tokens {report['prompt_tokens']}; tool result {report['tool_result_tokens']}", flush=True)
    skip = set(args.skip.split(","))
    if "speeds" not in skip:
        report["engine_speeds"] = engine_speeds(checkpoint, tok, tools, args.decode_tokens)
    if "latency" not in skip:
        report["agent_turn_latency"] = agent_latency(args.systems.split(","), args.requests, checkpoint)
    report["machine"]["load_avg_after"] = machine_info()["load_avg"]
    out = RESULTS / "local_policy.json"
    if args.update and out.is_file():
        report = merge_results(json.loads(out.read_text()), report)
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {RESULTS / 'local_policy.json'}")


if __name__ == "__main__":
    main()
